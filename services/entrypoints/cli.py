"""`fulfillment`: run the service, play the demo, and operate it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import TaskID
from rich.table import Table

from services.adapters.logs import configure
from services.adapters.settings import Settings

if TYPE_CHECKING:  # imported where used: the CLI starts fast and connects to nothing at import
    from services.allocation.application import Allocation
    from services.operations.explain import ExplainedDecision, LineExplanation, ServedAhead
    from services.operations.inspection import SkuAsOf

app = typer.Typer(
    help="Event-sourced fulfillment: allocation and backorders per SKU, over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as error:  # pydantic's message names the bad variable
        console.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(2) from None
    configure(settings.log_level, settings.log_format)
    return settings


@app.command()
def run(
    stage: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only this stage in this process (repeatable): intake, intake-relay, "
            "allocation, allocation-relay, relay (both relays), projections, api, clock."
        ),
    ] = None,
    one_process: Annotated[
        bool,
        typer.Option(
            "--one-process",
            help="Every stage in this one process (one core), instead of a process per part.",
        ),
    ] = False,
) -> None:
    """Run the service: every stage, in three processes (intake, allocation, read models and
    API) that share one store; or the stages named, in this process."""
    from services.adapters.kafka import ConfigurationError
    from services.entrypoints.runner import ALIASES, STAGES, serve
    from services.entrypoints.supervisor import supervise

    settings = _settings()
    unknown = set(stage or ()) - set(STAGES) - set(ALIASES)
    if unknown:
        choices = (*STAGES, *ALIASES)
        console.print(f"[red]unknown stage(s) {sorted(unknown)}[/red]; choose from {choices}")
        raise typer.Exit(2)
    try:
        if stage or one_process:
            asyncio.run(serve(settings, stage or list(STAGES)))
        else:
            code = supervise(settings)
            if code:
                raise typer.Exit(code)
    except ConfigurationError as error:
        console.print(f"[red]cannot start:[/red] {error}")
        raise typer.Exit(1) from None


@app.command()
def demo(
    run_id: Annotated[str | None, typer.Option(help="Suffix for the demo's ids.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    api_url: Annotated[
        str | None, typer.Option(help="The service's HTTP API (default: localhost, HTTP_PORT).")
    ] = None,
) -> None:
    """Publish the demo scenario to a running service, show its decisions as they arrive,
    then the SKU's queue and demand history from the HTTP API."""
    from services.operations.demo import Observer, play, read_back

    settings = _settings()
    table = Table(title="allocation-decisions", show_lines=False)
    for column in ("decision", "sku", "order", "line", "qty", "detail"):
        table.add_column(column)

    def on_step(step: object) -> None:
        if not as_json:
            console.print(f"[bold cyan]→[/bold cyan] {getattr(step, 'story', '')}")

    def on_decision(body: dict[str, Any]) -> None:
        detail = _decision_detail(body)
        if not as_json:
            console.print(
                f"   [green]{body['type']}[/green] {body['order_id']} line {body['line_id']} "
                f"({body['sku']}): {body['quantity']}{', ' if detail else ''}{detail}",
                soft_wrap=True,
            )
        table.add_row(
            str(body["type"]),
            str(body["sku"]),
            str(body["order_id"]),
            str(body["line_id"]),
            str(body["quantity"]),
            detail,
        )

    def on_dead_letter(body: dict[str, object]) -> None:
        if not as_json:
            console.print(f"   [red]dead-lettered[/red]: {body['error']}", soft_wrap=True)

    try:
        plan, decisions, dead_letters = asyncio.run(
            play(settings, run_id, observer=Observer(on_step, on_decision, on_dead_letter))
        )
    except TimeoutError:
        console.print(
            "[red]no answer in time[/red]: is `fulfillment run` running against "
            f"{settings.kafka_bootstrap_servers}?"
        )
        raise typer.Exit(1) from None
    url = api_url or f"http://127.0.0.1:{settings.http_port}"
    try:
        views = asyncio.run(read_back(settings, plan, url))
    except Exception as error:
        console.print(f"[red]could not read the API at {url}[/red]: {error}")
        raise typer.Exit(1) from None
    if as_json:
        result = {
            "run_id": plan.run_id,
            "sku": plan.sku,
            "limited_sku": plan.limited_sku,
            "decisions": decisions,
            "dead_letters": dead_letters,
            **views,
        }
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    console.print(table)
    _print_views(views)


