"""docs/contract.md, "Idempotent" and the cancellation rules, as intake records them.

A real Intake application on a SQLite file in tmp_path; what it recorded is read back
from its notification log, and translated into sku-commands the way the relay does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import Tracking

from events.commands import CancelLine, PlaceLine, ReceiveStock, SkuCommands
from events.inputs import InputEvent, OrderCancelled, StockReceived
from services.allocation.domain import Cause, Sku
from services.intake.application import Input, Intake, IntakeOutcome
from services.intake.domain import Order, Receipt
from services.intake.translate import sku_command_messages
from services.kernel.dead_letters import RefusedInput, Source, dead_letter_message
from tests.unit.stories import decided, order_cancelled, order_placed, stock_received

FAILED_AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class IntakeStory:
    """Feeds an Intake batch by batch and reads back what each batch recorded."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.offset = -1
        self.seen = 0

    def source(self, event: InputEvent | None, topic: str = "orders") -> Source:
        self.offset += 1
        if isinstance(event, OrderCancelled):
            topic = "cancellations"
        elif isinstance(event, StockReceived):
            topic = "receipts"
        return Source(
            topic=topic,
            partition=0,
            offset=self.offset,
            key=getattr(event, "order_id", None),
            payload="{}" if event is None else event.model_dump_json(),
            payload_encoding="utf-8",
        )

    def record(self, *events: InputEvent, backorders_allowed: bool = True) -> IntakeOutcome:
        inputs = [Input(self.source(event), event=event) for event in events]
        return self.record_inputs(inputs, backorders_allowed=backorders_allowed)

    def record_inputs(
        self, inputs: list[Input], *, backorders_allowed: bool = True
    ) -> IntakeOutcome:
        return self.intake.record_inputs(
            inputs,
            Tracking("orders-0", self.offset),
            failed_at=FAILED_AT,
            backorders_allowed=backorders_allowed,
        )

    def log(self) -> list[tuple[int, Any]]:
        notifications = self.intake.recorder.select_notifications(start=0, limit=1000)
        return [(n.id, self.intake.mapper.to_domain_event(n)) for n in notifications]

    def new_events(self) -> list[Any]:
        """What was recorded since the last call."""
        log = self.log()
        fresh = [event for _, event in log[self.seen :]]
        self.seen = len(log)
        return fresh

    def new_commands(self) -> list[SkuCommands]:
        log = self.log()
        fresh = log[self.seen :]
        self.seen = len(log)
        return [m for n, event in fresh for m in sku_command_messages(event, n)]


@pytest.fixture
def story(tmp_path: Path) -> Iterator[IntakeStory]:
    intake = Intake(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(tmp_path / "intake.db"),
        }
    )
    yield IntakeStory(intake)
    intake.close()


def names(events: list[Any]) -> list[str]:
    return [type(event).__qualname__ for event in events]


# --- orders -------------------------------------------------------------------------------


def test_an_order_is_recorded_with_its_lines(story: IntakeStory) -> None:
    event_id = uuid4()

    outcome = story.record(
        order_placed("O-1", [("1", "SKU-A", 2), ("2", "SKU-B", 1)], event_id=event_id)
    )

    assert (outcome.recorded, outcome.duplicates, outcome.dead_lettered) == (1, 0, [])
    [placed] = story.new_events()
    assert isinstance(placed, Order.Placed)
    assert (placed.order_id, placed.event_id, placed.customer_id) == ("O-1", str(event_id), "C-O-1")
    assert [(ln["line_id"], ln["sku"], ln["quantity"]) for ln in placed.lines] == [
        ("1", "SKU-A", 2),
        ("2", "SKU-B", 1),
    ]
    assert [ln["cancelled_before_placement"] for ln in placed.lines] == [0, 0]


def test_the_batch_position_is_tracked(story: IntakeStory) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 2)], event_id=uuid4()))
    story.record(order_placed("O-2", [("1", "SKU-A", 2)], event_id=uuid4()))

    assert story.intake.process_recorder.max_tracking_id("orders-0") == 1


def test_the_same_event_id_twice_is_recorded_once(story: IntakeStory) -> None:
    order = order_placed("O-1", [("1", "SKU-A", 2)], event_id=uuid4())
    story.record(order)
    story.new_events()

    outcome = story.record(order)

    assert (outcome.recorded, outcome.duplicates, outcome.dead_lettered) == (0, 1, [])
    assert story.new_events() == []


