"""docs/contract.md, "Version 2": one test per new rule of a SKU, as given / when / then.

Shipments, backorder policies, promised dates from expected supply, expiry at a tick, and
settled lines forgotten. Each test gives a Sku some commands, then issues one and asserts
the decisions it emitted and what the SKU's public readers say afterwards.
"""

from __future__ import annotations

from datetime import timedelta

from services.allocation.domain import Cause, Sku
from services.allocation.queue import BLOCK
from services.allocation.translate import decision_message
from tests.unit.stories import MINUTES_A_DAY, SkuStory, cause_id, day, eta_changes, told

# --- policies -----------------------------------------------------------------------------


def test_a_sku_that_allows_backorders_queues_what_stock_cannot_cover() -> None:
    story = SkuStory()
    story.set_policy("allow")
    story.receive(2)

    events = story.place("O-1", 5, backorders_allowed=False)

    assert told(events) == [
        ("LineAllocated", "O-1", "1", 2),
        ("LineBackordered", "O-1", "1", 3, 1, None),
    ]
    assert story.queue() == [("O-1", "1", 3)]


def test_a_sku_that_denies_backorders_rejects_the_rest_as_backorders_denied() -> None:
    story = SkuStory()
    story.set_policy("deny")
    story.receive(2)

    events = story.place("O-1", 5)

    assert told(events) == [
        ("LineAllocated", "O-1", "1", 2),
        ("LineRejected", "O-1", "1", 3, "backorders_denied"),
    ]
    assert story.queue() == []
    line = story.line("O-1")
    assert (line["allocated"], line["backordered"], line["rejected"]) == (2, 0, 3)


def test_a_limit_queues_up_to_the_cap_and_rejects_the_excess_as_backorder_limit() -> None:
    story = SkuStory()
    story.set_policy("limit", limit=5)
    story.place("O-1", 3)

    events = story.place("O-2", 4)

    assert told(events) == [
        ("LineBackordered", "O-2", "1", 2, 2, None),
        ("LineRejected", "O-2", "1", 2, "backorder_limit"),
    ]
    assert story.sku.backordered == 5
    assert told(story.place("O-3", 1)) == [("LineRejected", "O-3", "1", 1, "backorder_limit")]


def test_a_limit_counts_the_units_queued_now_not_those_ever_queued() -> None:
    story = SkuStory()
    story.set_policy("limit", limit=3)
    story.place("O-1", 3)
    story.receive(2)  # O-1 keeps 1 queued

    events = story.place("O-2", 3)

    assert told(events) == [
        ("LineBackordered", "O-2", "1", 2, 2, None),
        ("LineRejected", "O-2", "1", 1, "backorder_limit"),
    ]


def test_a_limit_of_zero_rejects_every_backorder_and_still_allocates_stock() -> None:
    story = SkuStory()
    story.set_policy("limit", limit=0)
    story.receive(1)

    events = story.place("O-1", 3)

    assert told(events) == [
        ("LineAllocated", "O-1", "1", 1),
        ("LineRejected", "O-1", "1", 2, "backorder_limit"),
    ]
    assert story.queue() == []


def test_the_limit_is_ignored_unless_backorders_are_limited() -> None:
    story = SkuStory()
    story.set_policy("allow", limit=1)

    events = story.place("O-1", 5)

    assert told(events) == [("LineBackordered", "O-1", "1", 5, 1, None)]
    assert story.sku.policy == {"backorders": "allow", "limit": None, "max_wait_days": None}


def test_a_policy_is_recorded_and_decides_nothing_by_itself() -> None:
    story = SkuStory()

    events = story.set_policy("limit", limit=7, max_wait_days=30)

    assert told(events) == []
    assert [type(event).__name__ for event in events] == ["PolicySet"]
    expected = {"backorders": "limit", "limit": 7, "max_wait_days": 30}
    assert story.sku.policy == expected
    assert story.sku.effective_policy(backorders_allowed=False) == expected


def test_backorders_allowed_false_is_the_default_policy_of_a_sku_without_one() -> None:
    story = SkuStory()

    events = story.place("O-1", 2, backorders_allowed=False)

    assert told(events) == [("LineRejected", "O-1", "1", 2, "backorders_denied")]
    assert story.sku.policy is None
    assert story.sku.effective_policy(backorders_allowed=False)["backorders"] == "deny"
    assert story.sku.effective_policy(backorders_allowed=True)["backorders"] == "allow"