def _when(moment: object) -> str:
    """A business time as people read it (UTC, to the minute); None: no date."""
    if not isinstance(moment, str):
        return "none"
    return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M")


def _decision_detail(body: dict[str, Any]) -> str:
    """What a decision says besides its quantity: where the line queued and when it is
    promised, what is still owed, why it ended, which shipment took it."""
    kind = body["type"]
    if kind == "LineBackordered":
        return f"queue position {body['queue_position']}, eta {_when(body.get('eta'))}"
    if kind == "BackorderFilled":
        return f"{body['remaining_backordered']} still owed"
    if kind == "BackorderCancelled":
        return f"reason {body.get('reason', 'cancelled')}"
    if kind == "LineRejected":
        return f"reason {body['reason']}"
    if kind == "LineShipped":
        return f"shipment {body['shipment_id']}, {body['remaining_allocated']} still to ship"
    if kind == "BackorderEtaChanged":
        return f"eta {_when(body['previous_eta'])} → {_when(body['eta'])}"
    return ""


def _print_views(views: dict[str, Any]) -> None:
    position = views["position"]
    extra = "".join(
        f", {name.replace('_', ' ')} {position[name]}"
        for name in ("on_hand", "shipped", "inbound")
        if name in position
    )
    console.print(
        f"\n[bold]{position['sku']}[/bold] from the API: available {position['available']}, "
        f"allocated {position['allocated']}, backordered {position['backordered']}, "
        f"{position['open_backorders']} open backorder(s){extra}"
    )
    policy = position.get("policy")
    if policy:
        limit = "" if policy["limit"] is None else f" up to {policy['limit']} units"
        wait = policy["max_wait_days"]
        console.print(
            f"policy: backorders {policy['backorders']}{limit}, "
            + ("no maximum wait" if wait is None else f"a backorder waits {wait} days at most")
        )
    queue = Table(title="backorder queue (GET /skus/{sku}/backorders)")
    for column in ("position", "order", "customer", "priority", "owed", "placed at", "eta"):
        queue.add_column(column)
    for row in views["queue"]:
        queue.add_row(
            str(row["position"]),
            row["order_id"],
            row["customer_id"],
            str(row["priority"]),
            str(row["quantity"]),
            _when(row["placed_at"]),
            _when(row.get("eta")),
        )
    console.print(queue)
    # One column per week, one row per counter: the counters outnumber the demo's weeks.
    demand = Table(title="demand history (GET /skus/{sku}/demand?bucket=week)")
    demand.add_column("units")
    for bucket in views["demand"]:
        demand.add_column(f"week of {bucket['bucket_start']}", justify="right")
    counters = (
        [name for name in views["demand"][0] if name != "bucket_start"] if views["demand"] else []
    )
    for counter in counters:
        demand.add_row(counter, *(str(bucket[counter]) for bucket in views["demand"]))
    console.print(demand)


def _at(moment: datetime | None) -> str:
    """A time from a SKU's state as people read it (UTC, to the minute); None: no date."""
    return "none" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


