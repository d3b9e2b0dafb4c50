"""The one query intake makes to eventsourcing's tables itself, on both real stores."""

from __future__ import annotations

from datetime import UTC, datetime

from eventsourcing.persistence import Tracking

from services.bootstrap import build_intake
from services.intake.application import Input, existing
from services.intake.domain import Source, order_aggregate_id
from services.settings import Settings
from tests.unit.stories import cause_id, order_placed


def test_existing_names_exactly_the_aggregates_that_have_events(database_url: str) -> None:
    intake = build_intake(Settings(database_url=database_url))
    source = Source(
        topic="orders", partition=0, offset=0, key="O-1", payload="{}", payload_encoding="utf-8"
    )
    placed = order_placed("O-1", [("1", "S", 1)], event_id=cause_id(1))
    intake.record_inputs(
        [Input(source, event=placed)], Tracking("orders-0", 0), failed_at=datetime.now(UTC)
    )
    known, unknown = order_aggregate_id("O-1"), order_aggregate_id("O-2")

    assert existing(intake.recorder, [known, unknown]) == {known}
    assert existing(intake.recorder, []) == set()