def test_the_sku_s_own_policy_overrides_backorders_allowed_false() -> None:
    story = SkuStory()
    story.set_policy("limit", limit=1)

    events = story.place("O-1", 2, backorders_allowed=False)

    assert told(events) == [
        ("LineBackordered", "O-1", "1", 1, 1, None),
        ("LineRejected", "O-1", "1", 1, "backorder_limit"),
    ]


def test_denying_backorders_leaves_the_lines_already_queued_on_the_queue() -> None:
    story = SkuStory()
    story.place("O-1", 3)
    story.place("O-2", 2)

    events = story.set_policy("deny")

    assert told(events) == []
    assert story.queue() == [("O-1", "1", 3), ("O-2", "1", 2)]
    assert told(story.place("O-3", 1)) == [("LineRejected", "O-3", "1", 1, "backorders_denied")]
    assert told(story.receive(3)) == [("BackorderFilled", "O-1", "1", 3, 0)]


def test_lowering_the_limit_below_what_is_queued_rejects_only_new_lines() -> None:
    story = SkuStory()
    story.set_policy("limit", limit=10)
    story.place("O-1", 6)

    story.set_policy("limit", limit=2)

    assert story.queue() == [("O-1", "1", 6)]
    assert told(story.place("O-2", 1)) == [("LineRejected", "O-2", "1", 1, "backorder_limit")]
    story.cancel("O-1")
    assert told(story.place("O-3", 3)) == [
        ("LineBackordered", "O-3", "1", 2, 1, None),
        ("LineRejected", "O-3", "1", 1, "backorder_limit"),
    ]


def test_max_wait_days_applies_to_lines_queued_before_the_policy_came() -> None:
    story = SkuStory()
    story.place("O-OLD", 2)  # at T0, when the SKU had no policy
    story.set_policy("deny", max_wait_days=2)

    events = story.tick(day(2))

    assert told(events) == [("BackorderCancelled", "O-OLD", "1", 2, 0, "expired")]
    assert story.queue() == []


def test_a_policy_without_max_wait_days_ends_expiry() -> None:
    story = SkuStory()
    story.set_policy("allow", max_wait_days=1)
    story.place("O-1", 2)
    story.set_policy("allow")

    events = story.tick(day(30))

    assert events == []
    assert story.queue() == [("O-1", "1", 2)]


# --- promised dates -------------------------------------------------------------------------


def test_a_backordered_line_is_promised_the_date_of_the_inbound_covering_its_last_unit() -> None:
    story = SkuStory()
    story.expect("PO-1", 3, day(5))
    story.expect("PO-2", 4, day(9))

    placed = [
        story.place("O-1", 2),  # units 1-2: PO-1
        story.place("O-2", 2),  # units 3-4: the last one is PO-2's
        story.place("O-3", 3),  # units 5-7: PO-2
        story.place("O-4", 1),  # unit 8: past all expected supply
    ]

    assert [told(events) for events in placed] == [
        [("LineBackordered", "O-1", "1", 2, 1, day(5))],
        [("LineBackordered", "O-2", "1", 2, 2, day(9))],
        [("LineBackordered", "O-3", "1", 3, 3, day(9))],
        [("LineBackordered", "O-4", "1", 1, 4, None)],
    ]
    etas = [line["eta"] for line in story.sku.queued_lines()]
    assert etas == [day(5), day(9), day(9), None]


def test_without_expected_supply_no_line_has_a_date() -> None:
    story = SkuStory()
    story.receive(1)

    events = story.place("O-1", 3)

    assert told(events) == [
        ("LineAllocated", "O-1", "1", 1),
        ("LineBackordered", "O-1", "1", 2, 1, None),
    ]
    assert story.sku.inbound == 0


def test_inbounds_cover_the_queue_earliest_date_first_whatever_order_they_came_in() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    story.place("O-2", 2)
    story.expect("PO-LATER", 2, day(9))

    events = story.expect("PO-SOONER", 2, day(5))

    assert eta_changes(events) == [("O-1", 2, day(5), day(9)), ("O-2", 2, day(9), None)]


def test_a_late_inbound_still_counts_and_covers_the_head_first() -> None:
    story = SkuStory()
    story.expect("PO-A", 2, day(5))
    story.expect("PO-Z", 2, day(-3))  # due before any order was placed: late

    first = story.place("O-1", 2)
    second = story.place("O-2", 2)

    assert told(first) == [("LineBackordered", "O-1", "1", 2, 1, day(-3))]
    assert told(second) == [("LineBackordered", "O-2", "1", 2, 2, day(5))]