@app.command()
def sku(
    sku: Annotated[str, typer.Argument(help="The SKU.")],
    history: Annotated[bool, typer.Option(help="Also show every event of the SKU.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="TIME|POSITION",
            help="The SKU as it was, rebuilt from its events: at POSITION of the allocation "
            "log (an integer: a decision's source-position, X-Projection-Position), or at "
            "TIME (RFC 3339 with its offset, e.g. 2026-11-25T10:00:00Z): when the service "
            "recorded the events, not business time. Queue ages are as of that moment.",
        ),
    ] = None,
) -> None:
    """Show a SKU's stock, policy and expected supply, its backorder queue in fill order with
    promised dates, and (--history) its events; now, or (--as-of) as it was."""
    from services.entrypoints.bootstrap import build_allocation
    from services.operations.inspection import as_json as to_json
    from services.operations.inspection import describe, sku_history, sku_view

    settings = _settings()
    allocation = build_allocation(settings)
    then = _sku_as_of(allocation, sku, as_of, settings.backorders_allowed) if as_of else None
    view = then.view if then else sku_view(allocation, sku, settings.backorders_allowed)
    if view is None:
        console.print(
            f"[red]unknown SKU {sku!r}[/red]: no policy, inbound, receipt or order has named it"
        )
        raise typer.Exit(1)
    up_to = then.version if then else None
    events = [describe(e) for e in sku_history(allocation, sku, up_to)] if history else []
    if as_json:
        extra: dict[str, Any] = {}
        if then:
            aged = [{**line, "age_seconds": then.age_seconds(line)} for line in view.queue]
            extra = {"as_of": _as_of_fields(then), "queue": aged}
        print(to_json({**vars(view), **extra, "history": events}))
        return
    if then:
        console.print(f"[bold]as of {_as_of_words(then)}[/bold]")
    console.print(
        f"[bold]{view.sku}[/bold]: received {view.received}, shipped {view.shipped}, "
        f"on hand {view.on_hand}, available {view.available}, allocated {view.allocated}, "
        f"backordered {view.backordered} ({len(view.queue)} open backorders), "
        f"inbound {view.inbound}"
    )
    policy = view.policy
    limit = f", limit {policy['limit']} units" if policy["backorders"] == "limit" else ""
    wait = policy["max_wait_days"]
    console.print(
        f"policy: backorders {policy['backorders']}{limit}, "
        f"{'no wait limit' if wait is None else f'max wait {wait} days'}"
        f"{'' if view.policy_set else ' (the default: no policy set for this SKU)'}"
    )
    inbounds = Table(title="open inbounds, in the order they cover the queue")
    for column in ("inbound", "expected units", "expected at"):
        inbounds.add_column(column)
    for inbound in view.inbounds:
        inbounds.add_row(
            inbound["inbound_id"], str(inbound["quantity"]), _at(inbound["expected_at"])
        )
    console.print(inbounds)
    queue = Table(title="backorder queue, in fill order")
    columns = ("position", "order", "line", "customer", "priority", "owed", "placed at", "eta")
    for column in columns if not then else (*columns, "age then"):
        queue.add_column(column)
    for position, line in enumerate(view.queue, start=1):
        age = [_duration(then.age_seconds(line))] if then else []
        queue.add_row(
            str(position),
            line["order_id"],
            line["line_id"],
            line["customer_id"],
            str(line["priority"]),
            str(line["backordered"]),
            _at(line["placed_at"]),
            _at(line["eta"]),
            *age,
        )
    console.print(queue)
    if history:
        _print_history(events)


def _sku_as_of(
    allocation: Allocation, sku: str, as_of: str, backorders_allowed: bool
) -> SkuAsOf | None:
    """The SKU at `--as-of`, or exits: 2 for a moment no answer can have, 1 before the SKU."""
    from services.operations.inspection import AsOfError, NotYetError, parse_as_of, sku_view_as_of

    try:
        moment = parse_as_of(as_of)
        return sku_view_as_of(allocation, sku, moment, backorders_allowed)
    except NotYetError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    except (AsOfError, ValueError) as error:
        console.print(f"[red]--as-of:[/red] {error}")
        raise typer.Exit(2) from None


def _as_of_fields(then: SkuAsOf) -> dict[str, Any]:
    return {
        "position": then.position,
        "time": then.time,
        "recorded_by": then.moment,
        "sku_version": then.version,
    }


def _as_of_words(then: SkuAsOf) -> str:
    asked = f"position {then.position}" if then.time is None else then.time.isoformat()
    return (
        f"{asked} (recorded by {then.moment.isoformat()}; the SKU at version {then.version}, "
        "rebuilt from its events)"
    )


def _duration(seconds: int) -> str:
    """An age as people read it: days, hours and minutes."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    return f"{days}d {hours}h {rest // 60}m" if days else f"{hours}h {rest // 60}m"


@app.command()
def order(
    order_id: Annotated[str, typer.Argument(help="The order id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show an order's lines (allocated, backordered, shipped, ... and promised dates) and
    its history: what intake recorded, then every decision on its lines."""
    from services.entrypoints.bootstrap import build_allocation, build_intake
    from services.operations.inspection import as_json as to_json
    from services.operations.inspection import order_history, order_lines

    settings = _settings()
    intake, allocation = build_intake(settings), build_allocation(settings)
    events = order_history(intake, allocation, order_id)
    if not events:
        console.print(f"[red]unknown order {order_id!r}[/red]")
        raise typer.Exit(1)
    if as_json:
        print(to_json(events))
        return
    lines = Table(title=f"order {order_id}: its lines now")
    counters = ("ordered", "allocated", "backordered", "shipped", "cancelled", "rejected")
    for column in ("line", "sku", *counters, "eta"):
        lines.add_column(column)
    for line in order_lines(events):
        lines.add_row(
            line["line_id"],
            line["sku"],
            *(str(line[counter]) for counter in counters),
            _at(line["eta"]),
        )
    console.print(lines)
    _print_history(events)


