"""Every branch of the pipeline's attempt loop, decided without a broker: milliseconds each.

A real `Pipeline` with the real decoder, `LocalLedger` and classification; AWS is a script of
answers and real botocore errors, the limiter a fake whose waits are scripted (the real adaptive
limiter, with a clock of the test's own, where its reaction to a throttle is the point).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from botocore.exceptions import EndpointConnectionError, ParamValidationError

from dispatcher.envelope import Decoder
from dispatcher.errors import Category, ThrottledByAws
from dispatcher.examples import example_job
from dispatcher.ledger import ClaimState, Finish, LedgerUnavailable, LocalLedger, StartedEntry
from dispatcher.outcome import DeadLetter, Requeue, RetryLater, Succeeded
from dispatcher.pipeline import Arrival, JobPolicy, Pipeline
from dispatcher.ratelimit import AdaptiveLimiter, Limiters
from dispatcher.registry import default_registry
from dispatcher.results import to_json
from dispatcher.retry import RetrySchedule, RetryState
from tests.unit.fakes import FakeClock, FakeLimiter, ScriptedAws, answer, client_error

REGISTRY = default_registry()
DECODER = Decoder(REGISTRY, "us-east-1", (), 256 * 1024)
M2 = "m2.StartBatchJob"  # no idempotency token
LOOKOUT = "lookoutequipment.StartDataIngestionJob"  # has ClientToken
DELAYS = (1.0, 5.0)  # three attempts in all
STARTED = {"executionId": "exec-1"}


def make_pipeline(
    aws,
    *,
    limiter=None,
    ledger=None,
    max_throttle_wait_s=1.0,
    jitter=0.0,
    delays=DELAYS,
    draining=None,
    retry_unknown_outcome=False,
):
    """A real pipeline around the fakes; every operation shares `limiter`."""
    limiter = limiter if limiter is not None else FakeLimiter()
    policy = JobPolicy(
        schedule=RetrySchedule(delays),
        retry_jitter=jitter,
        retry_unknown_outcome=retry_unknown_outcome,
        max_throttle_wait_s=max_throttle_wait_s,
    )
    return Pipeline(
        DECODER,
        aws,
        Limiters(lambda _key, _region: limiter),
        ledger if ledger is not None else LocalLedger(ttl_s=3600),
        policy,
        draining if draining is not None else asyncio.Event(),
    )


def arrival(routing_key=M2, job_id="job-1", *, state=None, body=None, message_id=None, **extra):
    """A delivery of the example job of `routing_key`."""
    if body is None:
        body = orjson.dumps(example_job(routing_key, job_id, **extra))
    return Arrival(
        body=body,
        routing_key=routing_key,
        message_id=message_id,
        headers={},
        received_at=datetime.now(UTC),
        state=state or RetryState(),
    )


async def test_a_started_job_succeeds_with_the_aws_answer():
    """AWS answers: the result carries the response and request id; the limiter hears of the success."""
    aws = ScriptedAws([answer(STARTED, "req-9")])
    limiter = AdaptiveLimiter(ceiling=50.0, burst=5, clock=FakeClock())
    outcome = await make_pipeline(aws, limiter=limiter).run(arrival(metadata={"team": "a"}))

    assert type(outcome) is Succeeded
    assert outcome.follow is None
    result = outcome.result
    assert (result.job_id, result.service, result.operation) == ("job-1", "m2", "StartBatchJob")
    assert (result.outcome, result.attempts, result.deduplicated) == ("succeeded", 1, False)
    assert (result.response, result.aws_request_id, result.metadata) == (STARTED, "req-9", {"team": "a"})
    assert result.error is None
    assert limiter.rate == 50.0
    [(service, operation, region, request)] = aws.calls
    assert (service, operation, region) == ("m2", "StartBatchJob", "us-east-1")
    assert request["applicationId"] == "app-billing"


@dataclass(frozen=True)
class Expect:
    """What one AWS failure must come to."""

    kind: type
    code: str
    category: Category
    attempts: int
    delay_s: float | None = None  # RetryLater only
    retries: int | None = None  # RetryLater only: the budget spent after it
    http_status: int | None = None


X500 = "InternalServerException"
FAILURES = [
    pytest.param(
        M2,
        client_error(X500, 500),
        RetryState(),
        Expect(RetryLater, X500, Category.EXHAUSTED, 1, delay_s=1.0, retries=1, http_status=500),
        id="transient-first-retry",
    ),
    pytest.param(
        M2,
        client_error(X500, 500),
        RetryState(1, 1, (X500,)),
        Expect(RetryLater, X500, Category.EXHAUSTED, 2, delay_s=5.0, retries=2, http_status=500),
        id="transient-second-retry",
    ),
    pytest.param(
        M2,
        client_error("ServiceUnavailableException", 503),
        RetryState(2, 2, (X500, X500)),
        Expect(DeadLetter, "ServiceUnavailableException", Category.EXHAUSTED, 3, http_status=503),
        id="transient-exhausted",
    ),
    pytest.param(
        M2,
        client_error("ValidationException", 400),
        RetryState(),
        Expect(DeadLetter, "ValidationException", Category.REJECTED, 1, http_status=400),
        id="rejected-by-aws",
    ),
    pytest.param(
        M2,
        client_error("AccessDeniedException", 403),
        RetryState(1, 1, (X500,)),
        Expect(DeadLetter, "AccessDeniedException", Category.REJECTED, 2, http_status=403),
        id="rejected-after-a-retry",
    ),
    pytest.param(
        M2,
        ParamValidationError(report="applicationId is wrong"),
        RetryState(),
        Expect(DeadLetter, "ParamValidationError", Category.INVALID, 1),
        id="botocore-refused-params",
    ),
    pytest.param(
        M2,
        TimeoutError(),
        RetryState(),
        Expect(DeadLetter, "CallTimeout", Category.UNKNOWN_OUTCOME, 1),
        id="lost-answer-without-token-unknown-outcome",
    ),
    pytest.param(
        LOOKOUT,
        TimeoutError(),
        RetryState(),
        Expect(RetryLater, "CallTimeout", Category.EXHAUSTED, 1, delay_s=1.0, retries=1),
        id="lost-answer-with-token-retried",
    ),
    pytest.param(
        M2,
        EndpointConnectionError(endpoint_url="https://m2.us-east-1.amazonaws.com"),
        RetryState(),
        Expect(RetryLater, "EndpointConnectionError", Category.EXHAUSTED, 1, delay_s=1.0, retries=1),
        id="never-connected-retried",
    ),
]


@pytest.mark.parametrize(("routing_key", "error", "state", "expect"), FAILURES)
async def test_an_aws_failure_decides_the_outcome(routing_key, error, state, expect):
    """Each kind of failure of one call ends as its retry or dead letter, with the state it carries."""
    aws = ScriptedAws([error])
    outcome = await make_pipeline(aws).run(arrival(routing_key, state=state))

    assert type(outcome) is expect.kind
    assert len(aws.calls) == 1
    assert (outcome.error.code, outcome.error.category) == (expect.code, expect.category)
    assert outcome.error.http_status == expect.http_status
    if isinstance(outcome, RetryLater):
        assert outcome.delay_s == expect.delay_s
        assert outcome.job_id == "job-1"
        assert (outcome.state.retries, outcome.state.attempts) == (expect.retries, expect.attempts)
        assert outcome.state.error_codes == (*state.error_codes, expect.code)
    else:
        assert outcome.attempts == expect.attempts
        result = outcome.result
        assert (result.job_id, result.outcome, result.attempts) == ("job-1", "failed", expect.attempts)
        assert result.error is outcome.error
        assert result.response is None


async def test_exhausted_names_every_error_code_in_order():
    """The last retry's dead letter says how many attempts were made and every error code, in order."""
    aws = ScriptedAws([client_error("ServiceUnavailableException", 503, message="busy", request_id="req-3")])
    state = RetryState(2, 2, (X500, "ThrottlingException"))
    outcome = await make_pipeline(aws).run(arrival(state=state))

    assert type(outcome) is DeadLetter
    assert outcome.error.message == (
        "gave up after 3 attempts; error codes in order: "
        f"{X500}, ThrottlingException, ServiceUnavailableException; last: busy"
    )
    assert outcome.error.aws_request_id == outcome.result.aws_request_id == "req-3"


