"""The path of one job: decode, check the ledger, wait for a token, call AWS, decide the outcome.

It returns an `Outcome` and never touches the broker: `settle` acts on what it returns.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from dispatcher import metrics
from dispatcher.classify import classify_aws_failure
from dispatcher.draining import Waits
from dispatcher.errors import DuplicateJobId, ExpiredJob, JobError, RetryableAwsError, ThrottledByAws, UnknownOutcome
from dispatcher.ledger import Claim, ClaimState, Finish, LedgerUnavailable, StartedEntry
from dispatcher.outcome import DeadLetter, Outcome, Requeue, RetryLater, Succeeded
from dispatcher.results import FAILED, SUCCEEDED, Result
from dispatcher.retry import RetrySchedule, RetryState, jitter_s
from dispatcher.triage import job_id_of, latest_death, triage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.aws import AwsCaller
    from dispatcher.envelope import Decoder, Job
    from dispatcher.follow import Follower
    from dispatcher.ledger import Ledger
    from dispatcher.ratelimit import Limiter

log = structlog.get_logger("dispatcher.pipeline")
LEDGER_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the pipeline reads of a delivery: no channel, nothing to settle with."""

    body: bytes
    routing_key: str
    message_id: str | None
    headers: dict[str, object]
    received_at: datetime
    state: RetryState = field(default_factory=RetryState)  # what earlier deliveries did, as a worker signed it
    traceparent: str | None = None
    reply_to: str | None = None  # where results also go; never one of the dispatcher's own queues
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class TriageQueues:
    """The queues whose dead letters triage believes: each operation's work queue and follow queue."""

    job_queues: Mapping[str, str]  # queue name -> routing key
    follow_queues: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """The knobs of the pipeline, from the settings."""

    schedule: RetrySchedule
    retry_jitter: float
    retry_unknown_outcome: bool
    max_throttle_wait_s: float


