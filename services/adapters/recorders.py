"""Process recorders that record several tracking rows in the events' transaction.

A consumer fetch brings batches from several partitions; saving them in one transaction
(one commit, one table lock on PostgreSQL) instead of one per partition is the cheapest
way to throughput. eventsourcing's process recorders take one `tracking` per insert; these
subclasses also take `more_tracking` (the other partitions' positions) and insert each in
the same transaction, with the library's own forward-only upsert. `application_env` names
them (PROCESS_RECORDER_TOPIC), so every store the service opens records this way; an
application given several positions for a recorder without `records_many_trackings`
refuses them rather than drop all but one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from psycopg.sql import SQL, Identifier


class SQLiteManyTrackingRecorder(SQLiteProcessRecorder):
    records_many_trackings = True

    def _insert_events(
        self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        more: Sequence[Tracking] = kwargs.get("more_tracking", ())
        for tracking in more:
            self._insert_tracking(c, tracking)
        return returning


class PostgresManyTrackingRecorder(PostgresProcessRecorder):
    """Also inserts events as four arrays (ids, versions, topics, states) rather than one
    array of a composite type: psycopg dumps scalar arrays in C, in binary, while it dumps a
    composite in Python, escaping text with a regex; that dump was a fifth of a batch's
    time (`make bench`, allocation_store on PostgreSQL, profiled)."""

    records_many_trackings = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.insert_arrays_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::integer[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_arrays_statement,
            (
                [event.originator_id for event in stored_events],
                [event.originator_version for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
        )

    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        more: Sequence[Tracking] = kwargs.get("more_tracking", ())
        for tracking in more:
            self._insert_tracking(curs, tracking=tracking)


SQLITE_RECORDER_TOPIC = f"{__name__}:{SQLiteManyTrackingRecorder.__name__}"
POSTGRES_RECORDER_TOPIC = f"{__name__}:{PostgresManyTrackingRecorder.__name__}"
