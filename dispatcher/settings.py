"""Configuration: one frozen object, read once at the edge (the CLI) from `DISPATCHER_*`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_RATE_LIMIT = {"rate": 5.0, "burst": 10}
# Conservative starting points per operation, below the usual account quotas of these "start"
# APIs. Quotas differ per account and region: set DISPATCHER_RATE_LIMITS to yours. The adaptive
# limiter lowers a rate on throttling anyway; these keep a fresh deployment from finding out first.
BUILT_IN_RATE_LIMITS: dict[str, dict[str, float]] = {
    "quicksight.StartAutomationJob": {"rate": 1.0, "burst": 5},
    "lookoutequipment.StartDataIngestionJob": {"rate": 1.0, "burst": 2},
    "datazone.StartDataSourceRun": {"rate": 5.0, "burst": 10},
    "m2.StartBatchJob": {"rate": 5.0, "burst": 10},
    "cleanrooms.StartProtectedJob": {"rate": 1.0, "burst": 5},
}


class RateLimit(BaseModel):
    """Calls per second and burst for one operation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: PositiveFloat
    burst: int = Field(ge=1)


class Settings(BaseSettings):
    """Everything the worker and the CLI read from the environment or `DISPATCHER_CONFIG`."""

    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", frozen=True, extra="forbid")

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    redis_url: SecretStr | None = None
    # Signs the dispatcher's own headers (dispatcher.stamps); unset, derived from amqp_url.
    state_secret: SecretStr | None = None

    jobs_exchange: str = "dispatcher.jobs"
    results_exchange: str = "dispatcher.results"
    dead_exchange: str = "dispatcher.dead"
    results_queue_enabled: bool = True

    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    default_rate_limit: RateLimit = RateLimit.model_validate(DEFAULT_RATE_LIMIT)
    # At least one: a job throttled for longer than max_throttle_wait_s waits in the first retry queue.
    retry_delays: list[PositiveFloat] = Field(default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0], min_length=1)
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    retry_unknown_outcome: bool = False
    max_throttle_wait_s: PositiveFloat = 60.0
    delivery_limit: int = Field(default=10, ge=1)

    concurrency: int = Field(default=32, ge=1)
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    aws_call_timeout_s: PositiveFloat = 30.0
    aws_connect_timeout_s: PositiveFloat = 5.0
    aws_region: str | None = None
    aws_regions: list[str] = Field(default_factory=list)
    publish_timeout_s: PositiveFloat = 10.0
    publish_channels: int = Field(default=16, ge=1, le=64)
    shutdown_grace_s: PositiveFloat = 30.0
    reconnect_max_delay_s: PositiveFloat = 30.0

    http_host: str = "0.0.0.0"  # noqa: S104 - probes must be reachable from the kubelet
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    ledger_ttl_s: PositiveFloat = 7 * 24 * 3600.0
    # While Redis cannot answer: "hold" parks jobs without an idempotency token in the first retry
    # queue; "local" uses the process's own ledger, which cannot see other replicas (unsafe).
    ledger_fallback: Literal["hold", "local"] = "hold"
    expected_replicas: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _default_region(self) -> Settings:
        """Fill the region from AWS's own variables, the standard way."""
        if self.aws_region is None:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            object.__setattr__(self, "aws_region", region or "us-east-1")
        return self

    @property
    def region(self) -> str:
        """The default AWS region for jobs that name none."""
        assert self.aws_region is not None
        return self.aws_region

    @property
    def enabled_regions(self) -> tuple[str, ...]:
        """The allow-list of regions a job may name (the default plus `DISPATCHER_AWS_REGIONS`).

        Empty when `aws_regions` is: then any region of the default region's partition.
        """
        return tuple(dict.fromkeys([self.region, *self.aws_regions])) if self.aws_regions else ()

    @property
    def attempts(self) -> int:
        """AWS attempts a job gets for retryable failures: one more than the delays."""
        return len(self.retry_delays) + 1

    def rate_limit_for(self, routing_key: str) -> RateLimit:
        """The limit of one operation: configured, else built in, else `default_rate_limit`."""
        if routing_key in self.rate_limits:
            return self.rate_limits[routing_key]
        if routing_key in BUILT_IN_RATE_LIMITS and "default_rate_limit" not in self.model_fields_set:
            return RateLimit.model_validate(BUILT_IN_RATE_LIMITS[routing_key])
        return self.default_rate_limit

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files: config is explicit
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the file named by `DISPATCHER_CONFIG` (YAML or JSON)."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("DISPATCHER_CONFIG")
        if config_file:
            path = Path(config_file)
            if path.suffix == ".json":
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:  # noqa: ANN401 - passed through to pydantic
    """Read the settings once; overrides are for tests and the CLI's own flags."""
    return Settings(**overrides)
