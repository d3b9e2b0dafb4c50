"""The checker: every input accounted for exactly once, and the outputs equal a reference.

Accounted for: recorded by intake or dead-lettered, once; each line of a recorded shipment
shipped or refused as an over-shipment, once. Conservation (version 2) and the promised
dates are added up from the decisions on the topic and held against the allocation store.
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
from services.allocation.domain import Sku, line_key
from services.allocation.translate import decision_message
from services.entrypoints.bootstrap import build_allocation, build_intake, build_read_models
from services.intake.domain import InboundSupply, Order, Receipt, Shipment, SkuPolicy, Tick
from services.kernel.dead_letters import RefusedInput
from services.operations.replay import events_of, rederive

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
    # Sorted by their text: columns may hold None beside values (an eta not known yet).
    return sorted((tuple(_normal(v) for _, v in sorted(row.items())) for row in rows), key=repr)


async def check(settings: Settings, scenario: str, faults: int, work: Path) -> Report:
    report = Report(scenario, faults=faults)
    topics = settings.topics
    inputs = await read_all(settings, topics.inputs())
    dead = await read_all(settings, [topics.dead_letters])
    decided = await read_all(settings, [topics.decisions])
    report.inputs = len(inputs)
    intake = build_intake(settings)
    live = build_allocation(settings)
    history = _History.of(intake)
    over_shipped = _account(report, history, inputs, dead)
    published = _check_topic(report, decided)
    stored = _AllocationLog.of(live)
    _check_shipments(report, history, published, over_shipped, stored)
    _check_conservation(report, history, published, live)
    _check_etas(report, published, live)
    _against_reference(report, settings, intake, live, stored, published=published, work=work)
    return report


ShipmentLine = tuple[str, str, str]  # shipment_id, order_id, line_id


@dataclass
class _History:
    """What intake recorded, in one pass over its log: the inputs it took (by event id),
    the messages it refused, and the quantities the checks start from."""

    recorded: Counter[str] = field(default_factory=Counter)
    refused: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    # (sku, order_id, line_id) -> (ordered, cancelled before placement)
    placed: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)  # per SKU
    shipment_lines: dict[ShipmentLine, tuple[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, intake: Any) -> _History:
        history = cls()
        for _, event in events_of(intake):
            history.take(event)
        return history

    def take(self, event: Any) -> None:
        if isinstance(event, Order.CancellationArrivedFirst | Order.CancellationHeld):
            self.recorded[event.cancellation["event_id"]] += 1
        elif isinstance(event, RefusedInput.Recorded):
            source = event.source
            self.refused[(source["topic"], source["partition"], source["offset"])] += 1
        elif isinstance(event, Order.Placed | Order.PlacedAfterCancellation):
            self.recorded[event.event_id] += 1
            for line in event.lines:
                key = (line["sku"], event.order_id, line["line_id"])
                self.placed[key] = (line["quantity"], line["cancelled_before_placement"])
        elif isinstance(event, Receipt.Recorded):
            self.recorded[event.event_id] += 1
            self.received[event.sku] += event.quantity
        elif isinstance(event, Shipment.Dispatched):
            self.recorded[event.event_id] += 1
            for shipped in event.lines:
                key = (event.shipment_id, event.order_id, shipped["line_id"])
                self.shipment_lines[key] = (shipped["sku"], shipped["quantity"])
        elif isinstance(
            event,
            Order.CancellationAccepted | SkuPolicy.Set | InboundSupply.Expected | Tick.Recorded,
        ):
            self.recorded[event.event_id] += 1


@dataclass
class _AllocationLog:
    """The allocation store's decisions and refused shipment lines, in log order."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, allocation: Allocation) -> _AllocationLog:
        log = cls()
        for _, event in events_of(allocation):
            decision = decision_message(event)
            if decision is not None:
                log.decisions.append(decision.model_dump(mode="json"))
            elif isinstance(event, Sku.ShipmentLineRefused):
                log.refusals.append(
                    {
                        "sku": event.sku,
                        "causation_id": str(event.causation_id),
                        "shipment_id": event.shipment_id,
                        "order_id": event.order_id,
                        "line_id": event.line_id,
                        "quantity": event.quantity,
                        "allocated": event.allocated,
                    }
                )
        return log


