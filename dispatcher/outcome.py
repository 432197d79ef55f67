"""What should happen to a delivery: values the pipeline returns and only `settle` acts on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatcher.errors import JobError
    from dispatcher.results import Result
    from dispatcher.retry import RetryState


@dataclass(frozen=True, slots=True)
class Succeeded:
    """AWS started the job (now or, if `result.deduplicated`, before): publish the result, ack."""

    result: Result


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The job ends here: copy it to the dead-letter queue with why, publish a failed result, ack."""

    error: JobError
    result: Result
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


Outcome = Succeeded | DeadLetter | RetryLater | Requeue