def test_inbounds_due_at_the_same_moment_add_up_in_inbound_id_order() -> None:
    """Ties are broken by inbound_id, so the schedule never depends on which came first;
    both cover the queue at the same date, the next inbound after them."""
    stories = [SkuStory(), SkuStory()]
    for story, ids in zip(stories, (("PO-B", "PO-A"), ("PO-A", "PO-B")), strict=True):
        for inbound_id in ids:
            story.expect(inbound_id, 2, day(5))
        story.expect("PO-C", 2, day(7))

    placed = [[told(story.place(f"O-{n}", 2)) for n in (1, 2, 3, 4)] for story in stories]

    assert placed[0] == placed[1]
    assert [rows[0][-1] for rows in placed[0]] == [day(5), day(5), day(7), None]


def test_a_new_inbound_dates_the_lines_it_covers_in_queue_order() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    story.place("O-2", 2)
    story.place("O-3", 2)

    events = story.expect("PO-1", 4, day(5))

    assert told(events) == [
        ("BackorderEtaChanged", "O-1", "1", 2, day(5), None),
        ("BackorderEtaChanged", "O-2", "1", 2, day(5), None),
    ]
    assert story.sku.inbound == 4
    assert story.sku.inbounds == {"PO-1": {"quantity": 4, "expected_at": day(5)}}


def _four_lines_on_two_inbounds() -> SkuStory:
    """PO-1 (4 units at day 5) then PO-2 (4 at day 9) cover O-1..O-4 (2 units each)."""
    story = SkuStory()
    story.expect("PO-1", 4, day(5))
    story.expect("PO-2", 4, day(9))
    for order in ("O-1", "O-2", "O-3", "O-4"):
        story.place(order, 2)
    assert [line["eta"] for line in story.sku.queued_lines()] == [day(5), day(5), day(9), day(9)]
    return story


def test_a_smaller_revision_moves_exactly_the_lines_it_no_longer_covers() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.expect("PO-1", 2, day(5))

    # O-2 now waits for PO-2; PO-2 ends two units earlier, before O-4's last unit.
    assert eta_changes(events) == [("O-2", 2, day(9), day(5)), ("O-4", 2, None, day(9))]
    assert story.sku.inbound == 6


def test_a_larger_revision_moves_exactly_the_lines_it_now_covers() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.expect("PO-1", 6, day(5))

    assert eta_changes(events) == [("O-3", 2, day(5), day(9))]


def test_a_revised_date_moves_the_lines_the_inbound_covers() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.expect("PO-2", 4, day(7))

    assert eta_changes(events) == [("O-3", 2, day(7), day(9)), ("O-4", 2, day(7), day(9))]


def test_a_revised_date_can_put_an_inbound_behind_another() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.expect("PO-1", 4, day(12))

    assert eta_changes(events) == [
        ("O-1", 2, day(9), day(5)),
        ("O-2", 2, day(9), day(5)),
        ("O-3", 2, day(12), day(9)),
        ("O-4", 2, day(12), day(9)),
    ]


def test_a_withdrawal_moves_exactly_the_lines_it_covered() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.expect("PO-2", 0, day(9))

    assert eta_changes(events) == [("O-3", 2, None, day(9)), ("O-4", 2, None, day(9))]
    assert story.sku.inbounds == {"PO-1": {"quantity": 4, "expected_at": day(5)}}


def test_withdrawing_the_first_inbound_moves_every_line_it_covered_and_those_behind() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.expect("PO-1", 0, day(1))  # a withdrawal whatever date it names

    assert eta_changes(events) == [
        ("O-1", 2, day(9), day(5)),
        ("O-2", 2, day(9), day(5)),
        ("O-3", 2, None, day(9)),
        ("O-4", 2, None, day(9)),
    ]
    assert story.sku.inbounds == {"PO-2": {"quantity": 4, "expected_at": day(9)}}


def test_withdrawing_an_inbound_the_sku_does_not_expect_moves_nothing() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.expect("PO-9", 0, day(2))

    assert told(events) == []
    assert story.sku.inbound == 8