class Pipeline:
    """Runs one delivery to an outcome.

    `draining` is set when the worker shuts down: a job still waiting for a token is handed
    back to the broker, but a call already sent to AWS is always waited for and settled.
    """

    def __init__(
        self,
        decoder: Decoder,
        aws: AwsCaller,
        limiters: Mapping[tuple[str, str], Limiter],
        ledger: Ledger,
        policy: JobPolicy,
        draining: asyncio.Event,
        follower: Follower | None = None,
        triage_queues: TriageQueues | None = None,
    ) -> None:
        self._decoder = decoder
        self._follower = follower
        self._triage_queues = triage_queues or TriageQueues({}, {})
        # Every queue whose dead letters triage believes, merged once rather than per dead letter.
        self._believed = {**self._triage_queues.job_queues, **self._triage_queues.follow_queues}
        self._aws = aws
        self._limiters = limiters
        self._ledger = ledger
        self._policy = policy
        self._draining = draining
        self._waits = Waits(draining)

    async def run(self, arrival: Arrival) -> Outcome:
        """Decode and start the job; bad input and AWS refusals become dead letters."""
        state = arrival.state
        try:
            job = self._decoder.decode(arrival.body, arrival.routing_key, arrival.message_id, expire=False)
        except JobError as error:
            # The body's job_id, when it has a usable one, names the result of a job that failed to decode.
            body_job_id = job_id_of(arrival.body, self._decoder.max_message_bytes)
            return _dead_letter(replace(arrival, message_id=body_job_id or arrival.message_id), None, error, state)
        structlog.contextvars.bind_contextvars(job_id=job.job_id)
        return await self._attempt(arrival, job, state)

    def triage(self, arrival: Arrival, *, dead_lettered: bool) -> DeadLetter:
        """A dead letter the broker made (or an unroutable job), stamped like the pipeline's own.

        Only the broker's dead-lettering delivers through the triage exchange; a message that
        reached triage through the alternate exchange carries nothing but what its publisher wrote.
        """
        error = triage(arrival.headers, arrival.routing_key, self._believed, dead_lettered=dead_lettered)
        follow_queues = self._triage_queues.follow_queues
        if dead_lettered and latest_death(arrival.headers.get("x-death")).get("queue") in follow_queues:
            # A follow message, not a job: its job was started, so no failed result may say otherwise.
            return DeadLetter(error, None, 0)
        body_job_id = job_id_of(arrival.body, self._decoder.max_message_bytes)
        return _dead_letter(replace(arrival, message_id=body_job_id or arrival.message_id), None, error, arrival.state)

    async def _attempt(self, arrival: Arrival, job: Job, state: RetryState) -> Outcome:
        label = job.operation.routing_key
        limiter = self._limiters[(label, job.region)]
        throttled_s = 0.0
        while True:
            asked_at = asyncio.get_running_loop().time()
            grant = await self._waits.unless_draining(limiter.acquire())
            if grant is None:
                return Requeue("shutting down before AWS was called")
            waited_s = asyncio.get_running_loop().time() - asked_at
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(label).observe(waited_s)
            claim = await self._before_call(arrival, job, state)
            if not isinstance(claim, Claim):
                return claim
            try:
                entry = await self._call(job, state, claim)
            except ThrottledByAws as error:
                state = state.called(error.code)
                # Retry-After pauses the whole operation in its limiter, not this job alone:
                # jobs that each slept it would all wake at once and be throttled together.
                await limiter.on_throttle(grant, error.retry_after_s)
                metrics.THROTTLES.labels(label).inc()
                metrics.RATE_LIMIT_CALLS_PER_SECOND.labels(label, job.region).set(limiter.rate)
                throttled_s += waited_s
                if throttled_s < self._policy.max_throttle_wait_s and not self._draining.is_set():
                    continue
                # Throttled for long: wait on the broker, without spending the job's retry budget.
                return await self._retry(job, state, error, self._policy.schedule.delays_s[0], spend=False)
            except RetryableAwsError as error:
                state = state.called(error.code)
                delay_s = self._policy.schedule.delay_for(state.retries)
                if delay_s is None:
                    return _dead_letter(arrival, job, _exhausted(error, state), state)
                return await self._retry(job, state, error, delay_s, spend=True)
            except JobError as error:
                return _dead_letter(arrival, job, error, state.called(error.code))
            limiter.on_success()
            metrics.RATE_LIMIT_CALLS_PER_SECOND.labels(label, job.region).set(limiter.rate)
            return await self._started(arrival, job, entry, deduplicated=False)

    async def _started(self, arrival: Arrival, job: Job, started: StartedEntry, *, deduplicated: bool) -> Succeeded:
        """AWS started the job: its result, and the first follow message if it is followed."""
        result = _result(arrival, job, SUCCEEDED, started.attempts, started=started, deduplicated=deduplicated)
        if job.follow is None or self._follower is None:
            return Succeeded(result)
        following, chain = await self._follower.chain_for(arrival, job, started, deduplicated=deduplicated)
        return Succeeded(replace(result, following=following), chain)

    async def _before_call(self, arrival: Arrival, job: Job, state: RetryState) -> Claim | Outcome:
        """The ledger claim for a call now, or the outcome that makes a call needless or unsafe.

        The ledger is asked before `not_after`: a job AWS already started (its ack lost, say) gets
        its result again, not a failed `expired` one.
        """
        try:
            claim = await self._claim(job)
        except LedgerUnavailable as error:
            return await self._retry(job, state, error, self._policy.schedule.delays_s[0], spend=False)
        if claim.state is not ClaimState.CLAIMED:
            return await self._known_outcome(arrival, job, state, claim)
        if job.expired(datetime.now(UTC)):
            await self._ledger.finish(job, claim, Finish.CLEAR)
            expired = ExpiredJob("JobExpired", f"not_after {job.not_after} passed before AWS could be called")
            return _dead_letter(arrival, job, expired, state)
        return claim

    async def _claim(self, job: Job) -> Claim:
        """Claim the job in the ledger, waiting out a call for it in flight elsewhere."""
        while (claim := await self._ledger.claim(job)).state is ClaimState.BUSY:  # noqa: ASYNC110 - state is in Redis
            await asyncio.sleep(LEDGER_POLL_S)
        return claim

    async def _known_outcome(self, arrival: Arrival, job: Job, state: RetryState, claim: Claim) -> Outcome:
        """What the ledger already knows decides the job without calling AWS."""
        if claim.state is ClaimState.STARTED and claim.started is not None:
            log.info("already_started_republishing_result")
            return await self._started(arrival, job, claim.started, deduplicated=True)
        if claim.state is ClaimState.MISMATCH:
            error: JobError = DuplicateJobId(
                "DuplicateJobId",
                f"job_id {job.job_id} was already used for a different request; a new job needs a new job_id",
            )
        else:
            error = UnknownOutcome(
                "WorkerDiedMidCall",
                f"a worker was calling AWS for this job {claim.age_s:.0f}s ago and never finished; "
                "this operation has no idempotency token, so calling again could start a second job "
                "(check AWS, then replay it with a new job_id or drop it)",
            )
        return _dead_letter(arrival, job, error, state)

    async def _call(self, job: Job, state: RetryState, claim: Claim) -> StartedEntry:
        """Call AWS once and finish the ledger claim with what came of it."""
        label = job.operation.routing_key
        how, entry = Finish.KEEP, None  # a bug or a cancellation mid-call: nobody knows
        try:
            answer = await self._aws.start(job)
        except Exception as exc:
            metrics.AWS_CALL_SECONDS.labels(label, "error").observe(0)
            model = self._aws.operation_model(job.operation.service, job.operation.name, job.region)
            error = classify_aws_failure(
                exc,
                model,
                has_idempotency_token=job.operation.idempotency_token_member is not None,
                retry_unknown_outcome=self._policy.retry_unknown_outcome,
            )
            how = Finish.KEEP if isinstance(error, UnknownOutcome) else Finish.CLEAR
            raise error from exc
        else:
            metrics.AWS_CALL_SECONDS.labels(label, str(answer.http_status)).observe(answer.duration_s)
            how, entry = Finish.STARTED, StartedEntry(answer.response, answer.request_id, state.attempts + 1)
            return entry
        finally:
            await self._ledger.finish(job, claim, how, entry)

    async def _retry(self, job: Job, state: RetryState, error: JobError, delay_s: float, *, spend: bool) -> Outcome:
        """A durable retry; the short jitter pause is cut short if the worker is shutting down."""
        await self._waits.unless_draining(asyncio.sleep(jitter_s(delay_s, self._policy.retry_jitter), result=True))
        return RetryLater(delay_s, state.spent() if spend else state, error, job.job_id)

    def interrupt_waits(self) -> None:
        """Wake every job that is only waiting (for a token, a pause or jitter): the worker drains."""
        self._waits.interrupt()


