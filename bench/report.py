"""Turns a results document of `python -m bench.run` into the figures of docs/performance.md.

    .venv/bin/python -m bench.report bench/results/<date>-<commit>.json
    .venv/bin/python -m bench.report AFTER.json --compare BEFORE.json   # prints, writes nothing

The first form rewrites what lies between `<!-- figures:start -->` and `<!-- figures:end -->`
in docs/performance.md (the rest of the document is prose, kept as written): the machine,
the commit and date, every figure of the `service` benchmark, the ratios, and the targets of
issue 10 beside them with met / not met. A figure that was not measured is said to be so;
nothing is filled in.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCUMENT = REPO / "docs" / "performance.md"
START = "<!-- figures:start -->"
END = "<!-- figures:end -->"
STORES = (("postgres", "PostgreSQL"), ("sqlite", "SQLite"))
TARGET_BACKLOG = 200_000
TARGET_RATE = 1_000.0
Figures = dict[str, Any]


def number(value: Any) -> str:
    """A figure as people read it: thousands separated; two decimals from 1 to 10, three
    significant digits below 1."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or (abs(value) >= 10 and value.is_integer()):
        return f"{int(value):,}"
    if abs(value) >= 1_000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def dig(found: Any, *path: str) -> Any:
    """found[path[0]][path[1]]...; None where any step is missing or not a mapping."""
    for step in path:
        if not isinstance(found, dict):
            return None
        found = found.get(step)
    return found


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


# --- the targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    figure: str  # as shown
    judgement: str  # met, not met, or why it cannot be judged

    def cell(self) -> str:
        return f"{self.figure} · **{self.judgement}**" if self.judgement else self.figure


def _failed(phase: Any) -> str | None:
    if phase is None:
        return "not measured"
    if isinstance(phase, dict) and "error" in phase:
        return "failed"
    if isinstance(phase, dict) and "skipped" in phase:
        return "skipped"
    return None


def _met(holds: bool) -> str:
    return "met" if holds else "not met"


def latency_verdict(service: Figures, store: str) -> Verdict:
    paced = dig(service, store, "paced")
    if _failed(paced):
        return Verdict(str(_failed(paced)), "")
    rates = dig(paced, "rates") or {}
    at = next((v for k, v in rates.items() if float(k) == TARGET_RATE), None)
    if at is None:
        offered = ", ".join(rates) or "none"
        return Verdict(f"no run at {number(TARGET_RATE)} lines/s (ran: {offered})", "")
    p50, p99 = dig(at, "latency_ms", "p50"), dig(at, "latency_ms", "p99")
    if p50 is None or p99 is None:
        return Verdict("no latency", "")
    complete = at.get("lines_without_decision") == 0
    return Verdict(
        f"{number(p50)} / {number(p99)} ms",
        _met(p50 <= 10 and p99 <= 25 and complete)
        + ("" if complete else " (lines without a decision)"),
    )


def throughput_verdict(service: Figures, store: str) -> Verdict:
    full = dig(service, store, "full")
    if _failed(full):
        return Verdict(str(_failed(full)), "")
    rate = dig(full, "lines_per_s")
    if rate is None:
        return Verdict(f"incomplete ({number(dig(full, 'lines_without_decision'))} undecided)", "")
    lines = dig(full, "lines") or 0
    shown = f"{number(rate)} lines/s over {number(lines)} lines"
    if lines < TARGET_BACKLOG:
        return Verdict(shown, f"not judged: backlog < {number(TARGET_BACKLOG)}")
    holds = rate >= 5_000
    if store == "sqlite":
        other = dig(service, "postgres", "full", "lines_per_s")
        holds = holds and (other is None or rate >= other)
    return Verdict(shown, _met(holds))


def ratio_verdict(service: Figures, store: str) -> Verdict:
    ratio = dig(service, "ratios", "full_over_ceiling_lines_per_s", store)
    if ratio is None:
        return Verdict("not measured", "")
    full = dig(service, store, "full", "lines_per_s")
    ceiling = dig(service, "ceiling", "lines_per_s")
    return Verdict(f"{number(ratio)} ({number(full)} ÷ {number(ceiling)})", _met(ratio >= 0.3))


