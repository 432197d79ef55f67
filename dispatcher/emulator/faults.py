"""Fault injection: what can go wrong with one operation, and the dice that decide each call.

Everything here is pure: the clock and the random source come in as arguments, so the policies can
be pinned in unit tests without a server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

if TYPE_CHECKING:
    import random
    from pathlib import Path


class DropPhase(StrEnum):
    """When a dropped call loses its connection, relative to starting the job."""

    BEFORE_START = "before_start"
    AFTER_START = "after_start"


class FaultSettings(BaseModel):
    """The faults of one operation, as written in a faults file or sent to the control API."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_limit_per_s: float | None = Field(default=None, gt=0)
    """Calls per second above which calls are throttled (a token bucket); `None` never throttles."""
    rate_limit_burst: int | None = Field(default=None, ge=1)
    """Calls allowed at once before throttling starts; defaults to the rate, at least 1."""
    error_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of otherwise valid calls answered with `error_code` instead of starting a job."""
    error_code: str | None = None
    """A modeled error of the operation; defaults to its internal server error."""
    latency_ms: float = Field(default=0.0, ge=0)
    """Fixed delay added before every answer."""
    jitter_ms: float = Field(default=0.0, ge=0)
    """A random extra delay, uniform between 0 and this."""
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of calls whose connection is closed without an answer."""
    drop_phase: DropPhase = DropPhase.BEFORE_START
    """Whether a dropped call started its job first, which leaves the caller an unknown outcome."""


_FAULTS_ADAPTER: TypeAdapter[dict[str, FaultSettings]] = TypeAdapter(dict[str, FaultSettings])


def parse_faults(raw: Any) -> dict[str, FaultSettings]:  # noqa: ANN401 - raw JSON of any shape
    """Read `{"<service>.<Operation>": {...settings...}}`; raises `pydantic.ValidationError`."""
    return _FAULTS_ADAPTER.validate_python(raw)


def load_fault_file(path: Path) -> dict[str, FaultSettings]:
    """Read a faults file (JSON, the same shape as `PUT /_emulator/faults`)."""
    return _FAULTS_ADAPTER.validate_json(path.read_bytes())


@dataclass(slots=True)
class TokenBucket:
    """Allows `rate_per_s` calls per second on average and `burst` at once; starts full."""

    rate_per_s: float
    burst: int
    tokens: float = field(init=False)
    updated_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        """Start full, so the first `burst` calls always pass."""
        self.tokens = float(self.burst)

    def try_take(self, now: float) -> bool:
        """Take one token if there is one at monotonic time `now`."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def seconds_until_token(self, now: float) -> float:
        """How long a refused caller should wait before a token is free."""
        self._refill(now)
        return max(0.0, (1 - self.tokens) / self.rate_per_s)

    def _refill(self, now: float) -> None:
        if self.updated_at is not None:
            elapsed_s = max(0.0, now - self.updated_at)
            self.tokens = min(float(self.burst), self.tokens + elapsed_s * self.rate_per_s)
        self.updated_at = now


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What the faults decided for one call, before the emulator looks at its parameters."""

    delay_s: float = 0.0
    throttled: bool = False
    retry_after_s: int = 1
    error_code: str | None = None
    drop_phase: DropPhase | None = None


NO_FAULTS = CallPlan()


@dataclass(slots=True)
class FaultPolicy:
    """The faults of one operation plus their state (the token bucket)."""

    settings: FaultSettings
    default_error_code: str
    bucket: TokenBucket | None = field(init=False)

    def __post_init__(self) -> None:
        """Build the token bucket once, so its state lives as long as these settings."""
        rate = self.settings.rate_limit_per_s
        if rate is None:
            self.bucket = None
        else:
            burst = self.settings.rate_limit_burst or max(1, math.ceil(rate))
            self.bucket = TokenBucket(rate_per_s=rate, burst=burst)

    def plan(self, now: float, rng: random.Random) -> CallPlan:
        """Roll the dice for one call arriving at monotonic time `now`."""
        settings = self.settings
        delay_s = (settings.latency_ms + rng.uniform(0, settings.jitter_ms)) / 1000
        if self.bucket is not None and not self.bucket.try_take(now):
            wait_s = self.bucket.seconds_until_token(now)
            return CallPlan(delay_s=delay_s, throttled=True, retry_after_s=max(1, math.ceil(wait_s)))
        dropped = rng.random() < settings.drop_rate
        failed = rng.random() < settings.error_rate
        return CallPlan(
            delay_s=delay_s,
            error_code=(settings.error_code or self.default_error_code) if failed else None,
            drop_phase=settings.drop_phase if dropped else None,
        )
