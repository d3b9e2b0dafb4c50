"""Dropping an application's aggregate cache after a failed save.

Our workers mutate cached aggregates in place (no deepcopy per batch), so a batch that
fails to save leaves them ahead of the store; they must be forgotten. eventsourcing 9.5.6's
`LRUCache.clear()` only resets its recency list and keeps every entry (found by the
rebalance test: stale aggregates then wrote versions past a gap), so we replace the cache.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import LRUCache


def forget_cached(repository: Any) -> None:
    cache = repository.cache
    if isinstance(cache, LRUCache):
        repository.cache = LRUCache(maxsize=cache.maxsize)
    elif cache is not None:
        cache.cache.clear()