async def test_retry_unknown_outcome_setting_retries_a_lost_answer_without_token():
    """With DISPATCHER_RETRY_UNKNOWN_OUTCOME a lost answer of a token-less call is retried."""
    outcome = await make_pipeline(ScriptedAws([TimeoutError()]), retry_unknown_outcome=True).run(arrival())
    assert type(outcome) is RetryLater
    assert (outcome.error.code, outcome.state) == ("CallTimeout", RetryState(1, 1, ("CallTimeout",)))


THROTTLE = client_error("ThrottlingException", 400, retry_after="0.5")


@pytest.mark.parametrize(
    ("script", "waits", "max_wait_s", "state", "calls", "kind", "attempts"),
    [
        pytest.param([THROTTLE, answer(STARTED)], [], 1.0, RetryState(), 2, Succeeded, 2, id="throttle-then-continue"),
        pytest.param(
            [THROTTLE, THROTTLE, answer(STARTED)], [], 1.0, RetryState(), 3, Succeeded, 3, id="throttled-twice"
        ),
        pytest.param([THROTTLE], [], 0.0, RetryState(), 1, RetryLater, 1, id="no-throttle-wait-allowed"),
        pytest.param(
            [THROTTLE, THROTTLE, THROTTLE], [0.0, 0.0, 0.03], 0.02, RetryState(), 3, RetryLater, 3, id="past-wait-limit"
        ),
        pytest.param(
            [THROTTLE], [], 0.0, RetryState(2, 2, (X500, X500)), 1, RetryLater, 3, id="throttle-never-exhausts"
        ),
    ],
)
async def test_throttles_wait_for_tokens_then_on_the_broker(script, waits, max_wait_s, state, calls, kind, attempts):
    """A throttle waits in the limiter and calls again; past the wait limit it waits on the broker, unspent."""
    limiter = FakeLimiter(waits=list(waits))
    aws = ScriptedAws(list(script))
    outcome = await make_pipeline(aws, limiter=limiter, max_throttle_wait_s=max_wait_s).run(arrival(state=state))

    assert type(outcome) is kind
    assert len(aws.calls) == calls == limiter.acquired
    throttles = sum(1 for step in script if step is THROTTLE)
    assert [retry_after for _, retry_after in limiter.throttles] == [0.5] * throttles
    if kind is Succeeded:
        assert limiter.successes == 1
        assert outcome.result.attempts == attempts
    else:
        assert limiter.successes == 0
        assert isinstance(outcome.error, ThrottledByAws)
        assert outcome.delay_s == DELAYS[0]
        # Throttles never spend the retry budget, and every call is counted.
        assert outcome.state == RetryState(
            state.retries, attempts, (*state.error_codes, *["ThrottlingException"] * calls)
        )