def read_models_verdict(service: Figures, store: str) -> Verdict:
    lag = dig(service, store, "full", "read_models")
    if _failed(dig(service, store, "full")) or not lag or not lag.get("samples"):
        return Verdict("not measured", "")
    worst, never = lag.get("seconds_max"), lag.get("samples_whose_head_was_not_reached")
    shown = f"max {number(worst)} s behind (sampled every {number(lag.get('sample_every_s'))} s)"
    if worst is None:
        return Verdict(shown, "not met: the head was never reached")
    return Verdict(shown, _met(worst <= 1 and not never))


def rebuild_verdict(service: Figures, store: str) -> Verdict:
    rebuilt = dig(service, store, "rebuild")
    if _failed(rebuilt):
        return Verdict(str(_failed(rebuilt)), "")
    rate = dig(rebuilt, "events_per_s")
    if rate is None:
        return Verdict("not measured", "")
    return Verdict(
        f"{number(rate)} events/s ({number(dig(rebuilt, 'log_events'))} events)",
        _met(rate >= 50_000),
    )


def recovery_verdict(service: Figures, store: str) -> Verdict:
    recovered = dig(service, store, "recovery")
    if _failed(recovered):
        return Verdict(str(_failed(recovered)), "")
    seconds, missing = (
        dig(recovered, "restart_to_first_decision_s"),
        dig(recovered, "lines_without_decision"),
    )
    if seconds is None:
        return Verdict("no decision after the restart", "not met")
    return Verdict(
        f"{number(seconds)} s; {number(missing)} lines without a decision",
        _met(seconds <= 2 and missing == 0),
    )


TARGETS: list[tuple[str, str, Callable[[Figures, str], Verdict]]] = [
    (
        "Latency at 1,000 order lines/s offered (p50 / p99, input to first decision)",
        "p50 ≤ 10 ms and p99 ≤ 25 ms",
        latency_verdict,
    ),
    (
        "Throughput flat out, end to end",
        "≥ 5,000 lines/s (aim 10,000) over ≥ 200,000 lines; SQLite at least PostgreSQL's",
        throughput_verdict,
    ),
    ("Service ÷ aiokafka pass-through (lines/s, same run)", "≥ 0.3", ratio_verdict),
    ("Read models behind the allocation log, flat out", "≤ 1 s", read_models_verdict),
    ("Rebuild of every read model from zero", "≥ 50,000 log events/s", rebuild_verdict),
    (
        "kill -9 under load: restart command to first new decision",
        "≤ 2 s, every line decided",
        recovery_verdict,
    ),
]


# --- the rendering -------------------------------------------------------------------------


def render(document: Figures) -> str:
    """The figures section: machine and run, the targets, then every figure."""
    service = dig(document, "results", "service")
    lines = [
        START,
        "",
        "<!-- Rendered by `python -m bench.report`: edit bench/report.py, not this part. -->",
        "",
    ]
    lines += _run_facts(document)
    if not isinstance(service, dict):
        lines += ["", "This results document has no `service` benchmark.", "", END]
        return "\n".join(lines) + "\n"
    lines += ["", "### Targets of issue 10", ""]
    smoke = bool(document.get("quick"))
    rows = [
        [what, bound, *(_judged(judge(service, store), smoke) for store, _ in STORES)]
        for what, bound, judge in TARGETS
    ]
    scale = [
        f"{count} → {_failed(found) or number(dig(found, 'lines_per_s'))}"
        for count, found in (dig(service, "postgres", "scaleout") or {}).items()
    ]
    rows.append(
        [
            "Scale-out: allocation processes → lines/s",
            "figures (no bound)",
            ", ".join(str(s) for s in scale) or "not measured",
            "–",
        ]
    )
    lines += table(["target", "bound", "PostgreSQL", "SQLite"], rows)
    for section in (_ceiling, _flat_out, _paced, _recovery, _rebuild, _memory, _rss, _errors):
        lines += list(section(service))
    lines += ["", END]
    return "\n".join(lines) + "\n"


