"""Monitoring as code (deploy/monitoring/), checked without Prometheus: every alert rule and
dashboard query is valid PromQL (parsed by promql-parser, which also checks functions and
argument types), names only metrics the service exports with labels they have, and the
files have the structure Prometheus and Grafana load. promtool itself (`make
monitoring-check`) takes ~10 minutes to build, too long for every CI run: see tools.sh.

Also the supervisor's metrics folder: emptied of a previous run's files at start."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from services.adapters import metrics
from services.entrypoints.supervisor import metrics_folder

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
ALERTS = yaml.safe_load((MONITORING / "alerts.yml").read_text())
RULES: list[dict[str, Any]] = [rule for group in ALERTS["groups"] for rule in group["rules"]]
DASHBOARD: dict[str, Any] = json.loads((MONITORING / "grafana-dashboard.json").read_text())
RULE_TESTS = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
PROMETHEUS = yaml.safe_load((MONITORING / "prometheus.yml").read_text())

# Labels Prometheus adds to every scraped series (job, instance) or our scrape configs do.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod"})
# Series Prometheus makes itself, with the labels they carry.
SCRAPE_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")


def exported() -> dict[str, frozenset[str]]:
    """Every series name the service exports (services/adapters/metrics.py), with its labels:
    a counter's `_total`, a histogram's `_bucket` (with `le`), `_sum` and `_count`."""
    found: dict[str, frozenset[str]] = dict(SCRAPE_SERIES)
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, labels = metric._name, frozenset(metric._labelnames)
        if isinstance(metric, Counter):
            found[f"{name}_total"] = labels
        elif isinstance(metric, Histogram):
            found[f"{name}_bucket"] = labels | {"le"}
            found[f"{name}_sum"] = found[f"{name}_count"] = labels
        elif isinstance(metric, Gauge):
            found[name] = labels
        else:
            raise AssertionError(f"a kind of metric this check does not know: {metric!r}")
    return found


def selectors(expression: str) -> list[tuple[str, set[str]]]:
    """Each series an expression selects: its name and the labels its matchers name."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers if m.name != "__name__"}
            found.append((node.name or "", labels))  # "": a selector without a name

    promql_parser.walk(promql_parser.parse(expression), visit)
    return found


def unknown_series(expression: str) -> list[str]:
    """What an expression names that the service does not export: series, or labels."""
    known = exported()
    wrong = []
    for name, labels in selectors(expression):
        if name not in known:
            wrong.append(f"series {name!r}")
        elif labels - known[name] - TARGET_LABELS:
            wrong.append(f"labels {sorted(labels - known[name] - TARGET_LABELS)} of {name}")
    return wrong


def grouping_labels(expression: str) -> set[str]:
    """The labels an expression's aggregations keep (`by (...)`)."""
    found: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(expression), visit)
    return found


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every target, Grafana's variables replaced by values."""
    variables = {
        variable["name"]: variable["current"]["value"]
        for variable in DASHBOARD["templating"]["list"]
    }
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            expression = target["expr"]
            for interval in GRAFANA_INTERVALS:
                expression = expression.replace(interval, "5m")
            for name, value in variables.items():
                expression = expression.replace(f"${{{name}}}", value).replace(f"${name}", value)
            assert "$" not in expression, f"{panel['title']}: unknown variable in {expression}"
            yield panel["title"], expression


# --- the alerting rules ----------------------------------------------------------------------


