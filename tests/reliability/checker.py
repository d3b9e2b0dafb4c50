"""The checker: every input accounted for exactly once, and the outputs equal a reference.

The reference is intake's recorded input history applied in one uninterrupted pass to a
fresh allocation store and fresh read models (publication order across topics is not
deterministic, so the recorded order is the reference, not the publication order).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.kafka import source_position
from services.adapters.settings import Settings
from services.allocation.application import Allocation
from services.allocation.domain import Sku
from services.entrypoints.bootstrap import build_allocation, build_intake, build_read_models
from services.intake.domain import Order, Receipt
from services.kernel.dead_letters import RefusedInput
from services.operations.replay import decisions_of, events_of, rederive

READ_MODELS = ("backorder_queue", "sku_positions", "demand_daily", "order_lines")


@dataclass
class Report:
    scenario: str
    inputs: int = 0
    faults: int = 0
    lost: int = 0
    duplicated: int = 0
    inversions: int = 0
    mismatches: int = 0
    violations: int = 0
    decisions: int = 0
    dead_letters: int = 0
    resent: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.inversions or self.mismatches or self.violations
        )

    def line(self) -> str:
        return (
            f"{self.scenario}: inputs {self.inputs}, faults {self.faults}, lost {self.lost}, "
            f"duplicated {self.duplicated}, inversions {self.inversions}, "
            f"mismatches {self.mismatches}, invariant violations {self.violations} "
            f"(decisions {self.decisions}, dead letters {self.dead_letters}, "
            f"transport resends {self.resent})"
        )

    def flag(self, kind: str, detail: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.details) < 30:
            self.details.append(f"{kind}: {detail}")


async def read_all(settings: Settings, topics: list[str]) -> list[ConsumerRecord]:
    """Every record on the topics, up to their end offsets now."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(partitions)
        wanted = [tp for tp in partitions if ends[tp] > 0]
        records: list[ConsumerRecord] = []
        if not wanted:
            return records
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        # Done when every partition's position reaches its end offset (robust to offsets
        # that hold no record); bounded, so a stuck fetch fails instead of hanging.
        async with asyncio.timeout(180):
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for tp, part in batch.items():
                    records.extend(record for record in part if record.offset < ends[tp])
                positions = [await consumer.position(tp) for tp in wanted]
                if all(p >= ends[tp] for p, tp in zip(positions, wanted, strict=True)):
                    break
        return records
    finally:
        await consumer.stop()


def _event_id(value: bytes | None) -> str:
    try:
        body = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(body.get("event_id")) if isinstance(body, dict) else ""


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return parsed.astimezone(UTC).isoformat() if parsed.tzinfo else value
    if isinstance(value, int | float) or hasattr(value, "as_integer_ratio"):
        return int(value)
    return value


def table_rows(store: ReadStore, name: str) -> list[tuple[Any, ...]]:
    rows = store.read(f"SELECT * FROM {name}")
    return sorted(tuple(_normal(v) for _, v in sorted(row.items())) for row in rows)


async def check(settings: Settings, scenario: str, faults: int, work: Path) -> Report:
    report = Report(scenario, faults=faults)
    topics = settings.topics
    inputs = await read_all(settings, topics.inputs())
    dead = await read_all(settings, [topics.dead_letters])
    decided = await read_all(settings, [topics.decisions])
    report.inputs = len(inputs)
    intake = build_intake(settings)
    live = build_allocation(settings)
    _account(report, intake, inputs, dead)
    _check_topic(report, decided)
    _against_reference(report, settings, intake, live, decided=decided, work=work)
    return report


