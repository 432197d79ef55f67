"""The jobs the emulator lets callers follow: Describe operations, lifecycle settings, started jobs.

Every job a start operation with a companion starts gets a course from the lifecycle settings in
force; its Describe call finds it by the identifiers the registry says it takes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dispatcher.emulator.catalog import companion_operations
from dispatcher.emulator.lifecycle import DEFAULT_KEY, LifecycleSettings, unsupported_shares
from dispatcher.emulator.statuses import status_paths
from dispatcher.emulator.tracking import Identifiers, JobTracker, TrackedJob

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Mapping

    from dispatcher.emulator.catalog import CompanionOperation, EmulatedOperation
    from dispatcher.emulator.course import Moment
    from dispatcher.emulator.jobs import StartedJob
    from dispatcher.emulator.statuses import StatusPaths

MAX_FOLLOWED_JOBS = 200_000
"""Jobs whose status is remembered: more than a benchmark follows at once."""


BUILT_IN_SETTINGS = LifecycleSettings()
"""What `default` is until settings say otherwise: every job succeeds after `DEFAULT_DURATION_S`."""


class LifecycleConfigError(ValueError):
    """Raised for lifecycle settings or a forced status that do not fit the operation."""


class UnknownJobError(LookupError):
    """Raised when the control API names a job the emulator does not remember."""


class FollowedJobs:
    """The Describe operations, the lifecycle settings in force and the jobs started under them."""

    def __init__(
        self,
        operations: Iterable[EmulatedOperation],
        lifecycle: Mapping[str, LifecycleSettings],
        limit: int = MAX_FOLLOWED_JOBS,
    ) -> None:
        """Follow the jobs of those `operations` that have a companion, under the start-up `lifecycle`."""
        companions = companion_operations(operations)
        self.companions = {companion.routing_key: companion for companion in companions}
        self._by_start = {companion.start_routing_key: companion for companion in companions}
        self._paths = {companion.start_routing_key: status_paths(companion) for companion in companions}
        self._tracker = JobTracker(limit)
        self._startup_settings = dict(lifecycle)
        self._settings: dict[str, LifecycleSettings] = {}
        self.replace_settings(lifecycle)

    @property
    def settings(self) -> dict[str, LifecycleSettings]:
        """The settings in force: `default` first, then those of single operations."""
        return {DEFAULT_KEY: BUILT_IN_SETTINGS, **self._settings}

    def replace_settings(self, settings: Mapping[str, LifecycleSettings]) -> None:
        """Put `settings` in force instead of all current ones; raises `LifecycleConfigError`."""
        for key, value in settings.items():
            self._check(key, value)
        self._settings = dict(settings)

    def set_settings(self, key: str, settings: LifecycleSettings) -> None:
        """Put `settings` in force for one start operation (or `default`)."""
        self._check(key, settings)
        self._settings[key] = settings

    def clear_settings(self, key: str) -> None:
        """Let one operation follow the `default` settings again (or `default` the built-in ones)."""
        if key != DEFAULT_KEY:
            self._paths_of(key)
        self._settings.pop(key, None)

    def companion_of(self, routing_key: str) -> CompanionOperation | None:
        """The Describe call of the start operation `routing_key`, if it has one."""
        return self._by_start.get(routing_key)

    def start(self, operation: EmulatedOperation, job: StartedJob, now: float, rng: random.Random) -> None:
        """Give a newly started job its course; a job whose identifiers are missing cannot be followed."""
        companion = self.companion_of(operation.routing_key)
        if companion is None:
            return
        identifiers = companion.companion.identifiers(job.params, job.output)
        if identifiers is None:
            return
        settings = self._settings.get(operation.routing_key) or self._settings.get(DEFAULT_KEY) or BUILT_IN_SETTINGS
        course = settings.course(self._paths[operation.routing_key], now, rng)
        ordered = tuple(identifiers[member] for member, _ in companion.companion.parameters)
        self._tracker.add(TrackedJob(operation.routing_key, job.job_id, ordered, job.params, job.output, course))

    def find(self, companion: CompanionOperation, params: Mapping[str, Any]) -> TrackedJob | None:
        """The job a Describe call with `params` names, if remembered."""
        identifiers: Identifiers = tuple(str(params.get(member)) for member, _ in companion.companion.parameters)
        return self._tracker.find(companion.start_routing_key, identifiers)

    def moment(self, job: TrackedJob, now: float) -> Moment:
        """Where `job` is at epoch time `now`."""
        return job.moment(now, self._by_start[job.routing_key].companion.terminal)

    def force(self, routing_key: str, job_id: str, status: str, now: float) -> TrackedJob:
        """Hold a job in `status` from `now` on; raises `UnknownJobError` or `LifecycleConfigError`."""
        companion = self.companion_of(routing_key)
        job = self._tracker.get(routing_key, job_id)
        if companion is None or job is None:
            raise UnknownJobError(f"the emulator remembers no job {job_id!r} of {routing_key!r}")
        if status not in companion.statuses:
            allowed = ", ".join(companion.statuses)
            raise LifecycleConfigError(f"{companion.routing_key} has no status {status!r} (it has {allowed})")
        job.forced = (status, now)
        return job

    def to_json(self, now: float, routing_key: str | None = None) -> list[dict[str, Any]]:
        """The remembered jobs, oldest first, as the control API lists them."""
        return [self.job_json(job, now) for job in self._tracker.jobs(routing_key)]

    def job_json(self, job: TrackedJob, now: float) -> dict[str, Any]:
        """One job: its ids, its Describe identifiers, its status and when it started and ended."""
        moment = self.moment(job, now)
        members = [member for member, _ in self._by_start[job.routing_key].companion.parameters]
        return {
            "routing_key": job.routing_key,
            "job_id": job.job_id,
            "identifiers": dict(zip(members, job.identifiers, strict=True)),
            "status": moment.status,
            "fate": job.course.fate.value,
            "forced": job.forced is not None,
            "started_at": _iso(moment.created_at),
            "ended_at": None if moment.ended_at is None else _iso(moment.ended_at),
        }

    def reset(self) -> None:
        """Forget every job and put back the start-up settings."""
        self._tracker.clear()
        self.replace_settings(self._startup_settings)

    def _check(self, key: str, settings: LifecycleSettings) -> None:
        if key == DEFAULT_KEY:
            return
        unsupported = unsupported_shares(settings, self._paths_of(key))
        if unsupported:
            raise LifecycleConfigError(f"{key} has no status for {' or '.join(unsupported)}: leave it 0")

    def _paths_of(self, key: str) -> StatusPaths:
        paths = self._paths.get(key)
        if paths is None:
            known = ", ".join([DEFAULT_KEY, *self._paths])
            raise LifecycleConfigError(f"no followed operation {key!r} (lifecycle settings take {known})")
        return paths


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
