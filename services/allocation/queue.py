"""A SKU's backorder queue: open lines in fill order, with running totals of queued units.

Promised dates need, for a line, the units queued up to and including it, and, for a number
of units, the line that holds the last of them. A plain sorted list answers both only by a
walk from the head: with tens of thousands of lines queued, every order or receipt would pay
that walk. Here entries sit in blocks of at most BLOCK entries, each block knowing its
units, so both answers cost O(blocks + BLOCK) and an insertion O(log n + BLOCK). The running
totals (of the blocks, and inside a block) are kept until a change touches them, so the
several look-ups one command makes reuse them. No library we use keeps prefix sums in a
sorted container (sortedcontainers has no sums), hence this.

Pure state of the Sku aggregate: no I/O, deterministic.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate

BLOCK = 512  # entries a block holds at most; split in two when it grows past


@dataclass(frozen=True, order=True, slots=True)
class QueueEntry:
    """A backordered line's place in the queue; entries sort in fill order: higher
    priority first, then the earlier order, then the earlier arrival, then the line's
    index in its order. The key makes every entry distinct, so the order is total."""

    priority_rank: int  # -priority: a higher priority sorts first
    placed_at: datetime
    arrival: int  # intake position of the command that backordered the line
    line_index: int
    key: str  # the line's key at its SKU


class BackorderQueue:
    """Entries in fill order, each with its queued units."""

    __slots__ = ("_blocks", "_ends", "_entries", "_running", "_sums", "_units")

    def __init__(self, entries: list[tuple[QueueEntry, int]] | None = None) -> None:
        self._blocks: list[list[QueueEntry]] = []
        self._sums: list[int] = []
        # Caches, rebuilt on demand: the units up to the end of each block, and inside each
        # block the units up to each entry (None: to be counted again).
        self._ends: list[int] | None = None
        self._running: list[list[int] | None] = []
        self._units: dict[str, int] = {}
        self._entries: dict[str, QueueEntry] = {}
        ordered = sorted(entries or [], key=lambda pair: pair[0])
        for start in range(0, len(ordered), BLOCK // 2):
            chunk = ordered[start : start + BLOCK // 2]
            self._blocks.append([entry for entry, _ in chunk])
            self._sums.append(sum(units for _, units in chunk))
            self._running.append(None)
        for entry, units in ordered:
            self._units[entry.key] = units
            self._entries[entry.key] = entry

    # --- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._units)

    def __bool__(self) -> bool:
        return bool(self._units)

    def __contains__(self, key: object) -> bool:
        return key in self._units

    def __iter__(self) -> Iterator[QueueEntry]:
        for block in self._blocks:
            yield from block

    @property
    def total_units(self) -> int:
        return sum(self._sums)

    def head(self) -> QueueEntry | None:
        return self._blocks[0][0] if self._blocks else None

    def entry(self, key: str) -> QueueEntry:
        return self._entries[key]

    def units(self, key: str) -> int:
        return self._units[key]

    def pairs(self) -> list[tuple[QueueEntry, int]]:
        """Every entry with its units, in fill order (what a snapshot stores)."""
        return [(entry, self._units[entry.key]) for entry in self]

    def place_of(self, entry: QueueEntry) -> tuple[int, int]:
        """(entries ahead of `entry`, units ahead of it), whether or not it is queued."""
        block = self._block_of(entry)
        if block == len(self._blocks):
            return len(self), self.total_units
        inside = bisect.bisect_left(self._blocks[block], entry)
        ahead = sum(len(b) for b in self._blocks[:block]) + inside
        before = self._block_ends()[block - 1] if block else 0
        return ahead, before + (self._running_in(block)[inside - 1] if inside else 0)

    def covering(self, low: int, high: int) -> Iterator[tuple[QueueEntry, int]]:
        """Entries whose last queued unit lies in (low, high] counted from the head, each
        with that count (its units and all units ahead of it), in fill order."""
        if high <= low or not self._blocks:
            return
        ends = self._block_ends()
        first = bisect.bisect_right(ends, low)  # the first block that reaches past `low`
        for block in range(first, len(self._blocks)):
            before = ends[block - 1] if block else 0
            running = self._running_in(block)
            start = bisect.bisect_right(running, low - before) if block == first else 0
            entries = self._blocks[block]
            for index in range(start, len(entries)):
                counted = before + running[index]
                if counted > high:
                    return
                yield entries[index], counted

    # --- changing ---------------------------------------------------------------------

    def add(self, entry: QueueEntry, units: int) -> None:
        # Known before a split counts its halves' units: the new entry may be in the first
        # (fix: recorded after the split, a line placed ahead of others in a full block
        # raised KeyError there, so its command could never be applied).
        self._units[entry.key] = units
        self._entries[entry.key] = entry
        self._ends = None
        if not self._blocks:
            self._blocks.append([entry])
            self._sums.append(units)
            self._running.append(None)
        else:
            block = min(self._block_of(entry), len(self._blocks) - 1)
            bisect.insort(self._blocks[block], entry)
            self._sums[block] += units
            self._running[block] = None
            if len(self._blocks[block]) > BLOCK:
                self._split(block)

    def set_units(self, key: str, units: int) -> None:
        """A line's queued units changed (partly filled or cancelled); 0 takes it off."""
        entry = self._entries[key]
        block = self._block_of(entry)
        self._sums[block] += units - self._units[key]
        self._ends = None
        self._running[block] = None
        if units:
            self._units[key] = units
            return
        entries = self._blocks[block]
        del entries[bisect.bisect_left(entries, entry)]
        del self._units[key], self._entries[key]
        if not entries:
            del self._blocks[block], self._sums[block], self._running[block]

    # --- inside -----------------------------------------------------------------------

    def _block_of(self, entry: QueueEntry) -> int:
        """The block that holds `entry`, or would: the first whose last entry is not
        before it (len(blocks) when it sorts after every entry)."""
        blocks = self._blocks
        low, high = 0, len(blocks)
        while low < high:
            middle = (low + high) // 2
            if blocks[middle][-1] < entry:
                low = middle + 1
            else:
                high = middle
        return low

    def _block_ends(self) -> list[int]:
        if self._ends is None:
            self._ends = list(accumulate(self._sums))
        return self._ends

    def _running_in(self, block: int) -> list[int]:
        """Units up to and including each entry of the block, from the block's start."""
        running = self._running[block]
        if running is None:
            units = self._units
            running = list(accumulate(units[entry.key] for entry in self._blocks[block]))
            self._running[block] = running
        return running

    def _split(self, block: int) -> None:
        entries = self._blocks[block]
        half = len(entries) // 2
        first, second = entries[:half], entries[half:]
        self._blocks[block : block + 1] = [first, second]
        units = sum(self._units[e.key] for e in first)
        self._sums[block : block + 1] = [units, self._sums[block] - units]
        self._running[block : block + 1] = [None, None]
