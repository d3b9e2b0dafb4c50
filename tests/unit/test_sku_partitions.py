"""Each SKU lives in one sku-commands partition for good: its allocation instance is its only
writer. The partition count is pinned the first time the service starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from services.adapters.kafka import ConfigurationError, check_partition_count, sku_partition
from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_intake

TOPIC = "sku-commands"


@given(sku=st.text(min_size=1, max_size=64), partitions=st.integers(1, 64))
def test_the_home_partition_is_where_kafka_default_partitioner_puts_the_key(
    sku: str, partitions: int
) -> None:
    """So SKUs stay where they were before the relay chose partitions itself."""
    every = list(range(partitions))
    assert sku_partition(sku, partitions) == DefaultPartitioner()(sku.encode(), every, every)


def test_the_first_count_is_pinned_and_more_partitions_later_change_nothing(
    tmp_path: Path,
) -> None:
    intake = build_intake(Settings(database_url=f"sqlite:///{tmp_path}/s"))
    recorder = intake.process_recorder  # (keep `intake`: collecting it closes the store)
    assert check_partition_count(recorder, TOPIC, 6) == 6
    assert check_partition_count(recorder, TOPIC, 6) == 6
    assert check_partition_count(recorder, TOPIC, 9) == 6


def test_fewer_partitions_than_pinned_means_a_recreated_topic_and_is_refused(
    tmp_path: Path,
) -> None:
    intake = build_intake(Settings(database_url=f"sqlite:///{tmp_path}/s"))
    recorder = intake.process_recorder  # (keep `intake`: collecting it closes the store)
    check_partition_count(recorder, TOPIC, 6)
    with pytest.raises(ConfigurationError, match=r"has 4 partitions but .* recorded with 6"):
        check_partition_count(recorder, TOPIC, 4)


def test_no_partitions_in_kafkas_answer_is_refused_never_pinned(tmp_path: Path) -> None:
    """A loaded broker can describe a topic it just created without partitions: pinning 0
    would route every SKU nowhere, for good (seen in CI as a relay failing on modulo 0)."""
    intake = build_intake(Settings(database_url=f"sqlite:///{tmp_path}/s"))
    recorder = intake.process_recorder
    with pytest.raises(ConfigurationError, match="no partitions"):
        check_partition_count(recorder, TOPIC, 0)
    assert recorder.max_tracking_id(f"partition-count:{TOPIC}") is None
    assert check_partition_count(recorder, TOPIC, 6) == 6


class _PinnedMeanwhile:
    """The store as a process sees it when another process of the service pins the count
    between its read and its write (they start together)."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.reads = 0

    def max_tracking_id(self, name: str) -> int | None:
        self.reads += 1
        return None if self.reads == 1 else self.recorder.max_tracking_id(name)

    def insert_tracking(self, tracking: Any) -> None:
        self.recorder.insert_tracking(tracking)


def test_a_count_pinned_meanwhile_by_another_process_is_taken_not_a_crash(
    tmp_path: Path,
) -> None:
    intake = build_intake(Settings(database_url=f"sqlite:///{tmp_path}/s"))
    recorder = intake.process_recorder  # (keep `intake`: collecting it closes the store)
    check_partition_count(recorder, TOPIC, 6)  # the other process, first
    late = _PinnedMeanwhile(recorder)
    assert check_partition_count(late, TOPIC, 6) == 6
    assert late.reads == 2
    with pytest.raises(ConfigurationError):
        check_partition_count(_PinnedMeanwhile(recorder), TOPIC, 4)
