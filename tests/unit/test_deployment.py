"""The deployment files. deploy/kubernetes/ passes kubeconform, strict, against Kubernetes'
own schemas (deploy/kubernetes/validate.sh), and says what a schema cannot: a workload for
every stage of the runner, running `fulfillment run --stage X` through the image's entry
point, setting only variables that are settings, probing what each stage serves, stable
member ids for the consumers, a standby for each leader-locked stage. deploy/compose.yaml
matches the Compose Specification schema Docker Compose v2 checks files with.

No servers: `make kubeconform` (a `make test` prerequisite) builds kubeconform and fetches
the compose schema once."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings, Topics
from services.adapters.store import application_env
from services.allocation.application import Allocation
from services.entrypoints import cli
from services.entrypoints.http import create_app
from services.entrypoints.runner import STAGES, WRITES, Service

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
VALIDATE = KUBERNETES / "validate.sh"
COMPOSE = REPO / "deploy" / "compose.yaml"
# The stages that consume topics are the ones that write a log (runner.WRITES).
CONSUMERS = frozenset(WRITES)
# Stages that publish under a leader lock (services/adapters/leadership.py).
LEADER_LOCKED = frozenset({"intake-relay", "allocation-relay", "projections", "clock"})
API_PROBES = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}

Manifest = dict[str, Any]


def validate(*files: Path) -> subprocess.CompletedProcess[str]:
    """deploy/kubernetes/validate.sh, as an operator runs it."""
    return subprocess.run(
        ["bash", str(VALIDATE), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kustomization() -> Manifest:
    loaded: Manifest = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return loaded


def manifests() -> list[Manifest]:
    """Every document the kustomization applies, in its order."""
    documents: list[Manifest] = []
    for resource in kustomization()["resources"]:
        text = (KUBERNETES / resource).read_text()
        documents += [document for document in yaml.safe_load_all(text) if document]
    return documents


def one(kind: str, name: str) -> Manifest:
    found = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def workloads() -> list[Manifest]:
    return [m for m in manifests() if m["kind"] in ("Deployment", "StatefulSet")]


def container(workload: Manifest) -> Manifest:
    containers: list[Manifest] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return containers[0]


def stage_of(workload: Manifest) -> str:
    args = container(workload)["args"]
    assert args[:2] == ["run", "--stage"], args
    [stage] = args[2:]
    return str(stage)


def workload_of(stage: str) -> Manifest:
    [workload] = [w for w in workloads() if stage_of(w) == stage]
    return workload


def environment(workload: Manifest, pod_name: str) -> dict[str, str]:
    """The variables the container starts with, resolved as the kubelet would."""
    spec = container(workload)
    resolved: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        resolved |= one("ConfigMap", source["configMapRef"]["name"])["data"]
    for variable in spec.get("env", []):
        if "value" in variable:
            resolved[variable["name"]] = variable["value"]
            continue
        origin = variable["valueFrom"]
        if "secretKeyRef" in origin:
            ref = origin["secretKeyRef"]
            resolved[variable["name"]] = one("Secret", ref["name"])["stringData"][ref["key"]]
        else:
            assert origin["fieldRef"]["fieldPath"] == "metadata.name", origin
            resolved[variable["name"]] = pod_name
    return resolved


def pod_name(workload: Manifest) -> str:
    """A StatefulSet's first pod; a Deployment's pods have a random suffix."""
    suffix = "-0" if workload["kind"] == "StatefulSet" else "-7d9c6b5f4-x2x8q"
    return str(workload["metadata"]["name"]) + suffix


def setting_names() -> set[str]:
    """The variables Settings reads: its fields' names in capitals, and TOPIC_* for Topics."""
    names = {name.upper() for name in Settings.model_fields if name != "topics"}
    return names | {f"TOPIC_{name.upper()}" for name in Topics.model_fields}


def read_back(settings: Settings, variable: str) -> Any:
    if variable.startswith("TOPIC_") and variable.lower() not in Settings.model_fields:
        return getattr(settings.topics, variable.removeprefix("TOPIC_").lower())
    value = getattr(settings, variable.lower())
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def as_written(parsed: Any, text: str) -> Any:
    """`text` as the type the setting parsed it to, to compare the two."""
    if isinstance(parsed, bool):
        return text.lower() in {"1", "true", "yes", "on"}
    if isinstance(parsed, int | float):
        return type(parsed)(text)
    return text


def port_number(spec: Manifest, port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in spec.get("ports", []) if p["name"] == port]
    return int(number)


def image_entrypoint() -> list[str]:
    [line] = [
        line for line in (REPO / "Dockerfile").read_text().splitlines() if "ENTRYPOINT" in line
    ]
    entrypoint: list[str] = json.loads(line.removeprefix("ENTRYPOINT").strip())
    return entrypoint


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- the schema: kubeconform ------------------------------------------------------------


def test_every_manifest_passes_kubeconform_strict_against_the_kubernetes_schemas() -> None:
    checked = validate()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    count = len(manifests())
    assert f"Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in checked.stdout, checked.stdout