def _account(
    report: Report, history: _History, inputs: list[ConsumerRecord], dead: list[ConsumerRecord]
) -> Counter[ShipmentLine]:
    """Every input recorded by intake or dead-lettered, exactly once. Returns the shipment
    lines the DLQ topic says over-shipped (letters of the allocation stage, one per line,
    at the shipment's coordinates), counted once however often a relay resent them."""
    for event_id, times in history.recorded.items():
        if times > 1:
            report.flag("duplicated", f"event {event_id} recorded {times} times by intake")
    for coordinates, times in history.refused.items():
        if times > 1:
            report.flag("duplicated", f"{coordinates} dead-lettered {times} times")
    on_topic: Counter[tuple[tuple[str, int, int], str | None]] = Counter()
    over_shipped: Counter[ShipmentLine] = Counter()
    for record in dead:
        body = json.loads(record.value)
        coordinates = (body["source_topic"], body["partition"], body["offset"])
        line: str | None = None
        if body["error"].startswith("over_shipment:"):
            refused = json.loads(body["payload"])  # the refused line, as a shipment of its own
            line = refused["lines"][0]["line_id"]
            if not on_topic[coordinates, line]:
                over_shipped[refused["shipment_id"], refused["order_id"], line] += 1
        on_topic[coordinates, line] += 1
    report.dead_letters = len(on_topic)
    report.resent += sum(times - 1 for times in on_topic.values())
    for coordinates in history.refused.keys() - {c for c, line in on_topic if line is None}:
        report.flag("lost", f"dead letter {coordinates} never reached the DLQ topic")
    for record in inputs:
        place = (record.topic, record.partition, record.offset)
        if place not in history.refused and _event_id(record.value) not in history.recorded:
            report.flag("lost", f"input {place} neither recorded nor dead-lettered")
    return over_shipped


def _check_topic(report: Report, decided: list[ConsumerRecord]) -> list[dict[str, Any]]:
    """No decision id with two contents; per partition, positions only increase. Returns
    the decisions once each, in the order the allocation store took them."""
    first: dict[str, dict[str, Any]] = {}
    per_partition: dict[int, list[int]] = defaultdict(list)
    positioned: list[tuple[int, dict[str, Any]]] = []
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
        positioned.append((_position_of(record), body))
    for partition, positions in per_partition.items():
        for before, after in itertools.pairwise(positions):
            if after <= before:
                report.flag("inversions", f"partition {partition}: {after} after {before}")
    report.decisions = len(first)
    return [body for _, body in sorted(positioned, key=lambda pair: pair[0])]


def _check_shipments(
    report: Report,
    history: _History,
    published: list[dict[str, Any]],
    over_shipped: Counter[ShipmentLine],
    stored: _AllocationLog,
) -> None:
    """Each line of each recorded shipment is either shipped (one LineShipped of its
    quantity) or refused as an over-shipment (once in the store, its letter on the DLQ
    topic): never both, never twice, never neither."""
    shipped: dict[ShipmentLine, list[int]] = defaultdict(list)
    for body in published:
        if body["type"] == "LineShipped":
            key = (body["shipment_id"], body["order_id"], body["line_id"])
            shipped[key].append(body["quantity"])
    refused = Counter(
        (refusal["shipment_id"], refusal["order_id"], refusal["line_id"])
        for refusal in stored.refusals
    )
    for key, (sku, quantity) in history.shipment_lines.items():
        decided, letters, refusals = shipped.get(key, []), over_shipped[key], refused[key]
        where = f"shipment {key[0]} order {key[1]} line {key[2]} (SKU {sku})"
        if len(decided) > 1 or refusals > 1:
            report.flag("duplicated", f"{where}: shipped {decided}, refused {refusals} times")
        elif decided and (refusals or letters):
            report.flag("duplicated", f"{where}: both shipped and refused as an over-shipment")
        elif not decided and not refusals:
            report.flag("lost", f"{where}: neither shipped nor refused")
        elif refusals and not letters:
            report.flag("lost", f"{where}: refused, but its over_shipment letter never came")
        elif decided and decided[0] != quantity:
            report.flag("mismatches", f"{where}: shipped {decided[0]}, not {quantity}")
    for key in (
        shipped.keys() | over_shipped.keys() | refused.keys()
    ) - history.shipment_lines.keys():
        report.flag("mismatches", f"shipment line {key} that intake never recorded")