@app.command()
def explain(
    order_id: Annotated[str, typer.Argument(help="The order id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Explain an order: for each line, its decisions in order, each with the input that
    caused it (kind, event id, business time); and every receipt or release that filled
    someone else while the line waited: who was served, and the queue rule that put them
    ahead (priority, order time, arrival)."""
    import dataclasses

    from services.entrypoints.bootstrap import build_allocation, build_intake
    from services.operations.explain import explain_placed_order
    from services.operations.inspection import as_json as to_json

    settings = _settings()
    intake, allocation = build_intake(settings), build_allocation(settings)
    explained = explain_placed_order(intake, allocation, order_id)
    if explained is None:
        console.print(f"[red]unknown order {order_id!r}[/red]: intake never placed it")
        raise typer.Exit(1)
    if as_json:
        print(to_json(dataclasses.asdict(explained)))
        return
    for line in explained.lines:
        _print_explained_line(line)


def _print_explained_line(line: LineExplanation) -> None:
    if line.ordered is None:
        console.print(f"\n[bold]line {line.line_id}[/bold] ({line.sku}): not placed at its SKU yet")
        return
    queued = "" if line.arrival is None else f", queued at arrival {line.arrival}"
    console.print(
        f"\n[bold]line {line.line_id}[/bold] ({line.sku}): ordered {line.ordered}, "
        f"priority {line.priority}, order time {_at(line.placed_at)}{queued}"
    )
    decisions = Table(title=f"line {line.line_id}: its decisions, in order")
    for column in ("#", "decision", "units", "detail", "caused by", "event id", "business time"):
        # An event id is folded when narrow, never cut: it is what one searches the logs for.
        decisions.add_column(column, overflow="fold" if column == "event id" else "ellipsis")
    for number, decision in enumerate(line.decisions, start=1):
        decisions.add_row(
            str(number),
            decision.decision,
            str(decision.quantity),
            _explained_detail(decision),
            decision.cause.input,
            str(decision.cause.event_id),
            _at(decision.cause.occurred_at),
        )
    console.print(decisions)
    if not line.served_ahead:
        console.print("nobody else was served while it waited")
        return
    console.print(f"line {line.line_id}: who was served while it waited, and why first")
    for record in line.served_ahead:
        cause = record.cause
        console.print(
            f"  {cause.input} {cause.event_id} at {_at(cause.occurred_at)}, {_supply(record)}: "
            f"the line waited for {record.waiting}, "
            f"got {record.line_got}",
            soft_wrap=True,
        )
        served = Table(show_edge=False, pad_edge=False)
        for column in ("served", "units", "ahead by", "priority", "order time", "arrival"):
            served.add_column(column)
        for other in record.served:
            served.add_row(
                f"{other.order_id} line {other.line_id}",
                str(other.units),
                other.ahead_by,
                str(other.priority),
                _at(other.placed_at),
                str(other.arrival),
            )
        console.print(served)


def _explained_detail(decision: ExplainedDecision) -> str:
    details = []
    if decision.queue_position is not None:
        details.append(f"queue position {decision.queue_position}")
    if decision.previous_eta is not None or decision.decision == "BackorderEtaChanged":
        details.append(f"eta {_at(decision.previous_eta)} → {_at(decision.eta)}")
    elif decision.eta is not None:
        details.append(f"eta {_at(decision.eta)}")
    if decision.remaining is not None:
        details.append(f"{decision.remaining} remaining")
    if decision.reason:
        details.append(f"reason {decision.reason}")
    if decision.shipment_id:
        details.append(f"shipment {decision.shipment_id}")
    return ", ".join(details)


def _supply(record: ServedAhead) -> str:
    """What the input made available: a receipt, or the units a cancellation released."""
    if record.receipt_id is not None:
        return f"receipt {record.receipt_id}: {record.received} units"
    return ", ".join(
        f"released by {x.order_id} line {x.line_id}: {x.units} units" for x in record.released
    )


def _print_history(events: list[dict[str, object]]) -> None:
    table = Table(title="history, oldest first")
    for column in ("event", "business time", "details"):
        table.add_column(column)
    hidden = {"event", "recorded_at", "occurred_at", "originator_version"}
    for event in events:
        details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in hidden)
        table.add_row(str(event["event"]), str(event.get("occurred_at", "")), details)
    console.print(table)


@app.command()
def replay(  # noqa: PLR0917 - typer options, by name on the command line
    what_if: Annotated[
        bool,
        typer.Option(
            "--what-if",
            help="Re-derive under other policies (--default-policy, --policies) and report "
            "what would have changed per SKU and order, instead of comparing.",
        ),
    ] = False,
    default_policy: Annotated[
        str | None,
        typer.Option(
            help="What-if: the policy of every SKU without one of its own, e.g. `deny`, "
            "`allow`, `limit:20`, `limit:20,max_wait_days=14`.",
        ),
    ] = None,
    policies: Annotated[
        Path | None,
        typer.Option(
            help="What-if: a JSON or YAML file mapping SKUs to {backorders, limit, "
            "max_wait_days}, imposed from their first input on (their own policy inputs "
            "ignored).",
        ),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            help="What-if: also write its decisions and line accounts to this new SQLite file."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="What-if: write the whole report (JSON) here.")
    ] = None,
    top: Annotated[int, typer.Option(help="What-if: SKUs and orders listed.")] = 15,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Processes, each over a share of the SKUs (default: one a usable core)."
        ),
    ] = None,
) -> None:
    """Re-derive every decision from intake's recorded inputs (in memory: the live stores are
    only read) and compare with the live ones; exits 1 if any SKU's decisions differ (ids
    included). With --what-if: under other policies, and say what would have changed."""
    from projections.store import ReadStore
    from services.entrypoints.bootstrap import build_allocation, build_intake
    from services.operations.replay import MemoryAllocation, compare_job, in_shares, merged
    from services.operations.runs import record_run
    from services.operations.what_if import load_policies, parse_policy, what_if_in_shares

    if not what_if and (default_policy or policies or save or report):
        raise typer.BadParameter(
            "--default-policy, --policies, --save and --report go with --what-if"
        )
    try:
        engine = MemoryAllocation(
            default_policy=parse_policy(default_policy) if default_policy else None,
            policies=load_policies(policies) if policies else {},
        )
    except (ValueError, OSError) as error:
        raise typer.BadParameter(str(error)) from error
    if save is not None and save.exists():
        raise typer.BadParameter(f"{save} exists: --save writes a new file")
    settings = _settings()

    def stores() -> tuple[Any, Any]:  # each worker opens its own
        return build_intake(settings), build_allocation(settings)

    processes = workers or len(os.sched_getaffinity(0))
    request = {
        "default_policy": default_policy,
        "policies": None if policies is None else str(policies),
        "workers": processes,
    }
    # Recorded where GET /admin/replay shows it, with its progress and outcome.
    with (
        record_run(
            ReadStore(settings.database_url), "what-if" if what_if else "replay", request
        ) as run,
        _replay_progress(engine) as advance,
    ):

        def progress(done: int, total: int) -> None:
            advance(done, total)
            run.progress(done, total)

        if what_if:
            found = what_if_in_shares(stores, engine, processes, progress, scratch=save)
            run.result = found.as_dict()["totals"]
        else:
            compared = merged(in_shares(stores, engine, compare_job, processes, progress))
            run.result = {
                "identical": compared.identical,
                "commands": compared.commands,
                "skus_that_differ": len(compared.mismatched_skus),
            }
    if what_if:
        _print_what_if(found, top)
        if report is not None:
            report.write_text(json.dumps(found.as_dict(), indent=2))
            console.print(f"report: {report}")
        if save is not None:
            console.print(f"decisions and line accounts: {save} (SQLite)")
        return
    console.print(
        f"commands {compared.commands}, decisions live {compared.live}, "
        f"re-derived {compared.rederived}, SKUs that differ {len(compared.mismatched_skus)}"
    )
    if not compared.identical:
        console.print(f"[red]differ:[/red] {', '.join(compared.mismatched_skus[:20])}")
        raise typer.Exit(1)
    console.print("[green]identical[/green]: the recorded inputs give the same decisions")


@contextlib.contextmanager
def _replay_progress(engine: Any) -> Iterator[Callable[[int, int], None]]:
    """A bar over intake's log, with the commands applied a second and the time left."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("re-deriving"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[rate]:>8,.0f} commands/s"),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("replay", total=None, rate=0.0)

        def advance(done: int, total: int) -> None:
            rate = engine.commands / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=total, rate=rate)

        yield advance


