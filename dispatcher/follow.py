"""Following a started job to its end (contract section 8): the first follow message and each poll.

A poll reads the job's state from its follow message, takes a token of the Describe call's own
rate limit, calls it once and decides: the job ended (a completion result), or it goes on (the next
follow message, to a wait queue). A poll at or past the follow's timeout is its last: the job
ended, or the follow ends `timed-out` with AWS's last status. Nothing is retried in place: a
throttled, failed or deferred poll waits on the broker like any other, so the poll interval
stretches instead of calls piling up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import structlog

from dispatcher import amqp_values, metrics
from dispatcher.classify import classify_aws_failure
from dispatcher.draining import Waits
from dispatcher.errors import InvalidJob, JobError, RetryableAwsError, ThrottledByAws
from dispatcher.follow_state import FollowState, UnreadableFollow
from dispatcher.operations import JobOutcome
from dispatcher.outcome import DeadLetter, Finished, PollLater, Requeue
from dispatcher.results import FINISHED, PROGRESS, Completion

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.aws import AwsCaller
    from dispatcher.envelope import Job
    from dispatcher.ledger import StartedEntry
    from dispatcher.operations import Companion, Operation
    from dispatcher.outcome import Outcome
    from dispatcher.pipeline import Arrival
    from dispatcher.poll_schedule import PollSchedule
    from dispatcher.ratelimit import Limiter
    from dispatcher.registry import Registry
    from dispatcher.stamps import Stamper

log = structlog.get_logger("dispatcher.follow")


class FollowMarks(Protocol):
    """Which jobs already have a follow chain, so a redelivered start does not begin another."""

    async def followed(self, job_id: str) -> bool:
        """True if a chain for the job was published."""
        ...

    async def mark(self, job_id: str) -> None:
        """Remember that the job's chain was published."""
        ...


@dataclass(frozen=True, slots=True)
class FollowPolicy:
    """The knobs of following, from the settings."""

    schedule: PollSchedule
    max_failures: int
    max_poll_wait_s: float


