"""Every started job with its course, found by the identifiers a Describe call names.

Bounded like the token memory: the oldest jobs are forgotten first, and a Describe of a forgotten
job answers `ResourceNotFoundException`, as AWS does for jobs it no longer keeps.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dispatcher.emulator.course import forced_moment

if TYPE_CHECKING:
    from collections.abc import Container, Iterator

    from dispatcher.emulator.course import Course, Moment

Identifiers = tuple[str, ...]
"""The values of a Describe request's identifying members, in the order of `Companion.parameters`."""


@dataclass(slots=True)
class TrackedJob:
    """A started job: what its start call took and answered, and its course."""

    routing_key: str
    """The start operation's routing key."""
    job_id: str
    identifiers: Identifiers
    params: dict[str, Any]
    output: dict[str, Any]
    course: Course
    forced: tuple[str, float] | None = None
    """A status set through the control API and when, overriding the course from then on."""

    def moment(self, now: float, terminal: Container[str]) -> Moment:
        """Its status at epoch time `now`; `terminal` tells which statuses end a job."""
        if self.forced is None:
            return self.course.at(now)
        status, forced_at = self.forced
        return forced_moment(self.course.at(forced_at), status, forced_at, terminal=status in terminal)


class JobTracker:
    """The newest `limit` jobs, by routing key and job id, and by their Describe identifiers."""

    def __init__(self, limit: int) -> None:
        """Keep at most `limit` jobs."""
        self._limit = limit
        self._jobs: OrderedDict[tuple[str, str], TrackedJob] = OrderedDict()
        self._by_identifiers: dict[tuple[str, Identifiers], TrackedJob] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: TrackedJob) -> None:
        """Remember `job`, forgetting the oldest beyond the limit."""
        self._jobs[job.routing_key, job.job_id] = job
        self._by_identifiers[job.routing_key, job.identifiers] = job
        if len(self._jobs) > self._limit:
            _, oldest = self._jobs.popitem(last=False)
            self._by_identifiers.pop((oldest.routing_key, oldest.identifiers), None)

    def get(self, routing_key: str, job_id: str) -> TrackedJob | None:
        """The job `job_id` of the start operation `routing_key`, if remembered."""
        return self._jobs.get((routing_key, job_id))

    def find(self, routing_key: str, identifiers: Identifiers) -> TrackedJob | None:
        """The job of `routing_key` a Describe call with these identifiers names, if remembered."""
        return self._by_identifiers.get((routing_key, identifiers))

    def jobs(self, routing_key: str | None = None) -> Iterator[TrackedJob]:
        """The remembered jobs, oldest first, optionally of one start operation."""
        return (job for job in self._jobs.values() if routing_key is None or job.routing_key == routing_key)

    def clear(self) -> None:
        """Forget every job."""
        self._jobs.clear()
        self._by_identifiers.clear()