def _print_what_if(found: Any, top: int) -> None:
    totals = found.totals
    console.print(
        f"commands {found.commands}; lines {totals.lines}, changed {totals.lines_changed} "
        f"(filled sooner {totals.filled_sooner}, later or no longer {totals.filled_later})"
    )
    columns = ("allocated", "backordered", "rejected", "filled", "expired", "cancelled")
    for title, everyone in (("all", [totals]), ("SKUs", found.skus), ("orders", found.orders)):
        rows = everyone[:top]
        if not rows:
            continue
        shown = "" if title == "all" else f" (the {len(rows)} most changed of {len(everyone)})"
        table = Table(title=f"what-if − live: {title}{shown}")
        table.add_column("name")
        for column in ("lines changed", *columns, "sooner", "later"):
            table.add_column(column, justify="right")
        for row in rows:
            table.add_row(
                row.name,
                str(row.lines_changed),
                *(f"{getattr(row, c):+d}" for c in columns),
                str(row.filled_sooner),
                str(row.filled_later),
            )
        console.print(table)


@app.command()
def restore(
    from_kafka: Annotated[
        bool,
        typer.Option(
            "--from-kafka",
            help="Rebuild the stores from the topics (the only source there is).",
        ),
    ] = False,
) -> None:
    """Rebuild intake's store from the input topics, then allocation and the read models,
    into the empty store DATABASE_URL names: for when the database is lost and Kafka kept its
    topics (from their first message: see docs/operations.md, "A lost database"). Stop the
    service first. Exits 1 if a decision on the topic was not re-derived."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from projections.store import ReadStore
    from services.entrypoints.bootstrap import build_allocation, build_intake, build_read_models
    from services.operations.restore import RestoreRefusedError
    from services.operations.restore import restore as run_restore
    from services.operations.runs import record_run

    if not from_kafka:
        raise typer.BadParameter("say where from: --from-kafka (the only source there is)")
    settings = _settings()
    intake, allocation = build_intake(settings), build_allocation(settings)
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.completed:>9,}/{task.total:<9,}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        try:
            with record_run(ReadStore(settings.database_url), "restore", exclusive=True) as run:

                def progress(phase: str, done: int, total: int) -> None:
                    advance(phase, done, total)
                    run.progress(done, total)

                found = run_restore(
                    settings,
                    intake,
                    allocation,
                    lambda: build_read_models(settings, allocation),
                    progress=progress,
                )
                run.result = {k: v for k, v in vars(found).items() if k != "notes"}
        except RestoreRefusedError as error:
            console.print(f"[red]refused:[/red] {error}")
            raise typer.Exit(2) from error
    console.print(
        f"inputs {found.inputs} (placed by {found.ordered_by}: {found.anchored} exactly), "
        f"intake notifications {found.recorded}, sku-commands messages {found.sku_messages} "
        f"over {found.sku_partitions} partitions, decisions {found.decisions} "
        f"({found.decisions_on_topic} already on the topic, "
        f"{found.decisions_missing_from_topic} to publish), read models at "
        f"{found.read_model_position}"
    )
    for note in found.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if found.decisions_not_rederived:
        console.print(
            f"[red]{found.decisions_not_rederived} decisions on the topic were not re-derived"
            "[/red]: the inputs did not replay as the lost stores took them (see the notes)"
        )
        raise typer.Exit(1)
    console.print("[green]restored[/green]: start the service; it goes on from the topics")


projections = typer.Typer(help="The read models: status and rebuild.", no_args_is_help=True)
app.add_typer(projections, name="projections")


@projections.command("status")
def projections_status() -> None:
    """Each read model's generation, position and lag behind the allocation log."""
    from services.entrypoints.bootstrap import build_allocation, build_read_models

    settings = _settings()
    models = build_read_models(settings, build_allocation(settings))
    head = models.head()
    table = Table(title=f"read models (allocation log at {head})")
    for column in ("read model", "generation", "position", "lag"):
        table.add_column(column)
    for name, live in sorted(models.live().items()):
        table.add_row(name, str(live.generation), str(live.position), str(head - live.position))
    console.print(table)


