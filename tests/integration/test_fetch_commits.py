"""One consumer fetch, one commit: its partitions' positions go in with its events, on both
real stores, and a position refused rolls the whole fetch back."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from eventsourcing.persistence import IntegrityError

from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_intake
from services.intake.consumer import IntakeHandler
from services.intake.domain import order_aggregate_id
from tests.harness import as_json, consumer_record, order


def records(topic: str, partition: int, offsets: Sequence[int]) -> list[ConsumerRecord]:
    return [
        consumer_record(
            as_json(order(f"O-{partition}-{offset}", [("1", "S", 1)])),
            topic=topic,
            partition=partition,
            offset=offset,
        )
        for offset in offsets
    ]


@pytest.fixture
def handler(database_url: str) -> IntakeHandler:
    settings = Settings(database_url=database_url)
    return IntakeHandler(build_intake(settings), settings)


ORDERS = Settings().topics.orders
FIRST, SECOND = TopicPartition(ORDERS, 0), TopicPartition(ORDERS, 1)


def test_a_fetch_from_two_partitions_is_one_commit_with_both_positions(
    handler: IntakeHandler,
) -> None:
    intake, orders, first, second = handler.intake, ORDERS, FIRST, SECOND
    handler.assigned(first)
    handler.assigned(second)
    head = intake.recorder.max_notification_id() or 0

    handler.handle({first: records(orders, 0, range(3)), second: records(orders, 1, range(5))})

    recorder = intake.process_recorder
    assert recorder.max_tracking_id(f"{orders}-0") == 2
    assert recorder.max_tracking_id(f"{orders}-1") == 4
    assert (intake.recorder.max_notification_id() or 0) - head == 8  # one Placed per order


def test_a_fetch_whose_position_is_refused_records_nothing_of_it(handler: IntakeHandler) -> None:
    intake, orders, first, second = handler.intake, ORDERS, FIRST, SECOND
    handler.handle({second: records(orders, 1, range(10, 12))})  # partition 1 is at 11
    head = intake.recorder.max_notification_id()
    handler.positions[second] = 5  # as if a stale owner believed it was at 5

    with pytest.raises(IntegrityError):
        handler.handle({first: records(orders, 0, range(2)), second: records(orders, 1, [9])})

    recorder = intake.process_recorder
    assert recorder.max_tracking_id(f"{orders}-0") is None  # rolled back with partition 1
    assert recorder.max_tracking_id(f"{orders}-1") == 11
    assert intake.recorder.max_notification_id() == head
    assert order_aggregate_id("O-0-0") not in intake.repository