def _check_conservation(
    report: Report, history: _History, published: list[dict[str, Any]], live: Allocation
) -> None:
    """Conservation version 2 from the decisions on the topic, checked against the store:
    per line allocated + backordered + shipped + cancelled + rejected = ordered, nothing
    ever negative; per SKU available + allocated = received - shipped, and the store's
    counters and open lines equal what the decisions add up to."""
    lines: dict[tuple[str, str, str], dict[str, int]] = {
        key: {
            "ordered": ordered,
            "allocated": 0,
            "backordered": 0,
            "shipped": 0,
            "cancelled": cancelled,
            "rejected": 0,
        }
        for key, (ordered, cancelled) in history.placed.items()
    }
    for body in published:
        key = (body["sku"], body["order_id"], body["line_id"])
        line = lines.get(key)
        if line is None:
            report.flag("violations", f"{body['type']} for a line intake never placed: {key}")
            continue
        for part, change in _MOVES.get(body["type"], {}).items():
            line[part] += change * body["quantity"]
        if min(line.values()) < 0:
            report.flag("violations", f"{key} negative after {body['decision_id']}: {line}")
    per_sku: dict[str, Counter[str]] = defaultdict(Counter)
    for (sku, order_id, line_id), line in lines.items():
        parts = sum(line[part] for part in _PARTS)
        if parts != line["ordered"]:
            report.flag("violations", f"{sku} {order_id}/{line_id}: {line} does not add up")
        per_sku[sku].update({part: line[part] for part in _PARTS})
    for sku in sorted(per_sku.keys() | history.received.keys()):
        _against_store(
            report,
            sku,
            live.find_sku(sku),
            received=history.received[sku],
            totals=per_sku[sku],
            lines=lines,
        )


_PARTS = ("allocated", "backordered", "shipped", "cancelled", "rejected")
# What each decision moves on its line, per unit of its quantity.
_MOVES: dict[str, dict[str, int]] = {
    "LineAllocated": {"allocated": 1},
    "LineBackordered": {"backordered": 1},
    "LineRejected": {"rejected": 1},
    "BackorderFilled": {"backordered": -1, "allocated": 1},
    "AllocationReleased": {"allocated": -1, "cancelled": 1},
    "BackorderCancelled": {"backordered": -1, "cancelled": 1},
    "LineShipped": {"allocated": -1, "shipped": 1},
}


def _against_store(
    report: Report,
    sku: str,
    aggregate: Sku | None,
    *,
    received: int,
    totals: Counter[str],
    lines: dict[tuple[str, str, str], dict[str, int]],
) -> None:
    if aggregate is None:
        if received or totals["allocated"] or totals["backordered"]:
            report.flag("violations", f"{sku}: no aggregate, but decisions and receipts")
        return
    expected = {
        "received": received,
        "shipped": totals["shipped"],
        "allocated": totals["allocated"],
        "backordered": totals["backordered"],
    }
    found = {name: getattr(aggregate, name) for name in expected}
    if found != expected:
        report.flag("violations", f"{sku}: store {found}, decisions and receipts {expected}")
    if aggregate.available < 0 or (
        aggregate.available + totals["allocated"] != received - totals["shipped"]
    ):
        report.flag(
            "violations",
            f"{sku}: available {aggregate.available} + allocated {totals['allocated']} != "
            f"received {received} - shipped {totals['shipped']}",
        )
    if aggregate.queue and aggregate.available:
        report.flag("violations", f"{sku}: stock available while the queue waits")
    open_lines = {
        line_key(order_id, line_id): line
        for (name, order_id, line_id), line in lines.items()
        if name == sku and (line["allocated"] or line["backordered"])
    }
    held = aggregate.lines
    for key in open_lines.keys() - held.keys():
        report.flag("violations", f"{sku}: open line {key!r} forgotten by the store")
    for key in held.keys() - open_lines.keys():
        report.flag("violations", f"{sku}: the store keeps line {key!r}, settled or unknown")
    for key in open_lines.keys() & held.keys():
        view = held[key]
        stored = {
            "ordered": view["ordered"],
            "allocated": view["allocated"],
            "backordered": view["backordered"],
            "shipped": view["shipped"],
            "cancelled": view["cancelled"],
            "rejected": view["rejected"],
        }
        if stored != open_lines[key]:
            report.flag("violations", f"{sku} {key!r}: store {stored}, decisions {open_lines[key]}")