BREAKAGES = {
    "an unknown field": ("          imagePullPolicy:", "          imagePullPolicyy:"),
    "a duplicated key": ("  replicas: 2\n", "  replicas: 2\n  replicas: 3\n"),
    "a wrong type": ("  replicas: 2\n", "  replicas: two\n"),
    "a missing required field": ("- name: fulfillment\n          image:", "- image:"),
    "a kind with no schema": ("kind: Deployment", "kind: Deploymnet"),
}


def test_kubeconform_refuses_unknown_fields_duplicated_keys_wrong_types_and_unknown_kinds(
    tmp_path: Path,
) -> None:
    original = (KUBERNETES / "api.yaml").read_text()
    broken: dict[str, Path] = {}
    for n, (what, (before, after)) in enumerate(BREAKAGES.items()):
        assert before in original, what
        broken[what] = tmp_path / f"broken-{n}.yaml"
        broken[what].write_text(original.replace(before, after, 1))

    checked = validate(*broken.values())

    assert checked.returncode == 1, checked.stdout + checked.stderr
    for what, path in broken.items():
        assert f"{path} - " in checked.stdout, f"{what} passed:\n{checked.stdout}"
    assert "Valid: 0, Invalid: 3, Errors: 2" in checked.stdout  # YAML and kind: errors


def test_the_kustomization_applies_every_manifest_in_the_folder_and_nothing_else() -> None:
    listed = sorted(kustomization()["resources"])
    present = sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
    assert listed == present
    assert kustomization()["images"][0]["name"] == "fulfillment"
    assert {container(w)["image"] for w in workloads()} == {"fulfillment"}


# --- what a schema cannot say -----------------------------------------------------------


def test_every_stage_of_the_runner_runs_in_exactly_one_workload() -> None:
    assert sorted(stage_of(w) for w in workloads()) == sorted(STAGES)


def test_each_container_runs_fulfillment_run_stage_through_the_images_entry_point() -> None:
    entrypoint = image_entrypoint()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["fulfillment"]
    assert scripts["fulfillment"] == "services.entrypoints.cli:main"
    for workload in workloads():
        spec = container(workload)
        assert "command" not in spec, "a command would replace the image's entry point"
        assert entrypoint + spec["args"] == ["fulfillment", "run", "--stage", stage_of(workload)]
    helped = CliRunner().invoke(cli.app, ["run", "--help"])
    assert helped.exit_code == 0
    assert "--stage" in helped.output


def test_every_variable_the_manifests_set_is_a_setting_that_reads_back_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = setting_names()
    for workload in workloads():
        variables = environment(workload, pod_name(workload))
        assert set(variables) <= known, f"{stage_of(workload)}: {set(variables) - known}"
        with monkeypatch.context() as patched:
            for name, value in variables.items():
                patched.setenv(name, value)
            settings = Settings()
        for name, value in variables.items():
            parsed = read_back(settings, name)
            assert parsed == as_written(parsed, value), f"{stage_of(workload)}: {name}"


def test_consumers_are_statefulsets_whose_pod_name_is_their_static_member_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for workload in workloads():
        stage = stage_of(workload)
        variables = environment(workload, pod_name(workload))
        if stage not in CONSUMERS:
            assert workload["kind"] == "Deployment", stage
            assert "KAFKA_GROUP_INSTANCE_ID" not in variables, stage
            continue
        assert workload["kind"] == "StatefulSet", stage
        monkeypatch.setenv("KAFKA_GROUP_INSTANCE_ID", variables["KAFKA_GROUP_INSTANCE_ID"])
        assert Settings().kafka_group_instance_id == pod_name(workload)
        governing = one("Service", workload["spec"]["serviceName"])
        assert governing["spec"]["clusterIP"] == "None"  # headless: a DNS name per pod
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert governing["spec"]["selector"].items() <= labels.items(), stage


def test_each_leader_locked_stage_runs_a_hot_standby_and_says_why() -> None:
    for stage in LEADER_LOCKED:
        workload = workload_of(stage)
        assert workload["spec"]["replicas"] >= 2, stage
        text = (KUBERNETES / f"{stage}.yaml").read_text()
        assert "Leader lock" in text, stage
        assert "standby" in text or "stand by" in text, stage


@pytest.fixture
def served_metrics() -> Iterator[int]:
    """The metrics server a stage without the API starts on METRICS_PORT (the runner's own)."""
    port = free_port()
    service = Service(Settings(http_host="127.0.0.1", metrics_port=port), ["clock"])
    service._serve_metrics("127.0.0.1", port)
    yield port
    asyncio.run(service._cleanups.aclose())  # the runner's cleanup: shut down and close


def test_stages_without_the_api_are_probed_on_the_metrics_port_they_serve(
    served_metrics: int,
) -> None:
    for workload in workloads():
        stage = stage_of(workload)
        if stage == "api":
            continue
        spec = container(workload)
        metrics_port = int(environment(workload, pod_name(workload))["METRICS_PORT"])
        for probe in ("livenessProbe", "readinessProbe"):
            get = spec[probe]["httpGet"]
            assert get["path"] == "/metrics", (stage, probe)
            assert port_number(spec, get["port"]) == metrics_port, (stage, probe)
    answer = httpx.get(f"http://127.0.0.1:{served_metrics}/metrics", timeout=5)
    assert answer.status_code == 200
    assert "fulfillment_leading" in answer.text


