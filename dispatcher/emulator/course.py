"""Where a job is on its status path at a given time, computed from the clock when asked.

Nothing runs per job between calls: a course is its path, its start time and its duration, and a
status is read off it (the benchmark follows tens of thousands of jobs at once).
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.emulator.statuses import Fate


@dataclass(frozen=True, slots=True)
class Moment:
    """A job's status at one time, and when the times a Describe answer reports happened."""

    status: str
    created_at: float
    changed_at: float
    """When the job entered `status`."""
    running_since: float | None
    """When it left its first status (AWS's `StartedAt`); `None` while still in it."""
    ended_at: float | None
    """When it reached a terminal status; `None` while it is going."""


@dataclass(frozen=True, slots=True)
class Course:
    """The statuses a job passes through from `created_at`, evenly spread over `duration_s`.

    A job that ends spends `duration_s` in its path's statuses before the last (terminal) one; a
    job that never ends moves through its path at the same pace and stays in its last status.
    """

    path: tuple[str, ...]
    fate: Fate
    created_at: float
    duration_s: float

    @property
    def ends(self) -> bool:
        """Whether the last status of the path is terminal."""
        return self.fate is not Fate.NEVER_ENDS

    def at(self, now: float) -> Moment:
        """Where the job is at epoch time `now` (times before its start read as its start)."""
        going = len(self.path) - 1 if self.ends else len(self.path)
        step_s = self.duration_s / going if going else 0.0
        elapsed_s = max(0.0, now - self.created_at)
        index = len(self.path) - 1 if step_s == 0 else min(int(elapsed_s / step_s), len(self.path) - 1)
        if self.ends and elapsed_s >= self.duration_s:
            index = len(self.path) - 1
        ended = self.ends and index == len(self.path) - 1
        return Moment(
            status=self.path[index],
            created_at=self.created_at,
            changed_at=self.created_at + (self.duration_s if ended else index * step_s),
            running_since=self.created_at + step_s if index > 0 else None,
            ended_at=self.created_at + self.duration_s if ended else None,
        )


def forced_moment(natural: Moment, status: str, forced_at: float, *, terminal: bool) -> Moment:
    """The moment of a job forced into `status` at `forced_at`, `natural` being where it was then.

    A forced terminal status ends the job at `forced_at`; any other status leaves it going.
    """
    if natural.running_since is not None:
        running_since: float | None = natural.running_since
    else:
        running_since = None if status == natural.status else forced_at
    return Moment(
        status=status,
        created_at=natural.created_at,
        changed_at=forced_at,
        running_since=running_since,
        ended_at=forced_at if terminal else None,
    )