def _dead_letter(arrival: Arrival, job: Job | None, error: JobError, state: RetryState) -> DeadLetter:
    return DeadLetter(error, _result(arrival, job, FAILED, state.attempts, error=error), state.attempts)


def _result(
    arrival: Arrival,
    job: Job | None,
    outcome: str,
    attempts: int,
    *,
    started: StartedEntry | None = None,
    error: JobError | None = None,
    deduplicated: bool = False,
) -> Result:
    service, _, operation = arrival.routing_key.partition(".")
    request_id = started.aws_request_id if started else error.aws_request_id if error else None
    return Result(
        job_id=job.job_id if job else arrival.message_id,
        service=job.operation.service if job else service or None,
        operation=job.operation.name if job else operation or None,
        outcome=outcome,
        started_at=arrival.received_at,
        finished_at=datetime.now(UTC),
        attempts=attempts,
        metadata=job.metadata if job else {},
        response=started.response if started else None,
        error=error,
        aws_request_id=request_id,
        deduplicated=deduplicated,
        traceparent=arrival.traceparent,
    )


def _exhausted(error: RetryableAwsError, state: RetryState) -> RetryableAwsError:
    message = (
        f"gave up after {state.attempts} attempts; error codes in order: {', '.join(state.error_codes)}; "
        f"last: {error.message}"
    )
    return RetryableAwsError(error.code, message, aws_request_id=error.aws_request_id, http_status=error.http_status)