def test_the_same_event_id_twice_in_one_batch_is_recorded_once(story: IntakeStory) -> None:
    order = order_placed("O-1", [("1", "SKU-A", 2)], event_id=uuid4())

    outcome = story.record(order, order)

    assert (outcome.recorded, outcome.duplicates) == (1, 1)
    assert names(story.new_events()) == ["Order.Placed"]


def test_a_second_order_placed_with_the_same_lines_is_a_duplicate(story: IntakeStory) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 2), ("2", "SKU-B", 1)], event_id=uuid4()))
    story.new_events()

    outcome = story.record(
        order_placed("O-1", [("2", "SKU-B", 1), ("1", "SKU-A", 2)], event_id=uuid4())
    )

    assert (outcome.recorded, outcome.duplicates, outcome.dead_lettered) == (0, 1, [])
    assert story.new_events() == []


def test_a_second_order_placed_with_other_lines_is_dead_lettered_as_a_conflict(
    story: IntakeStory,
) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 2)], event_id=uuid4()))
    story.new_events()

    outcome = story.record(order_placed("O-1", [("1", "SKU-A", 3)], event_id=uuid4()))

    assert (outcome.recorded, outcome.duplicates, len(outcome.dead_lettered)) == (0, 0, 1)
    [dead] = story.new_events()
    assert isinstance(dead, RefusedInput.Recorded)
    assert "already placed with other lines" in dead.error
    assert (dead.source["topic"], dead.source["offset"]) == ("orders", 1)
    assert dead.failed_at == FAILED_AT


def test_the_backorder_policy_is_recorded_with_the_order(story: IntakeStory) -> None:
    story.record(
        order_placed("O-1", [("1", "SKU-A", 2)], event_id=uuid4()), backorders_allowed=False
    )

    [message] = story.new_commands()

    [command] = message.commands
    assert isinstance(command, PlaceLine)
    assert command.backorders_allowed is False


# --- cancellations ------------------------------------------------------------------------


def test_a_cancellation_of_a_placed_order_resolves_each_line_to_its_sku(
    story: IntakeStory,
) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 2), ("2", "SKU-B", 5)], event_id=uuid4()))
    story.new_events()
    event_id = uuid4()

    outcome = story.record(order_cancelled("O-1", [("2", 3)], event_id=event_id))

    assert outcome.recorded == 1
    [accepted] = story.new_events()
    assert isinstance(accepted, Order.CancellationAccepted)
    assert accepted.event_id == str(event_id)
    assert accepted.lines == [{"line_id": "2", "sku": "SKU-B", "quantity": 3}]
    assert accepted.reason == "customer_request"


def test_a_whole_order_cancellation_names_every_line(story: IntakeStory) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 2), ("2", "SKU-B", 5)], event_id=uuid4()))
    story.new_events()

    story.record(order_cancelled("O-1", event_id=uuid4()))

    [accepted] = story.new_events()
    assert isinstance(accepted, Order.CancellationAccepted)
    assert accepted.lines == [
        {"line_id": "1", "sku": "SKU-A", "quantity": None},
        {"line_id": "2", "sku": "SKU-B", "quantity": None},
    ]


def test_the_same_cancellation_twice_is_applied_once(story: IntakeStory) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 2)], event_id=uuid4()))
    cancellation = order_cancelled("O-1", [("1", 1)], event_id=uuid4())
    story.record(cancellation)
    story.new_events()

    outcome = story.record(cancellation)

    assert (outcome.recorded, outcome.duplicates) == (0, 1)
    assert story.new_events() == []


def test_cancelling_an_unknown_line_id_is_dead_lettered_and_nothing_of_it_applied(
    story: IntakeStory,
) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 2)], event_id=uuid4()))
    story.new_events()

    outcome = story.record(order_cancelled("O-1", [("1", 1), ("9", 1)], event_id=uuid4()))

    assert (outcome.recorded, len(outcome.dead_lettered)) == (0, 1)
    [dead] = story.new_events()
    assert isinstance(dead, RefusedInput.Recorded)
    assert "'9'" in dead.error
    assert dead.source["topic"] == "cancellations"