def _judged(verdict: Verdict, smoke: bool) -> str:
    """A smoke run's figures are shown, never judged against a target."""
    if smoke and verdict.judgement:
        return Verdict(verdict.figure, "not judged: --quick").cell()
    return verdict.cell()


def _run_facts(document: Figures) -> list[str]:
    machine = document.get("machine", {})
    packages = ", ".join(
        f"{name} {version}" for name, version in (machine.get("packages") or {}).items() if version
    )
    commit = str(machine.get("git_commit"))
    if machine.get("git_dirty"):
        commit += " plus uncommitted changes"
    options = dig(document, "results", "service", "options") or {}
    cpu = machine.get("cpu_model") or "model unknown"
    facts = [
        f"**Run**: {document.get('date')}, git {commit}, "
        f"{number(document.get('total_seconds'))} s in all.",
        f"**Machine**: {machine.get('cpu_count')} CPUs ({cpu}), "
        f"{number(machine.get('memory_gb'))} GB, {machine.get('platform')}, "
        f"{machine.get('implementation')} {machine.get('python')}; {packages}; "
        f"librdkafka {machine.get('librdkafka')}. Kafka at {document.get('kafka')}.",
    ]
    if options:
        rates = ", ".join(number(rate) for rate in options.get("rates", []))
        facts.append(
            f"**Sizes**: backlog {number(options.get('lines'))} lines over "
            f"{number(options.get('skus'))} SKUs ({options.get('hot_skus')} hot ones with "
            f"{number(100 * options.get('hot_share', 0))} % of the lines); paced {rates} lines/s "
            f"for {number(options.get('seconds'))} s each; one by one "
            f"{number(options.get('onebyone_lines'))} lines; scale-out "
            f"{number(options.get('scaleout_lines'))} lines; recovery "
            f"{number(options.get('recovery_rate'))} lines/s for "
            f"{number(options.get('recovery_seconds'))} s; memory at "
            + ", ".join(number(count) for count in options.get("memory_skus", []))
            + " SKUs."
        )
    if document.get("quick"):
        facts.append(
            "**A smoke run (`--quick`)**: tiny sizes. These figures show that the benchmark "
            "works; they are not the service's speed, and no target is judged on them."
        )
    return [fact + "  " for fact in facts[:-1]] + facts[-1:]


def _ceiling(service: Figures) -> Iterator[str]:
    found = service.get("ceiling")
    yield from ["", "### Ceiling: aiokafka consume → json → produce, same broker", ""]
    if _failed(found):
        yield f"{_failed(found)}: {dig(found, 'error') or ''}"
        return
    yield from table(
        ["orders", "lines", "seconds", "orders/s", "lines/s"],
        [
            [
                number(dig(found, k))
                for k in ("orders", "lines", "seconds", "orders_per_s", "lines_per_s")
            ]
        ],
    )


def _runs(service: Figures) -> Iterator[tuple[str, str, Figures]]:
    """Every flat-out run: (what, store, its figures)."""
    for store, label in STORES:
        for phase, what in (
            ("full", "full: `fulfillment run`"),
            ("onebyone", "one by one: BATCH_MAX_RECORDS=1"),
            ("stages", "stages: five processes"),
        ):
            found = dig(service, store, phase)
            if found is not None:
                yield what, label, found
        for count, found in (dig(service, store, "scaleout") or {}).items():
            plural = "" if count == "1" else "es"
            yield f"scale-out: {count} allocation process{plural}", label, found