def test_the_alerting_rules_have_the_structure_prometheus_loads() -> None:
    assert set(ALERTS) == {"groups"}
    for group in ALERTS["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["name"]
        assert group["rules"]
    names = [rule["alert"] for rule in RULES]
    assert len(set(names)) == len(names), "two alerts of one name"
    for rule in RULES:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert re.fullmatch(r"Fulfillment[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        if "for" in rule:
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0


def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook_section() -> None:
    for rule in RULES:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}"


def test_every_alert_expression_is_valid_promql_over_metrics_the_service_exports() -> None:
    for rule in RULES:
        assert selectors(rule["expr"]), f"{rule['alert']} selects no series"
        assert unknown_series(rule["expr"]) == [], rule["alert"]


def test_the_labels_an_alert_s_text_names_are_labels_its_expression_keeps() -> None:
    known = exported()
    for rule in RULES:
        text = " ".join(rule["annotations"].values())
        named = set(re.findall(r"\$labels\.(\w+)", text))
        kept = grouping_labels(rule["expr"])
        if not kept:  # not aggregated: the selected series' labels
            kept = set(TARGET_LABELS)
            for name, _ in selectors(rule["expr"]):
                kept |= known[name]
        assert named <= kept, f"{rule['alert']} names {sorted(named - kept)}"


def test_the_alerts_cover_lag_dead_letters_batches_leaders_conservation_and_targets() -> None:
    assert {rule["alert"] for rule in RULES} == {
        "FulfillmentConsumerLagGrowing",
        "FulfillmentProjectionLagGrowing",
        "FulfillmentDeadLettersRising",
        "FulfillmentBatchesFailing",
        "FulfillmentNoLeader",
        "FulfillmentConservationViolated",
        "FulfillmentConservationCheckNotRun",
        "FulfillmentTargetDown",
    }


def test_the_rules_tests_make_each_alert_fire_and_not_fire_on_exported_series() -> None:
    assert RULE_TESTS["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in RULE_TESTS["tests"]:
        for series in case["input_series"]:
            assert unknown_series(series["series"]) == [], series["series"]
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    every = {rule["alert"] for rule in RULES}
    assert firing == every
    assert quiet == every


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_model_whose_panels_each_query_prometheus() -> None:
    assert DASHBOARD["title"]
    assert DASHBOARD["uid"]
    assert isinstance(DASHBOARD["schemaVersion"], int)
    [source] = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": f"${{{source['name']}}}"}
    panels = DASHBOARD["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["title"]
        assert panel["type"] in {"timeseries", "stat", "gauge", "table"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        references = [target["refId"] for target in panel["targets"]]
        assert len(set(references)) == len(references), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]


def test_every_dashboard_query_is_valid_promql_over_metrics_the_service_exports() -> None:
    queries = list(dashboard_queries())
    assert queries
    for title, expression in queries:
        assert unknown_series(expression) == [], title


def test_the_dashboard_shows_lag_throughput_dead_letters_batches_leaders_and_conservation() -> None:
    shown = {name for _, expression in dashboard_queries() for name, _ in selectors(expression)}
    assert shown == {
        "fulfillment_consumer_lag",
        "fulfillment_projection_lag",
        "fulfillment_messages_consumed_total",
        "fulfillment_messages_published_total",
        "fulfillment_dead_letters_total",
        "fulfillment_batch_seconds_bucket",
        "fulfillment_batch_failures_total",
        "fulfillment_leading",
        "fulfillment_conservation_violations",
        "fulfillment_conservation_checked_timestamp_seconds",
    }
    latency = [q for title, q in dashboard_queries() if "latency" in title.lower()]
    assert any("histogram_quantile(0.5," in q for q in latency)
    assert any("histogram_quantile(0.99," in q for q in latency)


def test_the_check_refuses_a_metric_or_a_label_the_service_does_not_export() -> None:
    assert unknown_series("rate(fulfillment_orders_lost_total[5m])") == [
        "series 'fulfillment_orders_lost_total'"
    ]
    assert unknown_series('fulfillment_consumer_lag{shard="1"}') == [
        "labels ['shard'] of fulfillment_consumer_lag"
    ]
    with pytest.raises(ValueError, match="matrix"):
        promql_parser.parse("rate(fulfillment_dead_letters_total)")


# --- the scrape configuration ----------------------------------------------------------------


def test_the_example_scrape_config_loads_the_rules_and_names_its_jobs_fulfillment() -> None:
    assert PROMETHEUS["rule_files"] == ["alerts.yml"]
    jobs = [job["job_name"] for job in PROMETHEUS["scrape_configs"]]
    assert len(set(jobs)) == len(jobs)
    assert all(re.fullmatch(r"fulfillment(-[a-z-]+)?", job) for job in jobs), jobs
    assert "fulfillment" in jobs  # `fulfillment run`: one target
    [target_down] = [rule for rule in RULES if rule["alert"] == "FulfillmentTargetDown"]
    assert 'job=~"fulfillment.*"' in target_down["expr"]


# --- the supervisor's metrics folder ---------------------------------------------------------


def test_the_supervisor_empties_the_operator_s_metrics_folder_of_a_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_4242.db").write_bytes(b"a previous run's counts")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    folder, made_here = metrics_folder()

    assert (folder, made_here) == (tmp_path, False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_without_a_metrics_folder_the_supervisor_makes_a_fresh_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    folder, made_here = metrics_folder()
    try:
        assert made_here
        assert folder.is_dir()
        assert list(folder.iterdir()) == []
    finally:
        folder.rmdir()