def test_a_cancellation_before_its_order_is_held(story: IntakeStory) -> None:
    outcome = story.record(order_cancelled("O-1", event_id=uuid4()))

    assert outcome.recorded == 1
    assert names(story.new_events()) == ["Order.CancellationArrivedFirst"]
    assert story.new_commands() == []


def test_a_whole_order_cancellation_before_its_order_leaves_nothing_to_allocate(
    story: IntakeStory,
) -> None:
    story.record(order_cancelled("O-1", event_id=uuid4()))
    story.new_events()

    story.record(order_placed("O-1", [("1", "SKU-A", 2), ("2", "SKU-B", 5)], event_id=uuid4()))

    [placed] = story.new_events()
    assert isinstance(placed, Order.PlacedAfterCancellation)
    assert [(ln["quantity"], ln["cancelled_before_placement"]) for ln in placed.lines] == [
        (2, 2),
        (5, 5),
    ]


def test_a_partial_cancellation_before_its_order_reduces_those_lines_first(
    story: IntakeStory,
) -> None:
    story.record(order_cancelled("O-1", [("1", 1)], event_id=uuid4()))
    story.record(order_cancelled("O-1", [("1", 1), ("2", None)], event_id=uuid4()))
    story.record(order_cancelled("O-1", [("3", 99)], event_id=uuid4()))
    story.new_events()

    story.record(
        order_placed(
            "O-1", [("1", "S", 3), ("2", "S", 4), ("3", "S", 5), ("4", "S", 6)], event_id=uuid4()
        )
    )

    [placed] = story.new_events()
    assert isinstance(placed, Order.PlacedAfterCancellation)
    assert {ln["line_id"]: ln["cancelled_before_placement"] for ln in placed.lines} == {
        "1": 2,
        "2": 4,
        "3": 5,
        "4": 0,
    }


def test_a_held_cancellation_naming_an_unknown_line_is_dead_lettered_when_the_order_arrives(
    story: IntakeStory,
) -> None:
    story.record(order_cancelled("O-1", [("1", 1), ("9", 1)], event_id=uuid4()))  # offset 0
    story.new_events()

    outcome = story.record(order_placed("O-1", [("1", "SKU-A", 3)], event_id=uuid4()))

    assert outcome.recorded == 1
    events = story.new_events()
    assert sorted(names(events)) == ["Order.PlacedAfterCancellation", "RefusedInput.Recorded"]
    [placed] = [e for e in events if isinstance(e, Order.PlacedAfterCancellation)]
    [dead] = [e for e in events if isinstance(e, RefusedInput.Recorded)]
    assert placed.lines[0]["cancelled_before_placement"] == 0
    assert (dead.source["topic"], dead.source["offset"]) == ("cancellations", 0)
    assert "nothing of it was applied" in dead.error


def test_a_held_cancellation_delivered_again_is_a_duplicate(story: IntakeStory) -> None:
    cancellation = order_cancelled("O-1", event_id=uuid4())
    story.record(cancellation)
    story.new_events()

    before = story.record(cancellation)
    story.record(order_placed("O-1", [("1", "SKU-A", 3)], event_id=uuid4()))
    after = story.record(cancellation)

    assert (before.duplicates, after.duplicates) == (1, 1)
    assert names(story.new_events()) == ["Order.PlacedAfterCancellation"]


def test_a_cancellation_and_its_order_in_one_batch(story: IntakeStory) -> None:
    outcome = story.record(
        order_cancelled("O-1", [("1", 2)], event_id=uuid4()),
        order_placed("O-1", [("1", "SKU-A", 3)], event_id=uuid4()),
    )

    assert outcome.recorded == 2
    [message] = story.new_commands()
    [command] = message.commands
    assert isinstance(command, PlaceLine)
    assert (command.quantity, command.cancelled_before_placement) == (3, 2)