def test_eta_changes_follow_the_command_s_own_decisions_in_queue_order() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.place("O-URGENT", 2, priority=1)

    assert told(events) == [
        ("LineBackordered", "O-URGENT", "1", 2, 1, day(5)),
        ("BackorderEtaChanged", "O-2", "1", 2, day(9), day(5)),
        ("BackorderEtaChanged", "O-4", "1", 2, None, day(9)),
    ]


def test_an_eta_change_states_the_quantity_queued_now() -> None:
    story = SkuStory()
    story.expect("PO-1", 5, day(5))
    story.expect("PO-2", 5, day(9))
    story.place("O-1", 6)  # its sixth unit is PO-2's

    events = story.receive(2)  # plain stock: 4 left queued, all on PO-1

    assert told(events) == [
        ("BackorderFilled", "O-1", "1", 2, 4),
        ("BackorderEtaChanged", "O-1", "1", 4, day(5), day(9)),
    ]


def test_a_cancellation_ahead_brings_the_lines_behind_forward() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.cancel("O-1")

    assert told(events) == [
        ("BackorderCancelled", "O-1", "1", 2, 0, "cancelled"),
        ("BackorderEtaChanged", "O-3", "1", 2, day(5), day(9)),
    ]


def test_a_line_that_leaves_the_queue_gets_no_eta_decision() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.receive(3)  # plain stock: O-1 filled, O-2 partly

    assert told(events) == [
        ("BackorderFilled", "O-1", "1", 2, 0),
        ("BackorderFilled", "O-2", "1", 1, 1),
        ("BackorderEtaChanged", "O-3", "1", 2, day(5), day(9)),
    ]


def test_a_line_queued_ahead_in_a_full_block_of_the_queue_takes_its_place() -> None:
    """The queue keeps its lines in blocks of at most BLOCK; a line placed ahead of others
    in a full block splits it (this once raised KeyError: the command could never apply)."""
    story = SkuStory()
    story.expect("PO-1", 1, day(5))
    for n in range(BLOCK):
        story.place(f"O-{n}", 1)

    events = story.place("O-URGENT", 1, priority=1)

    assert told(events) == [
        ("LineBackordered", "O-URGENT", "1", 1, 1, day(5)),
        ("BackorderEtaChanged", "O-0", "1", 1, None, day(5)),
    ]
    assert story.queue()[:2] == [("O-URGENT", "1", 1), ("O-0", "1", 1)]
    assert story.sku.backordered == BLOCK + 1


# --- receipts against an inbound --------------------------------------------------------


def test_a_receipt_against_an_inbound_takes_its_quantity_off_that_inbound() -> None:
    story = SkuStory()
    story.expect("PO-1", 10, day(5))

    events = story.receive(4, inbound_id="PO-1")

    received = [event for event in events if isinstance(event, Sku.StockReceived)]
    assert [(event.quantity, event.inbound_id) for event in received] == [(4, "PO-1")]
    assert story.sku.inbounds == {"PO-1": {"quantity": 6, "expected_at": day(5)}}
    assert (story.sku.inbound, story.sku.received, story.sku.available) == (6, 4, 4)


def test_a_receipt_for_more_than_an_inbound_expects_closes_it_at_zero() -> None:
    story = SkuStory()
    story.expect("PO-1", 3, day(5))
    story.expect("PO-2", 3, day(9))

    story.receive(5, inbound_id="PO-1")

    assert story.sku.inbounds == {"PO-2": {"quantity": 3, "expected_at": day(9)}}
    assert (story.sku.inbound, story.sku.received, story.sku.available) == (3, 5, 5)


def test_a_receipt_naming_an_inbound_the_sku_does_not_have_is_plain_stock() -> None:
    story = SkuStory()
    story.expect("PO-1", 3, day(5))

    events = story.receive(2, inbound_id="PO-9")

    received = [event for event in events if isinstance(event, Sku.StockReceived)]
    assert [event.inbound_id for event in received] == ["PO-9"]
    assert story.sku.inbounds == {"PO-1": {"quantity": 3, "expected_at": day(5)}}
    assert (story.sku.received, story.sku.available) == (2, 2)


def test_a_receipt_of_the_inbound_that_covers_the_head_keeps_the_later_lines_dates() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.receive(4, inbound_id="PO-1")

    assert told(events) == [
        ("BackorderFilled", "O-1", "1", 2, 0),
        ("BackorderFilled", "O-2", "1", 2, 0),
    ]
    assert [line["eta"] for line in story.sku.queued_lines()] == [day(9), day(9)]