class Follower:
    """Begins follow chains for started jobs and runs each poll of one to an outcome."""

    def __init__(
        self,
        registry: Registry,
        aws: AwsCaller,
        limiters: Mapping[tuple[str, str], Limiter],
        policy: FollowPolicy,
        stamper: Stamper,
        marks: FollowMarks,
        draining: asyncio.Event,
    ) -> None:
        self._registry = registry
        self._aws = aws
        self._limiters = limiters
        self._policy = policy
        self._stamper = stamper
        self.marks = marks
        self._waits = Waits(draining)

    async def chain_for(
        self, arrival: Arrival, job: Job, started: StartedEntry, *, deduplicated: bool
    ) -> tuple[bool, PollLater | None]:
        """Whether a started job that asked to be followed is followed, and its first follow message.

        A redelivered start whose chain was already published is followed without a new message:
        its completion result comes from that chain. A start answer without the job's identifiers
        (not shaped as botocore's model says) cannot be followed: its result says so by omission.
        """
        companion = job.operation.companion
        if job.follow is None or companion is None:
            return False, None
        if deduplicated and await self.marks.followed(job.job_id):
            return True, None
        aws_job = companion.identifiers(job.request, started.response)
        if aws_job is None:
            log.error("follow_impossible_no_identifiers", describe=companion.operation)
            return False, None
        started_at = datetime.now(UTC)
        state = FollowState(
            job_id=job.job_id,
            service=job.operation.service,
            operation=job.operation.name,
            region=job.region,
            metadata=job.metadata,
            aws_job=aws_job,
            started_at=started_at,
            deadline=started_at + timedelta(seconds=job.follow.timeout_s),
            progress=job.follow.progress,
            reply_to=arrival.reply_to,
            correlation_id=arrival.correlation_id or arrival.message_id or job.job_id,
            traceparent=arrival.traceparent,
        )
        return True, self._later(state, 0)

    async def poll(self, arrival: Arrival) -> Outcome:
        """Poll the job of one follow message once, and decide what comes of it."""
        try:
            state = FollowState.read(arrival.body, arrival.headers, arrival.message_id, self._stamper)
        except UnreadableFollow as exc:
            return DeadLetter(InvalidJob("UnreadableFollow", str(exc)), None, 0)
        structlog.contextvars.bind_contextvars(job_id=state.job_id)
        operation = self._registry.get(state.routing_key)
        if operation is None or operation.companion is None:
            return DeadLetter(InvalidJob("UnreadableFollow", f"no operation {state.routing_key} to follow"), None, 0)
        label = operation.spec.companion_routing_key or ""
        limiter = self._limiters[(label, state.region)]
        if self._waits.draining:  # before asking for a token: a request made and dropped would leak
            return Requeue("shutting down before the poll")
        try:
            grant = await self._waits.unless_draining(asyncio.wait_for(limiter.acquire(), self._policy.max_poll_wait_s))
        except TimeoutError:
            metrics.FOLLOW_POLLS.labels(label, "deferred").inc()
            if _past(state):
                return self._finished(state, JobOutcome.TIMED_OUT)
            return self._later(state, state.step)
        if grant is None:
            return Requeue("shutting down before the poll")
        polled = state.model_copy(update={"polls": state.polls + 1})
        try:
            answer = await self._aws.call(operation.service, operation.companion.operation, state.region, state.aws_job)
        except Exception as exc:  # noqa: BLE001 - classify_aws_failure re-raises what AWS did not answer
            model = self._aws.operation_model(operation.service, operation.companion.operation, state.region)
            error = classify_aws_failure(exc, model, has_idempotency_token=True, retry_unknown_outcome=True)
            if isinstance(error, ThrottledByAws):
                await limiter.on_throttle(grant, error.retry_after_s)
                metrics.THROTTLES.labels(label).inc()
                metrics.RATE_LIMIT_CALLS_PER_SECOND.labels(label, state.region).set(limiter.rate)
            return self._failed(polled, operation, label, error)
        limiter.on_success()
        metrics.RATE_LIMIT_CALLS_PER_SECOND.labels(label, state.region).set(limiter.rate)
        return self._answered(polled, operation, operation.companion, label, answer.response)

    def _answered(
        self, state: FollowState, operation: Operation, companion: Companion, label: str, describe: dict[str, object]
    ) -> Outcome:
        status = companion.status_of(describe)
        if status is None:
            error = RetryableAwsError("NoStatus", f"the {companion.operation} answer had no {companion.status}")
            return self._failed(state, operation, label, error)
        changed = status != state.job_status
        state = state.model_copy(update={"job_status": status, "describe": describe, "failures": 0, "last_error": None})
        outcome = companion.terminal.get(status)
        if outcome is not None:
            metrics.FOLLOW_POLLS.labels(label, "ended").inc()
            warning = f"AWS reported {status}" if status in companion.warnings else None
            return self._finished(state, outcome, warning=warning)
        metrics.FOLLOW_POLLS.labels(label, "running").inc()
        if changed:
            log.info("followed_job_status", job_status=status, polls=state.polls)
        if _past(state):
            return self._finished(state, JobOutcome.TIMED_OUT)
        progress = self._completion(state, PROGRESS) if changed and state.progress else None
        return self._later(state, state.step + 1, progress)

    def _failed(self, state: FollowState, operation: Operation, label: str, error: JobError) -> Outcome:
        """A Describe call that failed: throttles and transient errors never end the follow, its timeout does."""
        last_error = {"code": error.code, "message": error.message}
        if _past(state):
            return self._finished(state.model_copy(update={"last_error": last_error}), JobOutcome.TIMED_OUT)
        if isinstance(error, ThrottledByAws):
            metrics.FOLLOW_POLLS.labels(label, "throttled").inc()
            return self._later(state.model_copy(update={"last_error": last_error}), state.step)
        if isinstance(error, RetryableAwsError):
            metrics.FOLLOW_POLLS.labels(label, "transient").inc()
            log.info("follow_poll_failed", error_code=error.code, polls=state.polls)
            return self._later(state.model_copy(update={"last_error": last_error}), state.step + 1)
        metrics.FOLLOW_POLLS.labels(label, "refused").inc()
        failures = state.failures + 1
        state = state.model_copy(update={"failures": failures, "last_error": last_error})
        log.warning("follow_poll_refused", error_code=error.code, error=error.message, failures=failures)
        if failures >= self._policy.max_failures:
            message = (
                f"{operation.companion.operation if operation.companion else 'the status call'} was refused "
                f"{failures} times in a row, last with {error.code}: {error.message} (check the worker's IAM "
                f"permission for it and that the job exists in {state.region}; the AWS job itself was left alone)"
            )
            return self._finished(state, JobOutcome.UNKNOWN, error={"code": error.code, "message": message})
        return self._later(state, state.step + 1)

    def _later(self, state: FollowState, step: int, progress: Completion | None = None) -> PollLater:
        state = state.model_copy(update={"step": min(step, len(self._policy.schedule.delays_s) - 1)})
        return PollLater(state, self._policy.schedule.wait_for(state.step, _remaining_s(state)), progress)

    def _finished(
        self,
        state: FollowState,
        outcome: JobOutcome,
        *,
        warning: str | None = None,
        error: dict[str, str] | None = None,
    ) -> Finished:
        return Finished(self._completion(state, FINISHED, outcome=outcome, warning=warning, error=error), state)

    def _completion(
        self,
        state: FollowState,
        phase: str,
        *,
        outcome: JobOutcome | None = None,
        warning: str | None = None,
        error: dict[str, str] | None = None,
    ) -> Completion:
        return Completion(
            phase=phase,
            job_id=state.job_id,
            service=state.service,
            operation=state.operation,
            metadata=state.metadata,
            job_status=state.job_status,
            describe=state.describe,
            aws_job=state.aws_job,
            polls=state.polls,
            started_at=state.started_at,
            finished_at=datetime.now(UTC),
            job_outcome=None if outcome is None else str(outcome),
            warning=warning,
            error=error,
            traceparent=amqp_values.optional_short_string(state.traceparent),
        )

    def interrupt_waits(self) -> None:
        """Wake every poll that is only waiting for a token: the worker drains."""
        self._waits.interrupt()


def _past(state: FollowState) -> bool:
    """The follow's timeout has passed: the poll just made was its last."""
    return datetime.now(UTC) >= state.deadline


def _remaining_s(state: FollowState) -> float:
    return (state.deadline - datetime.now(UTC)).total_seconds()
