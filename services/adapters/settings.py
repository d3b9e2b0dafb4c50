"""Every setting comes from the environment, through this one class; nothing connects here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.topics import DEFAULT_BROKER, DEFAULT_TOPICS


class Topics(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOPIC_", extra="ignore")

    orders: str = DEFAULT_TOPICS["orders"]
    cancellations: str = DEFAULT_TOPICS["cancellations"]
    receipts: str = DEFAULT_TOPICS["receipts"]
    shipments: str = DEFAULT_TOPICS["shipments"]
    policies: str = DEFAULT_TOPICS["policies"]
    inbound: str = DEFAULT_TOPICS["inbound"]
    clock: str = DEFAULT_TOPICS["clock"]
    sku_commands: str = DEFAULT_TOPICS["sku_commands"]
    decisions: str = DEFAULT_TOPICS["decisions"]
    dead_letters: str = DEFAULT_TOPICS["dead_letters"]
    demand_history: str = DEFAULT_TOPICS["demand_history"]
    backorder_queue: str = DEFAULT_TOPICS["backorder_queue"]

    def inputs(self) -> list[str]:
        """The topics other services publish to us."""
        return [
            self.orders,
            self.cancellations,
            self.receipts,
            self.shipments,
            self.policies,
            self.inbound,
            self.clock,
        ]


class Settings(BaseSettings):
    """Configuration of one fulfillment process (any or all of its stages)."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default=DEFAULT_BROKER, description="Comma-separated host:port list."
    )
    database_url: str = Field(
        default="sqlite:///data/fulfillment",
        description="sqlite:///PATH (one file per application: PATH-intake.db, ...) "
        "or postgresql://USER:PASSWORD@HOST:PORT/DB[?schema=NAME].",
    )
    http_host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces by default
    http_port: int = Field(default=8080, ge=1, le=65535)
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics on this port in processes that run no `api` stage.",
    )
    publish_read_models: bool = Field(
        default=True,
        description="Publish changes of the demand history and the backorder queue to Kafka.",
    )
    consumer_group: str = "fulfillment"
    topics: Topics = Field(default_factory=Topics, description="Topic names (TOPIC_* variables).")

    sku_commands_partitions: int = Field(default=6, ge=1, le=1000)
    topic_partitions: int = Field(default=3, ge=1, le=1000)
    topic_replication_factor: int = Field(default=1, ge=1)

    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        description="How long a silent consumer keeps its partitions before they move.",
    )
    kafka_group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        description="Static group membership: a process restarted with the same id gets its "
        "partitions back at once instead of after the session timeout. Unique per process "
        "(e.g. a StatefulSet pod's name); `fulfillment run` sets one per process it starts.",
    )
    batch_max_records: int = Field(default=500, ge=1, le=100_000)
    batch_timeout_ms: int = Field(default=100, ge=0)
    relay_batch_size: int = Field(default=1000, ge=1)
    relay_idle_interval: float = Field(
        default=0.5,
        gt=0,
        description="The longest a relay or the read models wait before looking at their log "
        "again when no commit woke them (a fallback: each commit wakes them at once).",
    )
    aggregate_cache_size: int = Field(default=100_000, ge=1)
    backorders_allowed: bool = Field(
        default=True,
        description="The policy of a SKU that has none: true allows backorders, false denies "
        "them (what stock cannot cover is rejected: a lost sale).",
    )
    clock_interval_seconds: float = Field(
        default=60,
        ge=0,
        description="The clock stage publishes a ClockTicked this often; 0: never.",
    )
    conservation_check_seconds: float = Field(
        default=30,
        ge=0,
        description="The projections stage checks this often that every SKU's stock and every "
        "order line add up in the read models (fulfillment_conservation_violations); 0: never.",
    )

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    api_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        description="If set, the HTTP API wants `Authorization: Bearer <token>` "
        "(except /healthz, /readyz, /metrics).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        description="Opens the /admin/ routes (rebuild, re-drive, replay) to "
        "`Authorization: Bearer <token>`; unset, they answer 403. Separate from API_TOKEN: "
        "each opens only its own routes, unless the two are equal.",
    )

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                "DATABASE_URL must start with sqlite:/// (e.g. sqlite:///data/fulfillment) "
                "or postgresql:// (e.g. postgresql://user:pass@127.0.0.1:5432/fulfillment)"
            )
        return value

    def kafka_client_options(self) -> dict[str, object]:
        """Connection and security options shared by every Kafka client we create."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile,
                certfile=self.kafka_ssl_certfile,
                keyfile=self.kafka_ssl_keyfile,
            )
        return options