def test_plain_stock_brings_the_later_lines_dates_forward() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.receive(4)

    assert told(events) == [
        ("BackorderFilled", "O-1", "1", 2, 0),
        ("BackorderFilled", "O-2", "1", 2, 0),
        ("BackorderEtaChanged", "O-3", "1", 2, day(5), day(9)),
        ("BackorderEtaChanged", "O-4", "1", 2, day(5), day(9)),
    ]
    assert story.sku.inbound == 8


def test_a_receipt_of_a_later_inbound_moves_the_lines_it_covered() -> None:
    story = _four_lines_on_two_inbounds()

    events = story.receive(4, inbound_id="PO-2")  # PO-2 came first, PO-1 still expected

    assert told(events) == [
        ("BackorderFilled", "O-1", "1", 2, 0),
        ("BackorderFilled", "O-2", "1", 2, 0),
        ("BackorderEtaChanged", "O-3", "1", 2, day(5), day(9)),
        ("BackorderEtaChanged", "O-4", "1", 2, day(5), day(9)),
    ]
    assert story.sku.inbounds == {"PO-1": {"quantity": 4, "expected_at": day(5)}}


# --- shipments ----------------------------------------------------------------------------


def test_a_shipment_takes_allocated_units_off_the_line_and_off_stock_on_hand() -> None:
    story = SkuStory()
    story.receive(5)
    story.place("O-1", 4)

    events = story.ship("O-1", 3, shipment_id="S-9")

    assert told(events) == [("LineShipped", "O-1", "1", 3, 1, "S-9")]
    line = story.line("O-1")
    assert (line["allocated"], line["shipped"]) == (1, 3)
    assert (story.sku.on_hand, story.sku.shipped, story.sku.received) == (2, 3, 5)
    assert (story.sku.available, story.sku.allocated) == (1, 1)  # available did not move


def test_a_shipment_of_everything_allocated_settles_the_line() -> None:
    story = SkuStory()
    story.receive(4)
    story.place("O-1", 4)

    events = story.ship("O-1", 4)

    assert told(events) == [("LineShipped", "O-1", "1", 4, 0, "S-1")]
    assert story.line("O-1")["shipped"] == 4
    assert "O-1\n1" not in story.sku.lines


def test_a_shipment_for_more_than_is_allocated_is_refused_and_has_no_effect() -> None:
    story = SkuStory()
    story.receive(4)
    story.place("O-1", 4)
    cause = story.next_cause()

    events = story.ship("O-1", 5, shipment_id="S-9", cause=cause)

    assert told(events) == []
    refused = [event for event in events if isinstance(event, Sku.ShipmentLineRefused)]
    assert len(refused) == len(events) == 1
    assert (refused[0].shipment_id, refused[0].order_id, refused[0].line_id) == ("S-9", "O-1", "1")
    assert (refused[0].quantity, refused[0].allocated) == (5, 4)
    assert (refused[0].causation_id, refused[0].source_topic) == (cause.causation_id, "shipments")
    line = story.line("O-1")
    assert (line["allocated"], line["shipped"]) == (4, 0)
    assert (story.sku.on_hand, story.sku.shipped, story.sku.available) == (4, 0, 0)


def test_a_shipment_cannot_take_backordered_units() -> None:
    story = SkuStory()
    story.receive(2)
    story.place("O-1", 5)  # 2 allocated, 3 queued

    events = story.ship("O-1", 3)

    assert told(events) == []
    assert [type(event).__name__ for event in events] == ["ShipmentLineRefused"]
    assert story.queue() == [("O-1", "1", 3)]


def test_a_shipment_for_a_line_the_sku_does_not_hold_is_refused() -> None:
    story = SkuStory()
    story.receive(2)

    events = story.ship("O-NOPE", 1)

    refused = [event for event in events if isinstance(event, Sku.ShipmentLineRefused)]
    assert [(event.order_id, event.allocated) for event in refused] == [("O-NOPE", 0)]
    assert (story.sku.on_hand, story.sku.available) == (2, 2)


def test_a_cancellation_after_a_shipment_only_touches_what_is_outstanding() -> None:
    story = SkuStory()
    story.receive(3)
    story.place("O-1", 5)  # 3 allocated, 2 queued
    story.ship("O-1", 2)

    events = story.cancel("O-1")

    assert told(events) == [
        ("BackorderCancelled", "O-1", "1", 2, 0, "cancelled"),
        ("AllocationReleased", "O-1", "1", 1),
    ]
    line = story.line("O-1")
    assert (line["shipped"], line["cancelled"], line["allocated"], line["backordered"]) == (
        2,
        3,
        0,
        0,
    )
    assert (story.sku.on_hand, story.sku.available, story.sku.shipped) == (1, 1, 2)


