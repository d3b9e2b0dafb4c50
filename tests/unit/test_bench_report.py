"""bench/report.py renders the figures of docs/performance.md from a results document.

The document here is made up: this checks the renderer (what it shows, how it judges a
target, that it fills nothing in), never a figure of the service.
"""

from __future__ import annotations

from typing import Any

from bench.report import END, START, compare, render, rewrite


def flat_out(lines_per_s: float, lines: int = 200_000) -> dict[str, Any]:
    return {
        "lines": lines,
        "seconds": lines / lines_per_s,
        "lines_per_s": lines_per_s,
        "decisions_per_s": lines_per_s * 1.1,
        "lines_without_decision": 0,
        "duplicate_decisions": 0,
        "latency_ms": {"p50": 900, "p99": 1_800},
        "read_models": {
            "samples": 60,
            "sample_every_s": 0.5,
            "events_max": 1_200,
            "events_p50": 300,
            "seconds_max": 0.5,
            "seconds_p99": 0.5,
            "samples_whose_head_was_not_reached": 0,
            "caught_up_seconds_after_last_decision": 0.4,
        },
        "rss": {"service": {"command": "python3 fulfillment run", "peak_rss_mb_sampled": 90.5}},
    }


def results(*, quick: bool = False) -> dict[str, Any]:
    return {
        "date": "2026-12-01T10:00:00+00:00",
        "quick": quick,
        "total_seconds": 600.0,
        "kafka": "127.0.0.1:9092",
        "machine": {
            "cpu_count": 2,
            "cpu_model": "Made-up CPU",
            "platform": "Linux",
            "implementation": "CPython",
            "python": "3.11.7",
            "packages": {"pydantic": "2.14.4"},
            "git_commit": "abc1234",
            "git_dirty": False,
        },
        "results": {
            "service": {
                "ceiling": {"orders": 100_000, "lines": 200_000, "lines_per_s": 25_000.0},
                "postgres": {
                    "full": flat_out(6_000.0),
                    "paced": {
                        "rates": {
                            "1000": {
                                "latency_ms": {"p50": 8, "p90": 15, "p99": 30, "max": 41},
                                "lines_without_decision": 0,
                            }
                        }
                    },
                    "rebuild": {"log_events": 400_000, "seconds": 5.0, "events_per_s": 80_000.0},
                    "recovery": {"restart_to_first_decision_s": 1.4, "lines_without_decision": 0},
                    "scaleout": {"1": flat_out(3_000.0, 50_000), "2": {"error": "TimeoutError: x"}},
                },
                "sqlite": {
                    "full": flat_out(5_500.0),
                    "paced": {"error": "RuntimeError: the service exited"},
                },
                "ratios": {"full_over_ceiling_lines_per_s": {"postgres": 0.24, "sqlite": 0.22}},
            }
        },
    }


def row(text: str, starting: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {starting}"))


def test_each_target_shows_the_figure_of_each_store_with_met_or_not_met() -> None:
    text = render(results())

    throughput = row(text, "Throughput flat out")
    assert "6,000 lines/s over 200,000 lines · **met**" in throughput
    # SQLite must reach at least PostgreSQL's figure too: 5,500 < 6,000.
    assert "5,500 lines/s over 200,000 lines · **not met**" in throughput
    assert "8 / 30 ms · **not met**" in row(text, "Latency at 1,000")  # p99 30 > 25
    assert "0.24 (6,000 ÷ 25,000) · **not met**" in row(text, "Service ÷ aiokafka")
    assert "80,000 events/s (400,000 events) · **met**" in row(text, "Rebuild")
    assert "1.40 s; 0 lines without a decision · **met**" in row(text, "kill -9 under load")


def test_a_figure_that_was_not_measured_is_said_so_never_filled_in() -> None:
    text = render(results())

    latency = row(text, "Latency at 1,000")
    assert latency.endswith("| failed |")  # SQLite's paced phase failed
    assert "| not measured |" in row(text, "Rebuild")  # SQLite: no rebuild in the document
    assert "1 → 3,000, 2 → failed" in row(text, "Scale-out")
    assert "RuntimeError: the service exited" in text  # listed with the failed phases


def test_a_smoke_run_shows_its_figures_and_judges_no_target() -> None:
    text = render(results(quick=True))

    assert "6,000 lines/s over 200,000 lines · **not judged: --quick**" in text
    assert "**met**" not in text
    assert "**not met**" not in text


def test_the_figures_between_the_markers_are_replaced_and_the_prose_around_them_kept() -> None:
    page = f"# Performance\n\nHow it is measured.\n\n{START}\nold figures\n{END}\n\nNotes.\n"

    rewritten = rewrite(page, render(results()))

    assert rewritten.startswith("# Performance\n\nHow it is measured.\n\n" + START)
    assert rewritten.endswith(END + "\n\nNotes.\n")
    assert "old figures" not in rewritten
    assert "git abc1234" in rewritten
    assert rewritten.count(START) == rewritten.count(END) == 1


def test_a_comparison_shows_each_figure_before_and_after_with_its_change() -> None:
    before, after = results(), results()
    after["results"]["service"]["postgres"]["full"]["lines_per_s"] = 9_000.0

    text = compare(before, after)

    assert "| `postgres.full.lines_per_s` | 6,000 | 9,000 | +50 % |" in text