@projections.command("rebuild")
def projections_rebuild(
    name: Annotated[
        str | None,
        typer.Argument(
            help="backorder_queue, sku_positions, demand_daily, order_lines (or queue, "
            "positions, demand, orders); none (or all): every read model, in one pass."
        ),
    ] = None,
) -> None:
    """Rebuild read models from position zero into fresh tables while the live ones keep
    serving, then swap them in atomically: all of them in one pass over the log, or the
    one named."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from projections.catalog import ALIASES, NAMES
    from services.entrypoints.bootstrap import build_allocation, build_read_models

    every = name is None or name == "all"
    chosen = None if name is None else ALIASES.get(name, name)
    if not every and chosen not in NAMES:
        console.print(f"[red]unknown read model {name!r}[/red]; choose from {', '.join(NAMES)}")
        raise typer.Exit(2)
    settings = _settings()
    models = build_read_models(settings, build_allocation(settings))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} events/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    what = "every read model" if every else str(chosen)
    with Progress(*columns, console=console) as progress:
        task: TaskID = progress.add_task(
            f"rebuilding {what}", total=models.head() or None, rate="-"
        )

        def advance(done: int, total: int) -> None:
            elapsed = progress.tasks[task].elapsed or 0
            rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
            progress.update(task, completed=done, total=total, rate=rate)

        if every:
            rebuilt = models.rebuild_all(advance)
        else:
            assert chosen is not None
            rebuilt = {chosen: models.rebuild(chosen, advance)}
        progress.update(task, description=f"rebuilt {what}")
    for each, live in rebuilt.items():
        console.print(f"{each}: generation {live.generation}, position {live.position}")


dlq = typer.Typer(help="The dead-letter topic: list it, re-drive from it.", no_args_is_help=True)
app.add_typer(dlq, name="dlq")


@dlq.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="Show at most this many, newest last.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List dead letters: where each came from and why it was not applied."""
    from services.operations.dead_letters import list_letters

    settings = _settings()
    letters = asyncio.run(list_letters(settings))[-limit:]
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "partition": x.partition,
                        "offset": x.offset,
                        **x.letter.model_dump(mode="json"),
                    }
                    for x in letters
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"{settings.topics.dead_letters}: {len(letters)} shown")
    for column in ("dlq offset", "from", "key", "error", "failed at"):
        table.add_column(column)
    for x in letters:
        source = f"{x.letter.source_topic}:{x.letter.partition}:{x.letter.offset}"
        table.add_row(
            f"{x.partition}:{x.offset}",
            source,
            x.letter.key or "",
            x.letter.error,
            x.letter.failed_at.isoformat(),
        )
    console.print(table)