async def test_a_throttle_cuts_the_real_limiter_and_pauses_it_for_retry_after():
    """Retry-After pauses the whole operation in its limiter and the rate drops below the ceiling."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(ceiling=10.0, burst=1, clock=clock)
    aws = ScriptedAws([client_error("ThrottlingException", 400, retry_after="2")])
    outcome = await make_pipeline(aws, limiter=limiter, max_throttle_wait_s=0.0).run(arrival())

    assert type(outcome) is RetryLater
    assert limiter.rate < 10.0
    assert limiter.try_acquire() == pytest.approx(2.0 + 1 / limiter.rate)


async def test_a_redelivered_started_job_is_answered_from_the_ledger():
    """The same job again: its recorded result, deduplicated, and AWS is not called twice."""
    aws = ScriptedAws([answer(STARTED, "req-1")])
    pipeline = make_pipeline(aws)
    first = await pipeline.run(arrival())
    second = await pipeline.run(arrival(state=RetryState(1, 1, (X500,))))

    assert type(first) is type(second) is Succeeded
    assert len(aws.calls) == 1
    assert second.result.deduplicated is True
    assert (second.result.response, second.result.aws_request_id) == (STARTED, "req-1")
    assert second.result.attempts == first.result.attempts == 1


async def test_a_delivery_waits_for_the_same_job_in_flight_then_deduplicates():
    """Two deliveries of one job at once: the second waits for the first call and does not call AWS."""
    release = asyncio.Event()

    async def slow_start():
        await release.wait()
        return answer(STARTED)

    aws = ScriptedAws([slow_start])
    pipeline = make_pipeline(aws)
    first = asyncio.create_task(pipeline.run(arrival()))
    second = asyncio.create_task(pipeline.run(arrival()))
    await asyncio.sleep(0.001)
    assert not second.done()
    release.set()

    assert [type(o) for o in await asyncio.gather(first, second)] == [Succeeded, Succeeded]
    assert (first.result().result.deduplicated, second.result().result.deduplicated) == (False, True)
    assert len(aws.calls) == 1


@pytest.mark.parametrize("concurrent", [False, True], ids=["after", "in-flight"])
async def test_a_job_id_reused_for_another_request_is_rejected_unsent(concurrent):
    """A job_id that comes back with other params is a DuplicateJobId dead letter; AWS is not called for it."""
    release = asyncio.Event()

    async def slow_start():
        await release.wait()
        return answer(STARTED)

    aws = ScriptedAws([slow_start])
    pipeline = make_pipeline(aws)
    other = example_job(M2, "job-1")
    other["params"]["jobParams"] = {"RUNDATE": "20261124"}
    first = asyncio.create_task(pipeline.run(arrival()))
    if not concurrent:
        release.set()
        await first
    else:
        await asyncio.sleep(0.001)
    outcome = await pipeline.run(arrival(body=orjson.dumps(other)))
    release.set()
    await first

    assert type(outcome) is DeadLetter
    assert (outcome.error.code, outcome.error.category) == ("DuplicateJobId", Category.REJECTED)
    assert (outcome.attempts, outcome.result.job_id, outcome.result.outcome) == (0, "job-1", "failed")
    assert len(aws.calls) == 1


@pytest.mark.parametrize(
    ("routing_key", "redelivered_calls_aws"),
    [pytest.param(M2, False, id="tokenless-kept-unknown"), pytest.param(LOOKOUT, True, id="token-call-again")],
)
async def test_a_lost_answer_leaves_the_ledger_marked_only_without_a_token(routing_key, redelivered_calls_aws):
    """After a lost answer a token-less job's redelivery is an unknown outcome; a token job calls AWS again."""
    aws = ScriptedAws([TimeoutError(), answer(STARTED)])
    pipeline = make_pipeline(aws)
    await pipeline.run(arrival(routing_key))
    outcome = await pipeline.run(arrival(routing_key, state=RetryState(1, 1, ("CallTimeout",))))

    if redelivered_calls_aws:
        assert type(outcome) is Succeeded
        assert outcome.result.attempts == 2
        assert len(aws.calls) == 2
    else:
        assert type(outcome) is DeadLetter
        assert (outcome.error.code, outcome.error.category) == ("WorkerDiedMidCall", Category.UNKNOWN_OUTCOME)
        assert outcome.attempts == 1
        assert len(aws.calls) == 1


