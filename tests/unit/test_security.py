"""Security basics: Kafka SASL/TLS settings reach the clients, secrets stay hidden, and the
optional API token is checked on every endpoint but the probes."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from projections.runner import ReadModels
from projections.store import ReadStore
from services.adapters.settings import Settings
from services.adapters.store import application_env, redact
from services.allocation.application import Allocation
from services.entrypoints.http import create_app

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SECRET = "kafka-Pa55-\N{SNOWMAN}-do-not-print"
TOKEN = "api-token-7f3a-do-not-print"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Kafka or token variable from the outer environment leaks into these tests."""
    for name in (
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "KAFKA_SSL_CERTFILE",
        "KAFKA_SSL_KEYFILE",
        "API_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_plaintext_is_the_default_and_carries_no_sasl_or_tls(
    clean_env: pytest.MonkeyPatch,
) -> None:
    options = Settings().kafka_client_options()
    assert options["security_protocol"] == "PLAINTEXT"
    assert not {"sasl_mechanism", "sasl_plain_password", "ssl_context"} & set(options)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_settings_from_the_environment_reach_the_kafka_clients(
    clean_env: pytest.MonkeyPatch, mechanism: str
) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    clean_env.setenv("KAFKA_SASL_MECHANISM", mechanism)
    clean_env.setenv("KAFKA_SASL_USERNAME", "svc-fulfillment")
    clean_env.setenv("KAFKA_SASL_PASSWORD", SECRET)
    settings = Settings()
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "svc-fulfillment"
    assert options["sasl_plain_password"] == SECRET
    assert "ssl_context" not in options
    # The password is a SecretStr: printing the settings never shows it.
    assert isinstance(settings.kafka_sasl_password, SecretStr)
    for shown in (str(settings), repr(settings), str(settings.kafka_sasl_password)):
        assert SECRET not in shown
    assert SECRET not in settings.model_dump_json()


def test_an_unknown_protocol_or_mechanism_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAIN")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        Settings()
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ValidationError, match="kafka_sasl_mechanism"):
        Settings()


@pytest.fixture
def client_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key (openssl CLI), or skip."""
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=fulfillment-test",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as error:
        pytest.fail(f"openssl cannot make a test certificate: {error}")
    return cert, key


def test_ssl_settings_build_a_verifying_tls_context(
    clean_env: pytest.MonkeyPatch, client_certificate: tuple[Path, Path]
) -> None:
    cert, key = client_certificate
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    clean_env.setenv("KAFKA_SSL_CAFILE", str(SYSTEM_CA_BUNDLE))
    clean_env.setenv("KAFKA_SSL_CERTFILE", str(cert))
    clean_env.setenv("KAFKA_SSL_KEYFILE", str(key))
    options = Settings().kafka_client_options()
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the CA file was loaded


def test_sasl_over_tls_carries_both(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    clean_env.setenv("KAFKA_SASL_USERNAME", "svc")
    clean_env.setenv("KAFKA_SASL_PASSWORD", SECRET)
    clean_env.setenv("KAFKA_SSL_CAFILE", str(SYSTEM_CA_BUNDLE))
    options = Settings().kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_password"] == SECRET
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_a_missing_ca_file_fails_at_start_not_silently(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    clean_env.setenv("KAFKA_SSL_CAFILE", "/nonexistent/ca.pem")
    with pytest.raises(OSError, match="No such file"):
        Settings().kafka_client_options()


def test_redact_hides_a_database_password() -> None:
    url = "postgresql://fulfillment:S3cr3t-Pa55@db.internal:5432/fulfillment?schema=x"
    shown = redact(url)
    assert "S3cr3t-Pa55" not in shown
    assert shown == "postgresql://fulfillment:***@db.internal:5432/fulfillment?schema=x"
    assert redact("sqlite:///data/fulfillment") == "sqlite:///data/fulfillment"
    assert redact("postgresql://nopass@db/fulfillment") == "postgresql://nopass@db/fulfillment"


def test_a_bad_database_url_error_does_not_show_the_password() -> None:
    from services.adapters.store import DatabaseUrlError

    with pytest.raises(DatabaseUrlError) as raised:
        application_env("postgresql://user:S3cr3t-Pa55@/", "intake")
    assert "S3cr3t-Pa55" not in str(raised.value)
    assert "***" in str(raised.value)


def test_the_api_token_is_a_secret_and_may_not_be_empty(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("API_TOKEN", TOKEN)
    settings = Settings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    clean_env.setenv("API_TOKEN", "")
    with pytest.raises(ValidationError, match="api_token"):
        Settings()


def _api(tmp_path: Path, clean_env: pytest.MonkeyPatch, token: str | None) -> TestClient:
    if token is not None:
        clean_env.setenv("API_TOKEN", token)
    url = f"sqlite:///{tmp_path}/fulfillment"
    settings = Settings(database_url=url)
    allocation = Allocation(env=application_env(url, "allocation"))
    models = ReadModels(ReadStore(url), allocation)
    return TestClient(create_app(models, settings))


def test_with_an_api_token_only_the_right_bearer_token_gets_in(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    client = _api(tmp_path, clean_env, TOKEN)
    guarded = ["/skus/SKU-1", "/backorders", "/orders/O-1", "/docs", "/openapi.json"]
    for path in guarded:
        for headers in (
            {},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": "Bearer "},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 401, (path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "error" in answer.json()
            assert TOKEN not in answer.text
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/backorders", headers=right).status_code == 200
    assert client.get("/backorders", headers={"authorization": f"bearer {TOKEN}"}).status_code == (
        200
    )
    unknown = client.get("/skus/SKU-1", headers=right)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown SKU 'SKU-1'"}
    assert client.get("/orders/O-1", headers=right).status_code == 404
    assert client.get("/backorders?limit=0", headers=right).status_code == 422
    for probe in ("/healthz", "/metrics"):
        assert client.get(probe).status_code == 200, probe
    assert client.get("/readyz").status_code in (200, 503)  # open: never 401


def test_without_an_api_token_the_api_is_open(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    client = _api(tmp_path, clean_env, None)
    assert client.get("/backorders").status_code == 200
    assert client.get("/skus/SKU-1").status_code == 404
    assert client.get("/healthz").status_code == 200


def test_a_non_ascii_token_is_compared_on_its_bytes(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    token = "t\N{LATIN SMALL LETTER E WITH ACUTE}st"
    client = _api(tmp_path, clean_env, token)
    raw = f"Bearer {token}".encode()
    assert client.get("/backorders", headers={b"Authorization": raw}).status_code == 200
    assert client.get("/backorders", headers={"Authorization": "Bearer test"}).status_code == 401