def _flat_out(service: Figures) -> Iterator[str]:
    yield from [
        "",
        "### Flat out: a backlog published at once",
        "",
        "Lines/s: lines ÷ (first decision of the last line − first order record). Latency is "
        "mostly queueing behind the backlog. Read models: how far they were behind the log "
        "while it ran, in events and in seconds, and when they caught up after the last "
        "decision.",
        "",
    ]
    rows = []
    for what, store, found in _runs(service):
        if _failed(found):
            rows.append([what, store, _failed(found), *["–"] * 9])
            continue
        lag = found.get("read_models", {})
        latency = found.get("latency_ms", {})
        rows.append(
            [
                what,
                store,
                number(found.get("lines")),
                number(found.get("seconds")),
                number(found.get("lines_per_s")),
                number(found.get("decisions_per_s")),
                f"{number(latency.get('p50'))} / {number(latency.get('p99'))}",
                f"{number(lag.get('events_max'))} / {number(lag.get('events_p50'))}",
                f"{number(lag.get('seconds_max'))} / {number(lag.get('seconds_p99'))}",
                number(lag.get("caught_up_seconds_after_last_decision")),
                number(found.get("lines_without_decision")),
                number(found.get("duplicate_decisions")),
            ]
        )
    yield from table(
        [
            "run",
            "store",
            "lines",
            "s",
            "lines/s",
            "decisions/s",
            "latency p50 / p99 ms",
            "read models behind, events max / p50",
            "s max / p99",
            "caught up s after",
            "undecided",
            "duplicate decisions",
        ],
        rows,
    )


def _paced(service: Figures) -> Iterator[str]:
    yield from ["", "### Paced: orders offered evenly, latency to each line's first decision", ""]
    rows = []
    for store, label in STORES:
        paced = dig(service, store, "paced")
        if _failed(paced):
            if paced is not None:
                rows.append([label, _failed(paced), *["–"] * 7])
            continue
        for rate, found in (paced.get("rates") or {}).items():
            latency = found.get("latency_ms", {})
            rows.append(
                [
                    label,
                    number(float(rate)),
                    number(found.get("published_lines_per_s")),
                    number(found.get("decided_lines_per_s")),
                    *(number(latency.get(k)) for k in ("p50", "p90", "p99", "max")),
                    number(found.get("lines_without_decision")),
                ]
            )
    yield from table(
        [
            "store",
            "offered lines/s",
            "published lines/s",
            "decided lines/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "undecided",
        ],
        rows,
    )


def _recovery(service: Figures) -> Iterator[str]:
    yield from ["", "### Recovery: kill -9 of the whole service under paced load", ""]
    keys = (
        "offered_lines_per_s",
        "lines",
        "killed_after_seconds_of_load",
        "down_seconds",
        "restart_to_ready_s",
        "restart_to_first_decision_s",
        "lines_without_decision",
        "duplicate_decisions",
    )
    rows = []
    for store, label in STORES:
        found = dig(service, store, "recovery")
        if found is not None:
            cells = [number(found.get(k)) for k in keys] if not _failed(found) else [_failed(found)]
            rows.append([label, *cells, *["–"] * (len(keys) - len(cells))])
    yield from table(
        [
            "store",
            "offered lines/s",
            "lines",
            "killed after s",
            "down s",
            "restart → ready s",
            "restart → first decision s",
            "undecided",
            "duplicate decisions",
        ],
        rows,
    )


def _rebuild(service: Figures) -> Iterator[str]:
    yield from [
        "",
        "### Rebuild: `fulfillment projections rebuild all` after the full run",
        "",
        "Timed from outside, the command's start included; `projections status` on the "
        "same store shows what starting a command costs.",
        "",
    ]
    keys = ("log_events", "seconds", "events_per_s", "cli_startup_seconds")
    rows = []
    for store, label in STORES:
        found = dig(service, store, "rebuild")
        if found is not None:
            cells = [number(found.get(k)) for k in keys] if not _failed(found) else [_failed(found)]
            rows.append([label, *cells, *["–"] * (len(keys) - len(cells))])
    yield from table(["store", "log events", "seconds", "events/s", "CLI start s"], rows)