@dlq.command("redrive")
def dlq_redrive(
    offset: Annotated[
        list[str] | None, typer.Option(help="PARTITION:OFFSET of a dead letter (repeatable).")
    ] = None,
    source_topic: Annotated[str | None, typer.Option(help="Only letters from this topic.")] = None,
    error_contains: Annotated[
        str | None, typer.Option(help="Only letters whose error has this.")
    ] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Every letter that matches.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Show what would be re-driven.")] = False,
) -> None:
    """Re-publish dead letters to their source topics, once their cause is fixed.

    Safe to repeat: intake ignores what it already applied."""
    from services.operations.dead_letters import Letter, redrive

    if not (offset or source_topic or error_contains or all_letters):
        console.print("say which letters: --offset P:O, --source-topic, --error-contains or --all")
        raise typer.Exit(2)
    wanted = set(offset or [])

    def select(letter: Letter) -> bool:
        return (
            (not wanted or f"{letter.partition}:{letter.offset}" in wanted)
            and (source_topic is None or letter.letter.source_topic == source_topic)
            and (error_contains is None or error_contains in letter.letter.error)
        )

    settings = _settings()
    done = asyncio.run(redrive(settings, select=select, dry_run=dry_run))
    verb = "would re-drive" if dry_run else "re-drove"
    console.print(f"{verb} {len(done.sent)} dead letter(s)")
    for letter in done.sent:
        where = f"{letter.partition}:{letter.offset} → {letter.letter.source_topic}"
        console.print(f"  {where}: {letter.letter.error}")
    if done.kept:
        console.print(f"kept {len(done.kept)} letter(s) that re-driving cannot mend:")
        for letter in done.kept:
            where = f"{letter.partition}:{letter.offset} ({letter.letter.source_topic})"
            console.print(f"  {where}: {letter.why}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
