"""Intake's own query of eventsourcing's tables, and stores written by older versions, on
both real stores."""

from __future__ import annotations

from datetime import UTC, datetime

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresAggregateRecorder
from psycopg.sql import SQL, Identifier

from services.adapters.settings import Settings
from services.entrypoints.bootstrap import build_intake
from services.intake.application import Input, existing
from services.intake.domain import order_aggregate_id
from services.kernel.dead_letters import (
    RefusedInput,
    Source,
    dead_letter_message,
    refused_input_id,
)
from services.operations.replay import events_of
from tests.harness import T0
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


def test_a_store_written_before_refusals_moved_to_the_kernel_still_reads(database_url: str) -> None:
    """Refusals were intake's `DeadLetter` (services.intake.domain) until the layout moved them;
    eventsourcing resolves stored events by class path, so old stores name the old one."""
    intake = build_intake(Settings(database_url=database_url))
    source = Source(
        topic="orders", partition=0, offset=7, key="O-1", payload="{", payload_encoding="utf-8"
    )
    intake.record_inputs(
        [Input(source, error="value is not JSON")], Tracking("orders-0", 7), failed_at=T0
    )
    _rename_stored_topics(
        intake.recorder,
        {
            "services.kernel.dead_letters:RefusedInput.Recorded": (
                "services.intake.domain:DeadLetter.Recorded"
            )
        },
    )
    del intake

    reopened = build_intake(Settings(database_url=database_url))
    refusal: RefusedInput = reopened.repository.get(refused_input_id("orders", 0, 7))
    [(_, event)] = list(events_of(reopened))

    assert isinstance(refusal, RefusedInput)
    assert (refusal.error, refusal.source) == ("value is not JSON", source)
    assert dead_letter_message(event) is not None


def _rename_stored_topics(recorder: object, renames: dict[str, str]) -> None:
    """Writes topics as an older version of the service did (there is no API for it)."""
    table = recorder.events_table_name  # type: ignore[attr-defined]
    datastore = recorder.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=True) as cursor:
        for new, old in renames.items():
            if isinstance(recorder, PostgresAggregateRecorder):
                statement = SQL("UPDATE {schema}.{table} SET topic = %s WHERE topic = %s").format(
                    schema=Identifier(datastore.schema), table=Identifier(table)
                )
                cursor.execute(statement, (old, new))
                cursor.execute(
                    SQL("SELECT count(*) AS n FROM {schema}.{table} WHERE topic = %s").format(
                        schema=Identifier(datastore.schema), table=Identifier(table)
                    ),
                    (old,),
                )
                renamed = cursor.fetchone()["n"]
            else:
                cursor.execute(f"UPDATE {table} SET topic = ? WHERE topic = ?", (old, new))
                cursor.execute(f"SELECT count(*) FROM {table} WHERE topic = ?", (old,))
                renamed = cursor.fetchone()[0]
            assert renamed == 1, f"no stored event of {new}"