def _account(
    report: Report, intake: Any, inputs: list[ConsumerRecord], dead: list[ConsumerRecord]
) -> None:
    """Every input recorded by intake or dead-lettered, exactly once."""
    recorded: Counter[str] = Counter()
    dead_lettered: Counter[tuple[str, int, int]] = Counter()
    for _, event in events_of(intake):
        if isinstance(event, Order.CancellationArrivedFirst | Order.CancellationHeld):
            recorded[event.cancellation["event_id"]] += 1
        elif isinstance(event, RefusedInput.Recorded):
            source = event.source
            dead_lettered[(source["topic"], source["partition"], source["offset"])] += 1
        elif isinstance(
            event,
            Order.Placed
            | Order.PlacedAfterCancellation
            | Order.CancellationAccepted
            | Receipt.Recorded,
        ):
            recorded[event.event_id] += 1
    for event_id, times in recorded.items():
        if times > 1:
            report.flag("duplicated", f"event {event_id} recorded {times} times by intake")
    for coordinates, times in dead_lettered.items():
        if times > 1:
            report.flag("duplicated", f"{coordinates} dead-lettered {times} times")
    on_topic: Counter[tuple[str, int, int]] = Counter()
    for record in dead:
        body = json.loads(record.value)
        on_topic[(body["source_topic"], body["partition"], body["offset"])] += 1
    report.dead_letters = len(on_topic)
    report.resent += sum(times - 1 for times in on_topic.values())
    for coordinates in dead_lettered.keys() - on_topic.keys():
        report.flag("lost", f"dead letter {coordinates} never reached the DLQ topic")
    for record in inputs:
        place = (record.topic, record.partition, record.offset)
        if place not in dead_lettered and _event_id(record.value) not in recorded:
            report.flag("lost", f"input {place} neither recorded nor dead-lettered")


def _check_topic(report: Report, decided: list[ConsumerRecord]) -> None:
    """No decision id with two contents; per partition, positions only increase."""
    first: dict[str, dict[str, Any]] = {}
    per_partition: dict[int, list[int]] = defaultdict(list)
    for record in sorted(decided, key=lambda r: (r.partition, r.offset)):
        body = json.loads(record.value)
        known = first.get(body["decision_id"])
        if known is not None:
            report.resent += 1
            if known != body:
                report.flag("duplicated", f"decision {body['decision_id']} differs on resend")
            continue
        first[body["decision_id"]] = body
        per_partition[record.partition].append(_position_of(record))
    for partition, positions in per_partition.items():
        for before, after in itertools.pairwise(positions):
            if after <= before:
                report.flag("inversions", f"partition {partition}: {after} after {before}")
    report.decisions = len(first)


def _against_reference(
    report: Report,
    settings: Settings,
    intake: Any,
    live: Allocation,
    *,
    decided: list[ConsumerRecord],
    work: Path,
) -> None:
    reference = Allocation(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    rederive(intake, reference)
    expected = _per_sku([d.model_dump(mode="json") for d in decisions_of(reference)])
    stored = _per_sku([d.model_dump(mode="json") for d in decisions_of(live)])
    ordered = sorted(((_position_of(r), json.loads(r.value)) for r in decided), key=lambda x: x[0])
    published = _per_sku([body for _, body in ordered], dedupe=True)
    for name, actual in (("store", stored), ("topic", published)):
        for sku in sorted(expected.keys() | actual.keys()):
            if expected.get(sku) != actual.get(sku):
                report.flag(
                    "mismatches",
                    f"{name} decisions of {sku}: {len(actual.get(sku, []))} vs reference "
                    f"{len(expected.get(sku, []))}",
                )
    reference_models = ReadModels(ReadStore(f"sqlite:///{work}/reference"), reference)
    while reference_models.catch_up(2000, stream=False):
        pass
    live_models = build_read_models(settings, live)
    for name in READ_MODELS:
        if table_rows(live_models.store, name) != table_rows(reference_models.store, name):
            report.flag("mismatches", f"read model {name} differs from the reference")
    live_models.store.close()
    reference_models.store.close()
    for sku in sorted(expected.keys() | stored.keys()):
        aggregate = live.find_sku(sku)
        if aggregate is not None:
            _invariants(report, aggregate)


def _invariants(report: Report, sku: Sku) -> None:
    if sku.available < 0 or sku.available + sku.allocated != sku.received:
        report.flag("violations", f"{sku.sku}: available {sku.available}, received {sku.received}")
    if sku.queue and sku.available:
        report.flag("violations", f"{sku.sku}: stock available while the queue waits")
    for line in sku.lines.values():
        parts = (line["allocated"], line["backordered"], line["cancelled"], line["rejected"])
        if min(parts) < 0 or sum(parts) != line["ordered"]:
            report.flag("violations", f"{sku.sku} {line['order_id']}/{line['line_id']}: {parts}")


def _per_sku(decisions: list[dict[str, Any]], *, dedupe: bool = False) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    seen: set[str] = set()
    for body in decisions:
        if dedupe:
            if body["decision_id"] in seen:
                continue
            seen.add(body["decision_id"])
        normal = {k: _normal(v) if k == "occurred_at" else v for k, v in body.items()}
        grouped[body["sku"]].append(normal)
    return dict(grouped)


def _position_of(record: ConsumerRecord) -> int:
    found = source_position(record)
    return -1 if found is None else found
