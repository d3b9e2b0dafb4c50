"""Restore's own rules: the order it replays the inputs in, read from what the topics tell
of the lost intake log, and its bulk writer's encoding, which must be the library's."""

from __future__ import annotations

import json
from typing import Any

from services.allocation.application import Allocation, apply_message
from services.allocation.domain import Deadlines, Sku
from services.operations.restore import Anchors, in_intake_order, stored_event_encoder
from tests.harness import consumer_record
from tests.histories import random_history

ORDERS, CANCELLATIONS, RECEIPTS, COMMANDS = "orders", "cancellations", "receipts", "sku-commands"


def _input(topic: str, offset: int, **body: Any) -> Any:
    return consumer_record(json.dumps(body).encode(), topic=topic, offset=offset)


def _commands(position: int, *commands: dict[str, Any], offset: int = 0) -> Any:
    """A sku-commands message of the intake event at notification `position`."""
    body = {"sku": "SKU-1", "position": position * 1000, "commands": list(commands)}
    return consumer_record(json.dumps(body).encode(), topic=COMMANDS, offset=offset)


def _place(event_id: str, order_id: str, cancelled_first: int = 0) -> dict[str, Any]:
    return {
        "type": "PlaceLine",
        "causation_id": event_id,
        "order_id": order_id,
        "cancelled_before_placement": cancelled_first,
    }


def test_inputs_replay_in_the_lost_logs_order_even_where_it_differs_from_a_partitions() -> None:
    """Given a fetch where intake recorded O-2 (with its cancellation, which came first)
    ahead of O-1, before it in the orders partition, and a receipt in between: the restore
    takes the cancellation, O-2, the receipt, then O-1, as the lost log did (taking O-2 after
    O-1 would hand the receipt's stock to another line)."""
    o1 = _input(ORDERS, 0, event_id="e-o1", order_id="O-1")
    o2 = _input(ORDERS, 1, event_id="e-o2", order_id="O-2")
    cancel_o2 = _input(CANCELLATIONS, 0, event_id="e-c2", order_id="O-2")
    receipt = _input(RECEIPTS, 0, event_id="e-r", receipt_id="R-1")
    anchors = Anchors(cancellations=CANCELLATIONS)
    anchors.learn_sku_commands(
        [
            _commands(5, _place("e-o2", "O-2", cancelled_first=1), offset=0),
            _commands(7, {"type": "ReceiveStock", "causation_id": "e-r"}, offset=1),
            _commands(10, _place("e-o1", "O-1"), offset=2),
        ]
    )

    ordered, anchored = in_intake_order([o1, o2, cancel_o2, receipt], anchors)

    assert ordered == [cancel_o2, o2, receipt, o1]
    assert anchored == 4


def test_an_input_the_topics_do_not_place_follows_the_one_before_it_in_its_partition() -> None:
    """A duplicate (its first copy took the place) and a cancellation that left no trace go
    right after the input before them in their partition."""
    first = _input(ORDERS, 0, event_id="e-1", order_id="O-1")
    again = _input(ORDERS, 1, event_id="e-1", order_id="O-1")
    late = _input(ORDERS, 2, event_id="e-3", order_id="O-3")
    stray = _input(CANCELLATIONS, 0, event_id="e-c9", order_id="O-9")
    anchors = Anchors(cancellations=CANCELLATIONS)
    anchors.learn_sku_commands(
        [_commands(3, _place("e-1", "O-1")), _commands(8, _place("e-3", "O-3"), offset=1)]
    )

    ordered, anchored = in_intake_order([late, again, first, stray], anchors)

    assert ordered == [stray, first, again, late]
    assert anchored == 2


def test_the_bulk_writer_encodes_every_event_and_snapshot_as_the_library_does() -> None:
    """Events of every kind, ticks' expiries and snapshots with queues: byte for byte what
    eventsourcing's mapper writes, so a restored store reads as the service's own."""
    app = Allocation(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    skus: dict[str, Sku] = {}
    deadlines = Deadlines.start("all")

    def sku_named(name: str) -> Sku:
        return skus.setdefault(name, Sku.register(name))

    events: list[Any] = []
    for message in random_history(3, skus=4, inputs=400):
        apply_message(message, deadlines, sku_named)
    for sku in skus.values():
        events += sku.collect_events()
        events.append(Sku.Snapshot.take(sku))
    events += deadlines.collect_events()
    kinds = {type(event).__name__ for event in events}
    assert {"LineAllocated", "LineBackordered", "BackorderFilled", "Snapshot"} <= kinds

    encode = stored_event_encoder(app)

    for event in events:
        assert encode(event) == app.mapper.to_stored_event(event), type(event).__name__