def test_a_cancellation_of_a_line_shipped_in_full_decides_nothing() -> None:
    story = SkuStory()
    story.receive(2)
    story.place("O-1", 2)
    story.ship("O-1", 2)

    events = story.cancel("O-1")

    assert events == []
    assert story.line("O-1")["shipped"] == 2
    assert (story.sku.on_hand, story.sku.available) == (0, 0)


# --- expiry -------------------------------------------------------------------------------


def _waiting_three_days_at_most() -> SkuStory:
    """O-1 placed at T0 with 2 allocated and 3 queued, on a SKU with max_wait_days 3."""
    story = SkuStory()
    story.set_policy("allow", max_wait_days=3)
    story.receive(2)
    story.place("O-1", 5)
    return story


def test_a_tick_exactly_at_the_deadline_expires_the_queued_quantity() -> None:
    story = _waiting_three_days_at_most()

    events = story.tick(day(3))

    assert told(events) == [("BackorderCancelled", "O-1", "1", 3, 0, "expired")]
    line = story.line("O-1")
    assert (line["allocated"], line["backordered"], line["cancelled"]) == (2, 0, 3)
    assert story.queue() == []
    assert (story.sku.available, story.sku.allocated) == (0, 2)  # only queued units go


def test_a_tick_one_moment_before_the_deadline_expires_nothing() -> None:
    story = _waiting_three_days_at_most()

    events = story.tick(day(3) - timedelta(microseconds=1))

    assert events == []
    assert story.queue() == [("O-1", "1", 3)]


def test_a_tick_past_the_deadline_expires_the_lines_due_and_only_those() -> None:
    story = _waiting_three_days_at_most()
    story.place("O-2", 1, minutes=1 * MINUTES_A_DAY)
    story.place("O-3", 1, minutes=3 * MINUTES_A_DAY)
    story.place("O-4", 1, minutes=0.5 * MINUTES_A_DAY, priority=1)  # at the head

    events = story.tick(day(4.5))

    assert told(events) == [
        ("BackorderCancelled", "O-4", "1", 1, 0, "expired"),
        ("BackorderCancelled", "O-1", "1", 3, 0, "expired"),
        ("BackorderCancelled", "O-2", "1", 1, 0, "expired"),
    ]
    assert story.queue() == [("O-3", "1", 1)]
    assert story.sku.next_deadline() == day(6)


def test_an_earlier_tick_after_a_later_one_expires_less_and_undoes_nothing() -> None:
    story = _waiting_three_days_at_most()
    story.place("O-2", 1, minutes=2 * MINUTES_A_DAY)
    story.tick(day(4))  # O-1 expires, O-2 (due at day 5) waits

    earlier = story.tick(day(1))
    later = story.tick(day(5))

    assert earlier == []
    assert story.line("O-1")["cancelled"] == 3
    assert told(later) == [("BackorderCancelled", "O-2", "1", 1, 0, "expired")]


def test_a_tick_on_a_sku_without_max_wait_days_expires_nothing() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    story.set_policy("limit", limit=5)

    events = story.tick(day(3650))

    assert events == []
    assert story.queue() == [("O-1", "1", 2)]
    assert story.sku.next_deadline() is None


def test_an_expiry_brings_the_dates_of_the_lines_behind_forward() -> None:
    story = SkuStory()
    story.set_policy("allow", max_wait_days=3)
    story.expect("PO-1", 2, day(5))
    story.expect("PO-2", 2, day(9))
    story.place("O-OLD", 2)
    story.place("O-NEW", 2, minutes=2 * MINUTES_A_DAY)

    events = story.tick(day(3))

    assert told(events) == [
        ("BackorderCancelled", "O-OLD", "1", 2, 0, "expired"),
        ("BackorderEtaChanged", "O-NEW", "1", 2, day(5), day(9)),
    ]


def test_the_same_tick_twice_expires_once() -> None:
    story = _waiting_three_days_at_most()
    tick = Cause(cause_id(99), day(3), story.position + 1)

    first = story.tick(day(3), cause=tick)
    again = story.tick(day(3), cause=tick)

    assert len(told(first)) == 1
    assert again == []