def _memory(service: Figures) -> Iterator[str]:
    yield from [
        "",
        "### Memory: RSS of each process, every SKU with an open backorder",
        "",
        "MB; each step adds SKUs to the same service. Peak sampled: every 0.5 s during the "
        "step; kernel peak: VmHWM, over the process's life so far.",
        "",
    ]
    rows = []
    for store, label in STORES:
        memory = dig(service, store, "memory")
        if _failed(memory):
            if memory is not None:
                rows.append([label, _failed(memory), *["–"] * 5])
            continue
        for skus, found in memory.items():
            decided = found.get("rss_mb_when_decided") or {}
            caught = found.get("rss_mb_when_read_models_caught_up") or {}
            peaks = found.get("peak_rss_mb_sampled_during") or {}
            kernel = found.get("peak_rss_mb_kernel_so_far") or {}
            for process in sorted(set(decided) | set(peaks)):
                rows.append(
                    [
                        label,
                        number(int(skus)),
                        f"`{process}`",
                        number(decided.get(process)),
                        number(caught.get(process)),
                        number(peaks.get(process)),
                        number(kernel.get(process)),
                    ]
                )
    yield from table(
        [
            "store",
            "SKUs",
            "process",
            "when decided",
            "read models caught up",
            "peak sampled",
            "kernel peak",
        ],
        rows,
    )


def _rss(service: Figures) -> Iterator[str]:
    yield from ["", "### Peak RSS of each process in the flat-out runs", "", "MB.", ""]
    rows = []
    for what, store, found in _runs(service):
        for process, figures in (dig(found, "rss") or {}).items():
            rows.append(
                [
                    what,
                    store,
                    f"`{process}`",
                    f"`{figures.get('command', '')}`",
                    number(figures.get("peak_rss_mb_sampled")),
                    number(figures.get("peak_rss_mb_kernel")),
                ]
            )
    yield from table(["run", "store", "process", "command", "peak sampled", "kernel peak"], rows)


def _errors(service: Figures) -> Iterator[str]:
    failures = [
        (path, value) for path, value in _leaves(service) if path.endswith((".error", "then_error"))
    ]
    if failures:
        yield from ["", "### Phases that failed", ""]
        yield from table(["where", "error"], [[p, str(v).replace("|", "\\|")] for p, v in failures])


# --- the document and the comparison -------------------------------------------------------


def rewrite(text: str, figures: str) -> str:
    """`text` with what lies between the markers (markers included) replaced by `figures`;
    `figures` appended when the markers are missing."""
    start, end = text.find(START), text.find(END)
    if not text.strip():
        return figures
    if start == -1 or end == -1 or end < start:
        return text.rstrip("\n") + "\n\n" + figures
    return text[:start] + figures.rstrip("\n") + text[end + len(END) :]


def _leaves(found: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(found, dict):
        for key, value in found.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(found, list):
        return
    else:
        yield path, found


def compare(before: Figures, after: Figures) -> str:
    """A before/after table of every numeric figure of the `service` benchmark."""
    old = {
        p: v
        for p, v in _leaves(dig(before, "results", "service") or {})
        if not p.startswith("options")
    }
    new = {
        p: v
        for p, v in _leaves(dig(after, "results", "service") or {})
        if not p.startswith("options")
    }
    rows = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
        if not numeric and not any(isinstance(v, int | float) for v in (a, b)):
            continue
        change = f"{(b - a) / a * 100:+.0f} %" if numeric and a else ""
        rows.append([f"`{path}`", number(a), number(b), change])
    commits = [f"{dig(d, 'machine', 'git_commit')} ({dig(d, 'date')})" for d in (before, after)]
    return (
        "\n".join(
            table(["figure", f"before: {commits[0]}", f"after: {commits[1]}", "change"], rows)
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results", type=Path, help="a results document of python -m bench.run")
    parser.add_argument(
        "--compare", type=Path, help="an earlier results document: print before/after"
    )
    parser.add_argument(
        "--document", type=Path, default=DOCUMENT, help="default docs/performance.md"
    )
    args = parser.parse_args(argv)
    after = json.loads(args.results.read_text())
    if args.compare is not None:
        sys.stdout.write(compare(json.loads(args.compare.read_text()), after))
        return
    text = args.document.read_text() if args.document.exists() else ""
    args.document.write_text(rewrite(text, render(after)))
    print(f"rewrote the figures in {args.document}", file=sys.stderr)


if __name__ == "__main__":
    main()