def test_a_cancellation_that_arrived_first_is_never_allocated(story: IntakeStory) -> None:
    story.record(stock_received("R-1", "SKU-A", 10, event_id=uuid4()))
    story.record(order_cancelled("O-1", [("1", 2)], event_id=uuid4()))
    story.record(order_placed("O-1", [("1", "SKU-A", 5)], event_id=uuid4()))
    sku = Sku.register("SKU-A")

    for message in story.new_commands():
        for index, command in enumerate(message.commands):
            cause = Cause(
                command.causation_id, command.occurred_at, message.position * 1000 + index
            )
            if isinstance(command, ReceiveStock):
                sku.receive_stock(cause, receipt_id=command.receipt_id, quantity=command.quantity)
            elif isinstance(command, PlaceLine):
                sku.place_line(
                    cause,
                    order_id=command.order_id,
                    line_id=command.line_id,
                    line_index=command.line_index,
                    customer_id=command.customer_id,
                    priority=command.priority,
                    quantity=command.quantity,
                    cancelled_before_placement=command.cancelled_before_placement,
                )

    assert decided(sku.collect_events()) == [("LineAllocated", "O-1", "1", 3)]
    assert sku.available == 7


# --- receipts -----------------------------------------------------------------------------


def test_a_receipt_is_recorded(story: IntakeStory) -> None:
    event_id = uuid4()

    outcome = story.record(stock_received("R-1", "SKU-A", 10, event_id=event_id))

    assert outcome.recorded == 1
    [recorded] = story.new_events()
    assert isinstance(recorded, Receipt.Recorded)
    assert (recorded.receipt_id, recorded.sku, recorded.quantity) == ("R-1", "SKU-A", 10)
    assert recorded.event_id == str(event_id)


def test_receipts_are_deduplicated_by_event_id(story: IntakeStory) -> None:
    receipt = stock_received("R-1", "SKU-A", 10, event_id=uuid4())
    story.record(receipt)
    story.new_events()

    outcome = story.record(receipt)

    assert (outcome.recorded, outcome.duplicates) == (0, 1)
    assert story.new_events() == []


def test_receipts_are_deduplicated_by_receipt_id(story: IntakeStory) -> None:
    story.record(stock_received("R-1", "SKU-A", 10, event_id=uuid4()))
    story.new_events()

    outcome = story.record(stock_received("R-1", "SKU-A", 10, event_id=uuid4(), minutes=9))

    assert (outcome.recorded, outcome.duplicates) == (0, 1)
    assert story.new_events() == []


def test_a_conflicting_receipt_is_dead_lettered(story: IntakeStory) -> None:
    story.record(stock_received("R-1", "SKU-A", 10, event_id=uuid4()))
    story.new_events()

    outcome = story.record(stock_received("R-1", "SKU-A", 11, event_id=uuid4()))

    assert (outcome.recorded, outcome.duplicates, len(outcome.dead_lettered)) == (0, 0, 1)
    [dead] = story.new_events()
    assert isinstance(dead, RefusedInput.Recorded)
    assert "receipt R-1" in dead.error
    assert dead.source["topic"] == "receipts"


# --- dead letters -------------------------------------------------------------------------


def test_an_input_that_could_not_be_decoded_is_dead_lettered_and_the_batch_goes_on(
    story: IntakeStory,
) -> None:
    bad = Input(story.source(None), error="value is not JSON")
    order = order_placed("O-1", [("1", "SKU-A", 1)], event_id=uuid4())
    good = Input(story.source(order), event=order)

    outcome = story.record_inputs([bad, good])

    assert (outcome.recorded, outcome.dead_lettered) == (1, ["value is not JSON"])
    events = story.new_events()
    assert sorted(names(events)) == ["Order.Placed", "RefusedInput.Recorded"]
    [dead] = [e for e in events if isinstance(e, RefusedInput.Recorded)]
    message = dead_letter_message(dead)
    assert message is not None
    assert (message.source_topic, message.partition, message.offset) == ("orders", 0, 0)
    assert (message.error, message.payload, message.payload_encoding) == (
        "value is not JSON",
        "{}",
        "utf-8",
    )
    assert message.failed_at == FAILED_AT


def test_a_base64_payload_stays_base64_on_the_dead_letter_topic(story: IntakeStory) -> None:
    source = Source(
        topic="orders",
        partition=2,
        offset=7,
        key="O-1",
        payload="/w==",
        payload_encoding="base64",
    )
    story.record_inputs([Input(source, error="value is not JSON")])

    [dead] = story.new_events()

    message = dead_letter_message(dead)
    assert message is not None
    assert (message.payload, message.payload_encoding, message.key) == ("/w==", "base64", "O-1")
    assert dead_letter_message(object()) is None


# --- translation to sku-commands ----------------------------------------------------------