async def test_a_refused_call_clears_the_ledger_so_a_replay_calls_again():
    """AWS refused the job, so it did not start it: a replay of the same job calls AWS again."""
    aws = ScriptedAws([client_error("ValidationException", 400), answer(STARTED)])
    pipeline = make_pipeline(aws)
    assert type(await pipeline.run(arrival())) is DeadLetter
    assert type(await pipeline.run(arrival())) is Succeeded
    assert len(aws.calls) == 2


class UnavailableLedger:
    """A shared ledger that cannot answer."""

    async def claim(self, job):
        raise LedgerUnavailable("LedgerUnavailable", "redis is down")

    async def finish(self, job, claim, how, started=None):  # pragma: no cover - never claimed
        raise AssertionError("finish without a claim")


async def test_an_unavailable_ledger_waits_on_the_broker_unspent():
    """No ledger answer, no AWS call: the job waits in the first retry queue without spending a retry."""
    aws = ScriptedAws([])
    state = RetryState(1, 1, (X500,))
    outcome = await make_pipeline(aws, ledger=UnavailableLedger()).run(arrival(state=state))

    assert type(outcome) is RetryLater
    assert (outcome.delay_s, outcome.state, outcome.error.code) == (1.0, state, "LedgerUnavailable")
    assert aws.calls == []


