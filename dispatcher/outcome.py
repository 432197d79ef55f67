"""What should happen to a delivery: values the pipeline returns and only `settle` acts on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatcher.errors import JobError
    from dispatcher.follow_state import FollowState
    from dispatcher.results import Completion, Result
    from dispatcher.retry import RetryState


@dataclass(frozen=True, slots=True)
class Succeeded:
    """AWS started the job (now or, if `result.deduplicated`, before): publish the result, ack.

    With `follow`, the first follow message goes to its wait queue before the result is published.
    """

    result: Result
    follow: PollLater | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The job ends here: copy it to the dead-letter queue with why, publish a failed result, ack.

    No `result` for a message that was no job (a follow message that a worker did not sign).
    """

    error: JobError
    result: Result | None
    attempts: int


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Publish a copy to the retry queue of `delay_s` carrying `state`, then ack."""

    delay_s: float
    state: RetryState
    error: JobError
    job_id: str


@dataclass(frozen=True, slots=True)
class Requeue:
    """Hand the delivery back to the broker untouched (shutting down before AWS was called)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PollLater:
    """A followed job goes on: publish its next follow message to the wait queue of `delay_s`, ack.

    `progress`, when set, is published first: the job's status changed and the job asked to know.
    """

    state: FollowState
    delay_s: float
    progress: Completion | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """A followed job ended (or its follow did): publish the completion result, ack."""

    completion: Completion
    state: FollowState


Outcome = Succeeded | DeadLetter | RetryLater | Requeue | PollLater | Finished
