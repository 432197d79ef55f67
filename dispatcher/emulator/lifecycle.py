"""Lifecycle settings: how long emulated jobs run and how they end, per start operation.

Settings are read from a file at start-up (`--lifecycle`) or sent to the control API, keyed by the
start operation's routing key or `default`. They decide each job's course when it starts; changing
them leaves jobs already started alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from dispatcher.emulator.course import Course
from dispatcher.emulator.statuses import Fate

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping
    from pathlib import Path

    from dispatcher.emulator.statuses import StatusPaths

DEFAULT_KEY = "default"
"""The settings of every operation that has none of its own."""
DEFAULT_DURATION_S = 5.0
"""Long enough to watch a job move in a demo, short enough not to wait for it."""


class DurationRange(BaseModel):
    """A duration drawn uniformly between `min` and `max` seconds for each job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: float = Field(ge=0)
    max: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            msg = f"min ({self.min}) is above max ({self.max})"
            raise ValueError(msg)
        return self


class LifecycleSettings(BaseModel):
    """How the jobs of one operation go: their duration and the shares of each way to end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration_s: Annotated[float, Field(ge=0)] | DurationRange = DEFAULT_DURATION_S
    """Seconds from the start to the terminal status: a number, or `{"min": .., "max": ..}`."""
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of jobs that end failed."""
    cancel_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of jobs that end cancelled (only operations with a cancelled status)."""
    never_end_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of jobs that stay in their running status forever."""
    warning_rate: float = Field(default=0.0, ge=0, le=1)
    """Share of jobs that succeed with a warning (only operations with a warning status)."""

    @model_validator(mode="after")
    def _shares_fit(self) -> Self:
        total = self.failure_rate + self.cancel_rate + self.never_end_rate + self.warning_rate
        if total > 1:
            msg = f"the shares of failed, cancelled, never-ending and warning jobs add up to {total:g}, above 1"
            raise ValueError(msg)
        return self

    def shares(self) -> dict[Fate, float]:
        """The share of each fate but plain success, which takes the rest."""
        return {
            Fate.FAILED: self.failure_rate,
            Fate.CANCELLED: self.cancel_rate,
            Fate.NEVER_ENDS: self.never_end_rate,
            Fate.WARNING: self.warning_rate,
        }

    def course(self, paths: StatusPaths, created_at: float, rng: random.Random) -> Course:
        """Roll the dice for one job starting at `created_at`.

        A fate the operation cannot have (a share of the `default` settings) becomes a success.
        """
        roll = rng.random()
        fate = Fate.SUCCEEDED
        for candidate, share in self.shares().items():
            if roll < share:
                fate = candidate
                break
            roll -= share
        if fate not in paths.fates:
            fate = Fate.SUCCEEDED if Fate.SUCCEEDED in paths.fates else Fate.NEVER_ENDS
        duration = self.duration_s
        duration_s = rng.uniform(duration.min, duration.max) if isinstance(duration, DurationRange) else duration
        return Course(paths.path(fate), fate, created_at, duration_s)


_LIFECYCLE_ADAPTER: TypeAdapter[dict[str, LifecycleSettings]] = TypeAdapter(dict[str, LifecycleSettings])


def parse_lifecycle(raw: Any) -> dict[str, LifecycleSettings]:  # noqa: ANN401 - raw JSON of any shape
    """Read `{"default" | "<service>.<Operation>": {...settings...}}`; raises `pydantic.ValidationError`."""
    return _LIFECYCLE_ADAPTER.validate_python(raw)


def load_lifecycle_file(path: Path) -> dict[str, LifecycleSettings]:
    """Read a lifecycle file (JSON, the same shape as `PUT /_emulator/lifecycle`)."""
    return _LIFECYCLE_ADAPTER.validate_json(path.read_bytes())


def unsupported_shares(settings: LifecycleSettings, paths: StatusPaths) -> list[str]:
    """The settings' shares of fates the operation cannot have, by setting name."""
    names = {Fate.CANCELLED: "cancel_rate", Fate.WARNING: "warning_rate"}
    return [
        names[fate]
        for fate, share in settings.shares().items()
        if share > 0 and fate in names and fate not in paths.fates
    ]


def lifecycle_json(settings: Mapping[str, LifecycleSettings]) -> dict[str, Any]:
    """The settings in force as the control API answers them: every value, `default` first."""
    return {key: value.model_dump(mode="json") for key, value in settings.items()}