def test_one_sku_commands_message_per_sku_per_notification(story: IntakeStory) -> None:
    event_id = uuid4()
    story.record(
        order_placed(
            "O-1",
            [("1", "SKU-B", 1), ("2", "SKU-A", 2), ("3", "SKU-B", 3)],
            event_id=event_id,
            priority=4,
        )
    )
    [(notification_id, _)] = story.log()

    messages = story.new_commands()

    assert [(m.sku, m.position) for m in messages] == [
        ("SKU-B", notification_id * 1000),
        ("SKU-A", notification_id * 1000 + 1),
    ]
    place_lines = [c for m in messages for c in m.commands]
    assert all(isinstance(c, PlaceLine) for c in place_lines)
    rows = [
        (c.line_id, c.line_index, c.quantity, c.priority, c.causation_id)
        for c in place_lines
        if isinstance(c, PlaceLine)
    ]
    assert rows == [
        ("1", 0, 1, 4, event_id),
        ("3", 2, 3, 4, event_id),
        ("2", 1, 2, 4, event_id),
    ]


def test_a_cancellation_translates_to_cancel_lines_per_sku(story: IntakeStory) -> None:
    story.record(
        order_placed(
            "O-1", [("1", "SKU-A", 2), ("2", "SKU-B", 5), ("3", "SKU-A", 1)], event_id=uuid4()
        )
    )
    story.new_commands()
    event_id = uuid4()

    story.record(order_cancelled("O-1", [("3", None), ("2", 4), ("1", 1)], event_id=event_id))
    [(notification_id, _)] = story.log()[-1:]

    messages = story.new_commands()
    assert [(m.sku, m.position) for m in messages] == [
        ("SKU-A", notification_id * 1000),
        ("SKU-B", notification_id * 1000 + 1),
    ]
    rows = [
        (m.sku, c.line_id, c.quantity, c.causation_id)
        for m in messages
        for c in m.commands
        if isinstance(c, CancelLine)
    ]
    assert rows == [
        ("SKU-A", "3", None, event_id),
        ("SKU-A", "1", 1, event_id),
        ("SKU-B", "2", 4, event_id),
    ]


def test_a_receipt_translates_to_receive_stock(story: IntakeStory) -> None:
    event_id = uuid4()
    story.record(stock_received("R-9", "SKU-A", 10, event_id=event_id))
    [(notification_id, _)] = story.log()

    [message] = story.new_commands()

    assert (message.sku, message.position) == ("SKU-A", notification_id * 1000)
    [command] = message.commands
    assert isinstance(command, ReceiveStock)
    assert (command.receipt_id, command.quantity, command.causation_id) == ("R-9", 10, event_id)


def test_held_cancellations_and_dead_letters_translate_to_no_commands(
    story: IntakeStory,
) -> None:
    story.record(order_cancelled("O-1", event_id=uuid4()))
    story.record(stock_received("R-1", "SKU-A", 1, event_id=uuid4()))
    story.record(stock_received("R-1", "SKU-A", 2, event_id=uuid4()))
    story.record_inputs([Input(story.source(None), error="bad")])

    log = story.log()

    commands = {n: sku_command_messages(event, n) for n, event in log}
    assert [names([e]) for _, e in log] == [
        ["Order.CancellationArrivedFirst"],
        ["Receipt.Recorded"],
        ["RefusedInput.Recorded"],
        ["RefusedInput.Recorded"],
    ]
    assert [len(messages) for messages in commands.values()] == [0, 1, 0, 0]


def test_positions_increase_along_the_log(story: IntakeStory) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 1), ("2", "SKU-B", 1)], event_id=uuid4()))
    story.record(stock_received("R-1", "SKU-A", 1, event_id=uuid4()))
    story.record(order_cancelled("O-1", event_id=uuid4()))

    positions = [m.position for m in story.new_commands()]

    assert len(positions) == 5
    assert positions == sorted(set(positions))


def test_translation_is_deterministic(story: IntakeStory) -> None:
    story.record(order_placed("O-1", [("1", "SKU-A", 1), ("2", "SKU-B", 1)], event_id=uuid4()))
    story.record(order_cancelled("O-1", event_id=uuid4()))
    log = story.log()

    first = [m.model_dump() for n, e in log for m in sku_command_messages(e, n)]
    second = [m.model_dump() for n, e in log for m in sku_command_messages(e, n)]

    assert first == second
    assert len(first) == 4
