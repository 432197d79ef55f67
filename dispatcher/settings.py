"""Configuration: one frozen object, read once at the edge (the CLI) from `DISPATCHER_*`."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

ENV_PREFIX = "DISPATCHER_"
# DISPATCHER_* variables that are read outside `Settings` (so not unknown).
OTHER_VARIABLES = frozenset({"DISPATCHER_CONFIG", "DISPATCHER_DLQ_PROGRESS_EVERY_S"})
# What a person types, per setting that is not a plain value; shown in every error about it.
EXAMPLES = {
    "retry_delays": "DISPATCHER_RETRY_DELAYS=1,5,30 (or JSON: [1, 5, 30])",
    "aws_regions": 'DISPATCHER_AWS_REGIONS=us-east-1,eu-west-1 (or JSON: ["us-east-1", "eu-west-1"])',
    "rate_limits": (
        "DISPATCHER_RATE_LIMITS=m2.StartBatchJob=5/10,datazone.StartDataSourceRun=2/4 (rate/burst; "
        'or JSON: {"m2.StartBatchJob": {"rate": 5, "burst": 10}})'
    ),
    "default_rate_limit": 'DISPATCHER_DEFAULT_RATE_LIMIT=5/10 (rate/burst; or JSON: {"rate": 5, "burst": 10})',
    "follow_operations": "DISPATCHER_FOLLOW_OPERATIONS=m2.StartBatchJob,cleanrooms.StartProtectedJob",
    "follow_poll_delays": "DISPATCHER_FOLLOW_POLL_DELAYS=5,10,20,40,80,160,300",
    "follow_rate_limits": (
        "DISPATCHER_FOLLOW_RATE_LIMITS=m2.GetBatchJobExecution=10/20 (rate/burst of the Describe/Get call; "
        'or JSON: {"m2.GetBatchJobExecution": {"rate": 10, "burst": 20}})'
    ),
    "default_follow_rate_limit": "DISPATCHER_DEFAULT_FOLLOW_RATE_LIMIT=5/10 (rate/burst)",
    "amqp_url": "DISPATCHER_AMQP_URL=amqps://rabbit.internal:5671/jobs (user and password percent-encoded)",
    "redis_url": "DISPATCHER_REDIS_URL=rediss://redis.internal:6379/0 (password percent-encoded)",
    "console_metrics_urls": "DISPATCHER_CONSOLE_METRICS_URLS=http://job-dispatcher-metrics:8080/metrics",
}
AMQP_SCHEMES = ("amqp", "amqps")
REDIS_SCHEMES = ("redis", "rediss", "unix")


class ConfigError(Exception):
    """The configuration cannot work; the message is one sentence naming the variable or file."""


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


# A follow longer than a month is a job nobody is waiting for; the limit keeps deadlines sane.
MAX_FOLLOW_TIMEOUT_S = 31 * 24 * 3600.0


class RateLimit(BaseModel):
    """Calls per second and burst for one operation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: PositiveFloat
    burst: int = Field(ge=1)