@pytest.mark.parametrize(
    ("body", "routing_key", "category", "code", "job_id"),
    [
        pytest.param(b"not json", M2, Category.MALFORMED, "NotJson", "msg-1", id="malformed"),
        pytest.param(
            orjson.dumps({**example_job(M2, "body-id"), "params": {"applicationId": 5}}),
            M2,
            Category.INVALID,
            "InvalidParameters",
            "body-id",
            id="invalid-params",
        ),
        pytest.param(
            orjson.dumps({**example_job(M2, "body-id"), "operation": "StopBatchJob"}),
            "m2.StopBatchJob",
            Category.UNROUTABLE,
            "UnknownOperation",
            "body-id",
            id="unroutable",
        ),
        pytest.param(
            orjson.dumps(example_job(M2, "body-id")),
            LOOKOUT,
            Category.INVALID,
            "RoutingKeyMismatch",
            "body-id",
            id="rk",
        ),
    ],
)
async def test_bad_input_is_dead_lettered_unsent(body, routing_key, category, code, job_id):
    """A body that is no valid job is a dead letter at once; its result names the body's job_id if any."""
    aws = ScriptedAws([])
    outcome = await make_pipeline(aws).run(arrival(routing_key, body=body, message_id="msg-1"))

    assert type(outcome) is DeadLetter
    assert (outcome.error.category, outcome.error.code, outcome.attempts) == (category, code, 0)
    assert (outcome.result.job_id, outcome.result.outcome) == (job_id, "failed")
    assert aws.calls == []


async def test_a_job_past_not_after_on_arrival_is_expired_unsent():
    """`not_after` already passed: expired, and AWS is never called."""
    aws = ScriptedAws([])
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    outcome = await make_pipeline(aws).run(arrival(not_after=past))

    assert type(outcome) is DeadLetter
    assert (outcome.error.category, outcome.error.code, outcome.attempts) == (Category.EXPIRED, "JobExpired", 0)
    assert outcome.result.job_id == "job-1"
    assert aws.calls == []


async def test_a_job_that_expires_while_throttled_is_not_called_again():
    """`not_after` passes while the job waits for a token after a throttle: expired, with the call it made."""
    not_after = datetime.now(UTC) + timedelta(seconds=0.03)
    limiter = FakeLimiter(waits=[0.0, 0.04])
    aws = ScriptedAws([THROTTLE])
    outcome = await make_pipeline(aws, limiter=limiter).run(arrival(not_after=not_after.isoformat()))

    assert type(outcome) is DeadLetter
    assert (outcome.error.category, outcome.error.code) == (Category.EXPIRED, "JobExpired")
    assert "before AWS could be called" in outcome.error.message
    assert outcome.attempts == outcome.result.attempts == 1
    assert len(aws.calls) == 1


async def test_draining_before_a_token_hands_the_job_back():
    """The worker drains before the job had a token: requeued untouched, AWS never called."""
    draining = asyncio.Event()
    draining.set()
    aws = ScriptedAws([])
    outcome = await make_pipeline(aws, draining=draining).run(arrival())
    assert outcome == Requeue("shutting down before AWS was called")
    assert aws.calls == []