# --- settled lines ------------------------------------------------------------------------


def test_a_line_filled_and_shipped_is_forgotten_while_open_lines_are_kept() -> None:
    story = SkuStory()
    story.place("O-1", 2)
    story.place("O-2", 3)
    story.receive(4)  # O-1 filled, O-2 partly

    story.ship("O-1", 2)

    assert story.line("O-1") == {
        "ordered": 2,
        "allocated": 0,
        "backordered": 0,
        "shipped": 2,
        "cancelled": 0,
        "rejected": 0,
    }
    assert list(story.sku.lines) == ["O-2\n1"]
    assert (story.line("O-2")["allocated"], story.line("O-2")["backordered"]) == (2, 1)


def test_a_line_cancelled_in_full_is_forgotten() -> None:
    story = SkuStory()
    story.receive(1)
    story.place("O-1", 3)
    story.place("O-2", 1)

    story.cancel("O-1")

    assert story.line("O-1")["cancelled"] == 3
    assert list(story.sku.lines) == ["O-2\n1"]


def test_a_line_rejected_in_full_is_forgotten() -> None:
    story = SkuStory()
    story.set_policy("deny")

    story.place("O-1", 3)

    assert story.line("O-1")["rejected"] == 3
    assert len(story.sku.lines) == 0


def test_a_line_cancelled_before_it_was_placed_is_forgotten_at_once() -> None:
    story = SkuStory()

    events = story.place("O-1", 2, cancelled_before_placement=2)

    assert told(events) == []
    assert story.line("O-1")["cancelled"] == 2
    assert len(story.sku.lines) == 0


def test_a_line_that_expired_with_nothing_allocated_is_forgotten() -> None:
    story = SkuStory()
    story.set_policy("allow", max_wait_days=1)
    story.place("O-1", 2)

    story.tick(day(1))

    assert story.line("O-1")["cancelled"] == 2
    assert len(story.sku.lines) == 0


def test_a_line_with_stock_still_allocated_is_kept_after_a_partial_shipment() -> None:
    story = SkuStory()
    story.receive(3)
    story.place("O-1", 3)

    story.ship("O-1", 1)

    assert story.line("O-1")["allocated"] == 2
    assert list(story.sku.lines) == ["O-1\n1"]


def test_a_forgotten_line_can_neither_be_cancelled_nor_shipped() -> None:
    story = SkuStory()
    story.receive(2)
    story.place("O-1", 2)
    story.ship("O-1", 2)

    cancelled = story.cancel("O-1")
    shipped = story.ship("O-1", 1, shipment_id="S-2")

    assert cancelled == []
    assert [type(event).__name__ for event in shipped] == ["ShipmentLineRefused"]
    assert story.line("O-1")["shipped"] == 2


# --- the contract's messages ----------------------------------------------------------------


def test_the_new_decisions_translate_to_the_contract_s_messages() -> None:
    story = SkuStory()
    story.set_policy("limit", limit=1, max_wait_days=1)
    story.receive(1)
    story.expect("PO-1", 1, day(5))
    events = story.place("O-1", 3)  # 1 allocated, 1 queued (day 5), 1 over the limit
    events += story.ship("O-1", 1, shipment_id="S-7")
    events += story.expect("PO-1", 1, day(6))
    events += story.tick(day(1))

    messages = [m.model_dump(mode="json") for m in map(decision_message, events) if m]

    shared = {"sku": "SKU-RED-M", "order_id": "O-1", "line_id": "1"}
    assert [{k: m[k] for k in (*shared, "type")} for m in messages] == [
        {**shared, "type": kind}
        for kind in (
            "LineAllocated",
            "LineBackordered",
            "LineRejected",
            "LineShipped",
            "BackorderEtaChanged",
            "BackorderCancelled",
        )
    ]
    backordered, rejected, shipped, moved, expired = messages[1:]
    assert (backordered["eta"], backordered["queue_position"]) == ("2026-11-30T10:00:00Z", 1)
    assert (rejected["reason"], rejected["quantity"]) == ("backorder_limit", 1)
    assert (shipped["remaining_allocated"], shipped["shipment_id"]) == (0, "S-7")
    assert (moved["eta"], moved["previous_eta"], moved["quantity"]) == (
        "2026-12-01T10:00:00Z",
        "2026-11-30T10:00:00Z",
        1,
    )
    assert (expired["reason"], expired["quantity"]) == ("expired", 1)