class Settings(BaseSettings):
    """Everything the worker and the CLI read from the environment or `DISPATCHER_CONFIG`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,  # inputs may be secrets
    )

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
    # 1 MiB holds the largest request of M2 (500 parameters of 1 KiB), Lookout for Equipment, DataZone
    # and Clean Rooms, and a QuickSight InputPayload of up to 1 MiB (the API allows 7,000,000 characters).
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The pod's memory limit (the Deployment passes it through the downward API); set, the messages
    # the worker may hold at their size limit must fit in it (dispatcher.capacity).
    memory_limit_mib: int | None = Field(default=None, ge=1)
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

    # Following started jobs to their end (contract section 8).
    follow_operations: list[str] = Field(default_factory=list)  # followed unless a job says `follow: false`
    follow_timeout_s: float = Field(default=24 * 3600.0, gt=0, le=MAX_FOLLOW_TIMEOUT_S)
    follow_progress: bool = False
    follow_poll_delays: list[PositiveFloat] = Field(
        default_factory=lambda: [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0], min_length=1
    )
    follow_poll_jitter: float = Field(default=0.2, ge=0, le=1)
    follow_rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    default_follow_rate_limit: RateLimit = RateLimit.model_validate(DEFAULT_RATE_LIMIT)
    follow_max_failures: int = Field(default=5, ge=1)
    follow_concurrency: int = Field(default=16, ge=1)
    follow_max_poll_wait_s: PositiveFloat = 60.0

    ledger_ttl_s: PositiveFloat = 7 * 24 * 3600.0
    # While Redis cannot answer: "hold" parks jobs without an idempotency token in the first retry
    # queue; "local" uses the process's own ledger, which cannot see other replicas (unsafe).
    ledger_fallback: Literal["hold", "local"] = "hold"
    expected_replicas: int = Field(default=1, ge=1)

    # The operator console (`dispatcher console`, docs/operators.md "Console").
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8090, ge=0, le=65535)
    # Operators who type this token (or send it as a bearer token) may act; unset: only the identity header.
    console_token: SecretStr | None = None
    # A header an authenticating proxy sets (oauth2-proxy: X-Auth-Request-Email); believed only when named here.
    console_identity_header: str | None = None
    # The workers' /metrics; a host name resolving to several addresses (a headless Service) is each of them.
    console_metrics_urls: list[str] = Field(default_factory=list)
    # Where purges write their export first; unset: a temporary directory of the process.
    console_export_dir: str | None = None
    # The dead-letter index is rebuilt when the queue's count changes, or when it is older than this.
    console_index_max_age_s: PositiveFloat = 300.0

    @field_validator("amqp_url", "redis_url", mode="after")
    @classmethod
    def _usable_url(cls, value: SecretStr | None, info: Any) -> SecretStr | None:  # noqa: ANN401 - ValidationInfo
        """Refuse a URL of the wrong scheme, or whose password a URL parser would cut.

        A `#`, `/` or `?` ends the password for a URL parser, which then reads its start as a port
        and puts it in its error message (`invalid literal for int(): 'pa'`), where no masking of
        URLs can find it. Checked here so the worker gets it however it is started.
        """
        if value is None:
            return None
        from dispatcher.logs import url_password  # noqa: PLC0415 - structlog is slow to import

        url = value.get_secret_value()
        schemes = AMQP_SCHEMES if info.field_name == "amqp_url" else REDIS_SCHEMES
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in schemes:
            shown = f"{scheme}://" if sep else "a URL without a scheme"
            raise PydanticCustomError(
                "url_scheme",
                "{shown} is not a {kind} URL: use {schemes}",
                {
                    "shown": shown,
                    "kind": "broker" if info.field_name == "amqp_url" else "Redis",
                    "schemes": " or ".join(f"{s}://" for s in schemes),
                },
            )
        password = url_password(url)
        if password and any(char in password for char in "#/?"):
            raise PydanticCustomError(
                "url_password",
                "a '#', '/' or '?' in the password must be percent-encoded (%23, %2F, %3F), "
                "or a URL parser ends the password there (an '@' after the host must be %40)",
            )
        return value

    @field_validator("rate_limits", "follow_rate_limits", "follow_operations", mode="after")
    @classmethod
    def _known_operations(cls, value: Any, info: Any) -> Any:  # noqa: ANN401 - a map or list of routing keys
        """A setting for a routing key no operation has would never apply: refuse it."""
        if not value:
            return value
        from dispatcher.operations import OPERATION_SPECS  # noqa: PLC0415

        if info.field_name == "follow_rate_limits":
            known = [spec.companion_routing_key for spec in OPERATION_SPECS if spec.companion_routing_key]
        elif info.field_name == "follow_operations":
            known = [spec.routing_key for spec in OPERATION_SPECS if spec.companion is not None]
        else:
            known = [spec.routing_key for spec in OPERATION_SPECS]
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}? " if close else ""
                raise PydanticCustomError(
                    "unknown_operation",
                    "{key} names no operation; {hint}known: {known}",
                    {"key": repr(key), "hint": hint, "known": ", ".join(known)},
                )
        return value

    @model_validator(mode="after")
    def _default_region(self) -> Settings:
        """Fill the region from AWS's own variables, the standard way."""
        if self.aws_region is None:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            object.__setattr__(self, "aws_region", region or "us-east-1")
        return self

    @model_validator(mode="after")
    def _fits_memory_limit(self) -> Settings:
        """Refuse a prefetch and message size whose worst case exceeds the pod's memory limit."""
        if self.memory_limit_mib is None:
            return self
        from dispatcher import capacity  # noqa: PLC0415
        from dispatcher.operations import OPERATION_SPECS  # noqa: PLC0415

        followed = sum(1 for spec in OPERATION_SPECS if spec.companion is not None)
        messages = capacity.in_flight_messages(
            self.concurrency, self.follow_concurrency, len(OPERATION_SPECS), followed
        )
        need_mib = capacity.worst_case_mib(messages, self.max_message_bytes)
        if need_mib > self.memory_limit_mib:
            raise PydanticCustomError(
                "memory_limit",
                "{messages} messages in flight (concurrency x {queues} queues + follow_concurrency x "
                "{followed}) of up to max_message_bytes={size} need up to {need} MiB, over the "
                "{limit} MiB memory limit: lower concurrency, follow_concurrency or max_message_bytes, "
                "or raise the limit (`dispatcher capacity` computes it)",
                {
                    "messages": messages,
                    "queues": len(OPERATION_SPECS) + 1,
                    "followed": followed,
                    "size": self.max_message_bytes,
                    "need": math.ceil(need_mib),
                    "limit": self.memory_limit_mib,
                },
            )
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

    def follow_rate_limit_for(self, companion_routing_key: str) -> RateLimit:
        """The limit of one Describe/Get call: configured, else `default_follow_rate_limit`."""
        return self.follow_rate_limits.get(companion_routing_key, self.default_follow_rate_limit)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - replaced by _EnvSource
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files: config is explicit
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the file named by `DISPATCHER_CONFIG` (YAML, JSON or TOML).

        Raises `ConfigError` for an unknown `DISPATCHER_*` variable, a value that cannot be read,
        or a config file that is missing, not a file, or not valid YAML/JSON/TOML.
        """
        _refuse_unknown_variables(settings_cls)
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls, env_prefix=ENV_PREFIX)]
        config_file = os.environ.get("DISPATCHER_CONFIG")
        if config_file:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=read_config_file(Path(config_file))))
        return tuple(sources)


def _refuse_unknown_variables(settings_cls: type[BaseSettings]) -> None:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in settings_cls.model_fields} | OTHER_VARIABLES
    for name in sorted(os.environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; config/default.yaml lists every setting"
            msg = f"{name} is not a setting{hint}"
            raise ConfigError(msg)


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a YAML, JSON (`.json`) or TOML (`.toml`) file, or a `ConfigError` in one sentence."""
    where = f"DISPATCHER_CONFIG={path}"
    if not path.exists():
        msg = f"{where}: no such file"
        raise ConfigError(msg)
    if not path.is_file():
        msg = f"{where}: not a file (a directory?); name a YAML, JSON or TOML file"
        raise ConfigError(msg)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{where}: cannot be read ({exc})"
        raise ConfigError(msg) from None
    data = _parse_config(path, text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        msg = f"{path}: holds a {type(data).__name__}, not a mapping of settings"
        raise ConfigError(msg)
    return data


def _parse_config(path: Path, text: str) -> object:
    try:
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        msg = f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's message ends in "(at line L, column C)" or "(at end of document)".
        found = re.fullmatch(r"(.*) \(at (?:line (\d+), column (\d+)|(end of document))\)", str(exc))
        if found is None:
            msg = f"{path}: not valid TOML ({exc})"
        elif found[4]:
            msg = f"{path}, line {max(1, len(text.splitlines()))} (the end): not valid TOML ({found[1]})"
        else:
            msg = f"{path}, line {found[2]}, column {found[3]}: not valid TOML ({found[1]})"
        raise ConfigError(msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        msg = f"{path}{at}: not valid YAML ({problem})"
        raise ConfigError(msg) from None


class _EnvSource(EnvSettingsSource):
    """`DISPATCHER_*` variables; lists and maps as people type them (`1,2,5`) or as JSON."""

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:  # noqa: ANN401, FBT001
        if isinstance(value, str) and field_name in EXAMPLES and field_name not in {"amqp_url", "redis_url"}:
            return _typed_value(field_name, value)
        return super().prepare_field_value(field_name, field, value, value_is_complex)


def _typed_value(field_name: str, value: str) -> Any:  # noqa: ANN401 - any JSON
    name = f"{ENV_PREFIX}{field_name.upper()}"
    text = value.strip()
    if text[:1] in {"[", "{"}:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{name}: not valid JSON ({exc.msg} at column {exc.colno}); e.g. {EXAMPLES[field_name]}"
            raise ConfigError(msg) from None
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        if field_name in {"default_rate_limit", "default_follow_rate_limit"}:
            return _rate_limit(text)
        if field_name in {"rate_limits", "follow_rate_limits"}:
            return dict(_keyed_rate_limit(item) for item in items)
    except ValueError:
        msg = f"{name}: cannot read {value!r}; e.g. {EXAMPLES[field_name]}"
        raise ConfigError(msg) from None
    return items


def _keyed_rate_limit(item: str) -> tuple[str, dict[str, str]]:
    key, sep, limit = item.partition("=")
    if not sep:
        raise ValueError(item)
    return key.strip(), _rate_limit(limit)


def _rate_limit(text: str) -> dict[str, str]:
    rate, sep, burst = text.strip().partition("/")
    if not sep:
        raise ValueError(text)
    return {"rate": rate.strip(), "burst": burst.strip()}


def load_settings(**overrides: Any) -> Settings:  # noqa: ANN401 - passed through to pydantic
    """Read the settings once; overrides are for tests and the CLI's own flags.

    Raises `ConfigError`, one sentence naming each variable (or the file's key) and an example.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_settings_errors(exc)) from None


def describe_settings_errors(exc: ValidationError) -> str:
    """Every failing setting as `DISPATCHER_NAME: problem` (or `file: key: problem`), with an example."""
    config_file = os.environ.get("DISPATCHER_CONFIG")
    parts = []
    explained: set[str] = set()
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in error["loc"]]
        field = loc[0] if loc else ""
        variable = f"{ENV_PREFIX}{field.upper()}"
        if not field:  # a check across settings (the memory limit)
            where = config_file or "the settings"
        elif variable in {name.upper() for name in os.environ} or not config_file:
            where = variable
        else:
            where = f"{config_file}: {field}"
        if len(loc) > 1:
            where += f" (at {'.'.join(loc[1:])})"
        problem = error["msg"]
        if error["type"] == "extra_forbidden":
            problem = "not a setting (config/default.yaml lists every setting)"
        example = ""
        if field in EXAMPLES and field not in explained and error["type"] != "url_password":
            example = f"; e.g. {EXAMPLES[field]}"
            explained.add(field)
        parts.append(f"{where}: {problem}{example}")
    return "; ".join(parts)