def _check_etas(report: Report, published: list[dict[str, Any]], live: Allocation) -> None:
    """Every BackorderEtaChanged's previous_eta is the eta last stated for its line (in its
    LineBackordered or an earlier BackorderEtaChanged); the last one stated for each queued
    line is the one the store holds."""
    stated: dict[tuple[str, str, str], Any] = {}
    for body in published:
        key = (body["sku"], body["order_id"], body["line_id"])
        if body["type"] == "LineBackordered":
            stated[key] = _normal(body.get("eta"))
        elif body["type"] == "BackorderEtaChanged":
            if key not in stated:
                report.flag("violations", f"{key}: eta changed, but it was never backordered")
            elif _normal(body["previous_eta"]) != stated[key]:
                report.flag(
                    "violations",
                    f"{key}: previous_eta {body['previous_eta']} but {stated[key]} was stated "
                    f"({body['decision_id']})",
                )
            stated[key] = _normal(body["eta"])
    for sku in sorted({sku for sku, _, _ in stated}):
        aggregate = live.find_sku(sku)
        for line in [] if aggregate is None else aggregate.queued_lines():
            key = (sku, line["order_id"], line["line_id"])
            if stated.get(key) != _normal(line["eta"]):
                report.flag(
                    "violations", f"{key}: store eta {line['eta']}, last stated {stated.get(key)}"
                )


def _against_reference(
    report: Report,
    settings: Settings,
    intake: Any,
    live: Allocation,
    stored: _AllocationLog,
    *,
    published: list[dict[str, Any]],
    work: Path,
) -> None:
    """Intake's log replayed into a scratch store (rederive: every input kind, ticks
    included) must give the same decisions, ids included, the same refused shipment lines,
    and the same read models, as the live service."""
    reference = Allocation(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    rederive(intake, reference)
    replayed = _AllocationLog.of(reference)
    expected = _per_sku(replayed.decisions)
    for name, actual in (
        ("store", _per_sku(stored.decisions)),
        ("topic", _per_sku(published)),
    ):
        for sku in sorted(expected.keys() | actual.keys()):
            if expected.get(sku) != actual.get(sku):
                report.flag(
                    "mismatches",
                    f"{name} decisions of {sku}: {len(actual.get(sku, []))} vs reference "
                    f"{len(expected.get(sku, []))}{_first_difference(expected, actual, sku)}",
                )
    refused, replayed_refused = _per_sku(stored.refusals), _per_sku(replayed.refusals)
    for sku in sorted(refused.keys() | replayed_refused.keys()):
        if refused.get(sku) != replayed_refused.get(sku):
            report.flag("mismatches", f"refused shipment lines of {sku} differ from the reference")
    reference_models = ReadModels(ReadStore(f"sqlite:///{work}/reference"), reference)
    while reference_models.catch_up(2000, stream=False):
        pass
    live_models = build_read_models(settings, live)
    for name in READ_MODELS:
        if table_rows(live_models.store, name) != table_rows(reference_models.store, name):
            report.flag("mismatches", f"read model {name} differs from the reference")
    live_models.store.close()
    reference_models.store.close()


def _first_difference(
    expected: dict[str, list[Any]], actual: dict[str, list[Any]], sku: str
) -> str:
    for index, (want, got) in enumerate(
        itertools.zip_longest(expected.get(sku, []), actual.get(sku, []))
    ):
        if want != got:
            return f"; first difference at {index}: reference {want}, got {got}"
    return ""


def _per_sku(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for body in items:
        grouped[body["sku"]].append({k: _normal(v) if k in _TIMES else v for k, v in body.items()})
    return dict(grouped)


_TIMES = ("occurred_at", "eta", "previous_eta")


def _position_of(record: ConsumerRecord) -> int:
    found = source_position(record)
    return -1 if found is None else found
