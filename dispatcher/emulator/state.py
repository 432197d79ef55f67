"""Everything one running emulator holds: its operations, their faults, the jobs and the calls."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from dispatcher.emulator.faults import NO_FAULTS, CallPlan, FaultPolicy, FaultSettings
from dispatcher.emulator.followed import FollowedJobs
from dispatcher.emulator.jobs import CallLog, JobStore

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from dispatcher.emulator.catalog import EmulatedOperation, ModeledOperation
    from dispatcher.emulator.lifecycle import LifecycleSettings

CALL_LOG_LIMIT = 10_000
"""Calls kept in the log; older ones are evicted (`total` still counts them)."""
MAX_REMEMBERED_TOKENS = 100_000
"""Idempotency tokens remembered; AWS forgets them after hours too."""


class FaultConfigError(ValueError):
    """Raised when faults name an operation the emulator does not serve or an unmodeled error."""


class EmulatorState:
    """The state the request handlers and the control API share (one event loop, no locks)."""

    def __init__(
        self,
        operations: Iterable[EmulatedOperation],
        faults: Mapping[str, FaultSettings],
        lifecycle: Mapping[str, LifecycleSettings] | None = None,
    ) -> None:
        """Serve `operations` and their Describe calls with the start-up `faults` and `lifecycle`.

        Both map routing keys to settings; raises `FaultConfigError` or `LifecycleConfigError`.
        """
        self.operations = {operation.routing_key: operation for operation in operations}
        self.followed = FollowedJobs(self.operations.values(), lifecycle or {})
        self.jobs = JobStore(MAX_REMEMBERED_TOKENS)
        self.calls = CallLog(CALL_LOG_LIMIT)
        self.arrived: Counter[str] = Counter()
        """Calls by routing key as they arrive, before any added latency: a test sees a call in flight."""
        self.rng = random.Random()  # noqa: S311 - dice for faults, not secrets; tests may seed it
        self._startup_faults = dict(faults)
        self._policies: dict[str, FaultPolicy] = {}
        self.replace_faults(faults)

    @property
    def faults(self) -> dict[str, FaultSettings]:
        """The faults in force, by routing key."""
        return {key: policy.settings for key, policy in self._policies.items()}

    def replace_faults(self, faults: Mapping[str, FaultSettings]) -> None:
        """Put `faults` in force instead of all current ones; raises `FaultConfigError`."""
        self._policies = {key: self._policy(key, settings) for key, settings in faults.items()}

    def set_operation_faults(self, routing_key: str, settings: FaultSettings) -> None:
        """Put `settings` in force for one operation, with a fresh token bucket."""
        self._policies[routing_key] = self._policy(routing_key, settings)

    def clear_operation_faults(self, routing_key: str) -> None:
        """Let one operation answer without faults."""
        self._operation(routing_key)
        self._policies.pop(routing_key, None)

    def plan(self, routing_key: str, now: float) -> CallPlan:
        """The faults' decision for a call of `routing_key` arriving at monotonic time `now`."""
        self.arrived[routing_key] += 1
        policy = self._policies.get(routing_key)
        return NO_FAULTS if policy is None else policy.plan(now, self.rng)

    def reset(self) -> None:
        """Back to start-up: no jobs, no calls, the start-up faults and lifecycle settings."""
        self.jobs.clear()
        self.followed.reset()
        self.calls.clear()
        self.arrived.clear()
        self.replace_faults(self._startup_faults)

    def _operation(self, routing_key: str) -> ModeledOperation:
        """A start operation or a Describe call, which take faults alike."""
        operation = self.operations.get(routing_key) or self.followed.companions.get(routing_key)
        if operation is None:
            known = ", ".join([*self.operations, *self.followed.companions])
            msg = f"the emulator serves no operation {routing_key!r} (it serves {known})"
            raise FaultConfigError(msg)
        return operation

    def _policy(self, routing_key: str, settings: FaultSettings) -> FaultPolicy:
        operation = self._operation(routing_key)
        code = settings.error_code
        if code is not None and code not in operation.modeled_error_codes:
            modeled = ", ".join(operation.modeled_error_codes)
            msg = f"{routing_key} models no error {code!r} (it models {modeled})"
            raise FaultConfigError(msg)
        return FaultPolicy(settings, default_error_code=operation.internal_error_code)