async def test_draining_while_waiting_for_a_token_hands_the_job_back():
    """A job waiting for a token when the worker drains is woken and requeued, and claims nothing."""
    draining = asyncio.Event()
    limiter = FakeLimiter(block=True)
    aws = ScriptedAws([answer(STARTED)])
    ledger = LocalLedger(ttl_s=3600)
    pipeline = make_pipeline(aws, limiter=limiter, draining=draining, ledger=ledger)
    task = asyncio.create_task(pipeline.run(arrival()))
    await limiter.waiting.wait()
    draining.set()
    pipeline.interrupt_waits()

    assert await asyncio.wait_for(task, 1.0) == Requeue("shutting down before AWS was called")
    assert aws.calls == []
    assert list(ledger.entries()) == []


def drain_then(draining, step):
    """An AWS call during which the worker begins to drain, answered with `step`."""

    async def call():
        draining.set()
        if isinstance(step, BaseException):
            raise step
        return step

    return call


@pytest.mark.parametrize(
    ("step", "kind", "code"),
    [
        pytest.param(answer(STARTED), Succeeded, None, id="answered-is-settled"),
        pytest.param(THROTTLE, RetryLater, "ThrottlingException", id="throttled-not-called-again"),
        pytest.param(client_error(X500, 500), RetryLater, X500, id="transient-jitter-cut-short"),
    ],
)
async def test_draining_during_a_call_waits_for_it_and_no_longer(step, kind, code):
    """A call already sent is waited for and decided; nothing after it waits (no second call, no jitter)."""
    draining = asyncio.Event()
    aws = ScriptedAws([drain_then(draining, step)])
    pipeline = make_pipeline(aws, draining=draining, jitter=1.0, delays=(100.0,))
    started = time.monotonic()
    outcome = await pipeline.run(arrival())

    assert time.monotonic() - started < 0.2  # a jitter of up to 5 s was not slept
    assert type(outcome) is kind
    assert len(aws.calls) == 1
    if kind is RetryLater:
        assert outcome.error.code == code
        assert outcome.delay_s == 100.0


async def test_a_started_job_redelivered_after_not_after_is_deduplicated_not_expired():
    """The ledger knows AWS started the job: its redelivery repeats that result, whatever the clock says."""
    not_after = datetime.now(UTC) - timedelta(seconds=1)
    body = orjson.dumps(example_job(M2, "job-1", not_after=not_after.isoformat()))
    ledger = LocalLedger(ttl_s=3600)
    # The job as it was decoded before not_after, started by AWS and recorded.
    job = DECODER.decode(body, M2, None, now=not_after - timedelta(seconds=10))
    ledger.record(job, Finish.STARTED, StartedEntry(STARTED, "req-1", 1))
    aws = ScriptedAws([])
    outcome = await make_pipeline(aws, ledger=ledger).run(arrival(body=body))

    assert aws.calls == []
    assert type(outcome) is Succeeded
    assert outcome.result.deduplicated is True


async def test_a_started_job_recalled_from_the_process_gives_the_same_result_body():
    """The ledger keeps a start's response as JSON: read back, its result body is the one the start gave."""
    ledger = LocalLedger(ttl_s=3600)
    job = DECODER.decode(orjson.dumps(example_job(M2, "kept-1")), M2, None)
    response = {"executionId": "e-1", "startedAt": datetime(2026, 12, 5, 7, 0, tzinfo=UTC), "nested": {"n": [1, 2.5]}}
    started = StartedEntry(response, "req-1", 2)
    ledger.record(job, Finish.STARTED, started)

    claim = await ledger.claim(job)

    assert claim.state is ClaimState.STARTED
    assert claim.started is not None
    assert to_json(claim.started.response) == to_json(response)
    assert (claim.started.aws_request_id, claim.started.attempts) == ("req-1", 2)