def test_the_api_is_probed_on_its_http_port_where_probes_need_no_token(tmp_path: Path) -> None:
    workload = workload_of("api")
    spec = container(workload)
    variables = environment(workload, pod_name(workload))
    assert "METRICS_PORT" not in variables  # the api serves /metrics on HTTP_PORT
    for probe, path in API_PROBES.items():
        get = spec[probe]["httpGet"]
        assert get["path"] == path, probe
        assert port_number(spec, get["port"]) == int(variables["HTTP_PORT"]), probe

    url = f"sqlite:///{tmp_path}/fulfillment"
    models = ReadModels(ReadStore(url), Allocation(env=application_env(url, "allocation")))
    token = variables["API_TOKEN"]
    client = TestClient(create_app(models, Settings(database_url=url, api_token=token)))
    for path in API_PROBES.values():
        assert client.get(path).status_code == 200, path  # no Authorization header
    assert client.get("/skus/S").status_code == 401  # the token from the Secret is in force


def selected_by(service: Manifest) -> list[Manifest]:
    selector = service["spec"]["selector"].items()
    return [
        w for w in workloads() if selector <= w["spec"]["template"]["metadata"]["labels"].items()
    ]


def test_the_services_reach_the_pods_that_serve_their_ports() -> None:
    expected = {"fulfillment-api": {"api"}, "fulfillment-stages": set(STAGES) - {"api"}}
    services = [m for m in manifests() if m["kind"] == "Service"]
    assert sorted(s["metadata"]["name"] for s in services) == sorted(expected)
    for service in services:
        selected = selected_by(service)
        assert {stage_of(w) for w in selected} == expected[service["metadata"]["name"]]
        for workload in selected:
            for port in service["spec"]["ports"]:
                port_number(container(workload), port["targetPort"])  # the pod has that port


def test_every_container_requests_cpu_and_memory_below_a_limit_from_a_measured_peak() -> None:
    units = {"Mi": 1, "Gi": 1024}
    for workload in workloads():
        stage = stage_of(workload)
        resources = container(workload)["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), stage
        request, limit = resources["requests"]["memory"], resources["limits"]["memory"]
        mebibytes = [int(v[:-2]) * units[v[-2:]] for v in (request, limit)]
        assert mebibytes[0] <= mebibytes[1], stage
        text = (KUBERNETES / f"{stage}.yaml").read_text()
        assert re.search(r"\d+(\.\d+)? MB peak RSS", text), f"{stage}: name the measured figure"


def test_the_database_is_postgresql_and_the_secret_holds_placeholders_only() -> None:
    secret = one("Secret", "fulfillment-secrets")["stringData"]
    assert secret["DATABASE_URL"].startswith("postgresql://")
    assert Settings(database_url=secret["DATABASE_URL"]).database_url == secret["DATABASE_URL"]
    assert all("example" in value for value in secret.values()), "real credentials committed?"
    settings_map = one("ConfigMap", "fulfillment-settings")["data"]
    secrets = {"DATABASE_URL", "API_TOKEN", "ADMIN_TOKEN", "KAFKA_SASL_PASSWORD"}
    assert not secrets & settings_map.keys()
    for workload in workloads():  # the tokens only where the HTTP API checks them
        variables = environment(workload, pod_name(workload))
        has_tokens = {"API_TOKEN", "ADMIN_TOKEN"} <= variables.keys()
        assert has_tokens == (stage_of(workload) == "api"), stage_of(workload)


# --- deploy/compose.yaml ----------------------------------------------------------------


def compose_schema() -> Any:
    found = subprocess.run(
        ["bash", str(VALIDATE), "compose-schema"], capture_output=True, text=True, check=False
    )
    assert found.returncode == 0, found.stderr
    return json.loads(Path(found.stdout.strip()).read_text())


def compose_file() -> Manifest:
    loaded: Manifest = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_the_compose_file_matches_the_schema_docker_compose_checks_it_with() -> None:
    validator = jsonschema.Draft7Validator(compose_schema())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose_file())
    ]
    assert errors == []

    broken = compose_file()
    broken["services"]["fulfillment"]["enviroment"] = {"HTTP_PORT": "8080"}
    assert not validator.is_valid(broken)  # a misspelt key is refused, not ignored


def test_the_compose_service_runs_the_whole_service_with_real_settings() -> None:
    services = compose_file()["services"]
    fulfillment = services["fulfillment"]
    assert image_entrypoint() + fulfillment["command"] == ["fulfillment", "run"]
    variables = {name: str(value) for name, value in fulfillment["environment"].items()}
    assert set(variables) <= setting_names()
    assert variables["DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:" in variables["DATABASE_URL"]
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{variables['KAFKA_BOOTSTRAP_SERVERS']}" in advertised
    for needed, condition in fulfillment["depends_on"].items():
        assert condition == {"condition": "service_healthy"}
        assert "healthcheck" in services[needed], needed
