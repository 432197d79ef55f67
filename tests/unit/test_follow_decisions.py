"""Every branch of one poll of a followed job, and of beginning a follow chain: no broker, no AWS.

A real `Follower` reads signed follow messages and classifies real botocore errors; the Describe
call is a script and the limiter a fake whose waits are scripted.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from dispatcher.envelope import Decoder
from dispatcher.errors import Category
from dispatcher.examples import example_job
from dispatcher.follow import Follower, FollowPolicy
from dispatcher.follow_marks import ChainMarks
from dispatcher.follow_state import FollowState
from dispatcher.ledger import LocalLedger, StartedEntry
from dispatcher.outcome import DeadLetter, Finished, PollLater, Requeue, Succeeded
from dispatcher.pipeline import Arrival, JobPolicy, Pipeline
from dispatcher.poll_schedule import PollSchedule
from dispatcher.ratelimit import Limiters
from dispatcher.registry import default_registry
from dispatcher.retry import RetrySchedule
from dispatcher.stamps import Stamper
from tests.unit.fakes import FakeLimiter, ScriptedAws, answer, client_error

REGISTRY = default_registry()
DECODER = Decoder(REGISTRY, "us-east-1", (), 256 * 1024)
STAMPER = Stamper(b"k" * 32)
SCHEDULE = PollSchedule((1.0, 2.0, 4.0), jitter=0)
M2_JOB = {"applicationId": "app-billing", "executionId": "exec-1"}
DESCRIBE = "GetBatchJobExecution"


def make_follower(aws, *, limiter=None, max_failures=3, max_poll_wait_s=1.0, draining=None, marks=None):
    """A real follower around the fakes; every Describe call shares `limiter`."""
    limiter = limiter if limiter is not None else FakeLimiter()
    return Follower(
        REGISTRY,
        aws,
        Limiters(lambda _key, _region: limiter),
        FollowPolicy(SCHEDULE, max_failures=max_failures, max_poll_wait_s=max_poll_wait_s),
        STAMPER,
        marks if marks is not None else ChainMarks(ttl_s=3600),
        draining if draining is not None else asyncio.Event(),
    )


def follow_state(**changes):
    """The state of an m2 batch job followed for an hour from now."""
    now = datetime.now(UTC)
    values = {
        "job_id": "job-1",
        "service": "m2",
        "operation": "StartBatchJob",
        "region": "us-east-1",
        "aws_job": M2_JOB,
        "started_at": now,
        "deadline": now + timedelta(hours=1),
        "polls": 4,
    }
    return FollowState(**{**values, **changes})


def delivery(state, *, signed=True, body=None):
    """The follow message of `state` as a worker wrote it (or a publisher, unsigned)."""
    return Arrival(
        body=body if body is not None else state.body(),
        routing_key=state.routing_key,
        message_id=state.job_id,
        headers=state.headers(STAMPER) if signed else {"x-dispatcher-follow": 1},
        received_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("service", "operation", "describe_op", "aws_job", "describe", "job_outcome", "warning"),
    [
        pytest.param("m2", "StartBatchJob", DESCRIBE, M2_JOB, {"status": "Succeeded"}, "succeeded", None, id="m2-ok"),
        pytest.param(
            "m2",
            "StartBatchJob",
            DESCRIBE,
            M2_JOB,
            {"status": "Succeeded With Warning"},
            "succeeded",
            "AWS reported Succeeded With Warning",
            id="m2-warning",
        ),
        pytest.param("m2", "StartBatchJob", DESCRIBE, M2_JOB, {"status": "Failed"}, "failed", None, id="m2-failed"),
        pytest.param("m2", "StartBatchJob", DESCRIBE, M2_JOB, {"status": "Purged"}, "cancelled", None, id="m2-purged"),
        pytest.param(
            "datazone",
            "StartDataSourceRun",
            "GetDataSourceRun",
            {"domainIdentifier": "dzd_1", "identifier": "run-1"},
            {"status": "PARTIALLY_SUCCEEDED"},
            "succeeded",
            "AWS reported PARTIALLY_SUCCEEDED",
            id="datazone-partial",
        ),
        pytest.param(
            "cleanrooms",
            "StartProtectedJob",
            "GetProtectedJob",
            {"membershipIdentifier": "m-1", "protectedJobIdentifier": "pj-1"},
            {"protectedJob": {"status": "CANCELLED"}},
            "cancelled",
            None,
            id="cleanrooms-nested-status",
        ),
    ],
)
async def test_a_terminal_status_finishes_with_its_mapped_outcome(
    service, operation, describe_op, aws_job, describe, job_outcome, warning
):
    """A status after which the job never changes ends the follow with its outcome and any warning."""
    aws = ScriptedAws([answer(describe)])
    limiter = FakeLimiter()
    state = follow_state(service=service, operation=operation, aws_job=aws_job, failures=1)
    outcome = await make_follower(aws, limiter=limiter).poll(delivery(state))

    assert type(outcome) is Finished
    completion = outcome.completion
    assert (completion.phase, completion.job_outcome, completion.warning) == ("finished", job_outcome, warning)
    assert (completion.describe, completion.aws_job, completion.polls, completion.error) == (describe, aws_job, 5, None)
    assert completion.job_status == outcome.state.job_status
    assert (outcome.state.failures, outcome.state.polls) == (0, 5)
    assert aws.calls == [(service, describe_op, "us-east-1", aws_job)]
    assert limiter.successes == 1


@pytest.mark.parametrize(
    ("before", "progress", "step", "next_step", "delay_s", "reports"),
    [
        pytest.param(None, True, 0, 1, 2.0, True, id="changed-reported"),
        pytest.param("Pending", True, 1, 2, 4.0, True, id="changed-again-reported"),
        pytest.param("Running", True, 0, 1, 2.0, False, id="unchanged-not-reported"),
        pytest.param(None, False, 0, 1, 2.0, False, id="changed-not-asked"),
        pytest.param("Running", False, 2, 2, 4.0, False, id="last-step-repeats"),
    ],
)
async def test_a_running_job_is_polled_again_at_the_next_step(before, progress, step, next_step, delay_s, reports):
    """Still running: the next step's wait, and a progress message only when the status changed and was asked."""
    describe = {"status": "Running"}
    state = follow_state(job_status=before, progress=progress, step=step, failures=2, last_error={"code": "X"})
    outcome = await make_follower(ScriptedAws([answer(describe)])).poll(delivery(state))

    assert type(outcome) is PollLater
    assert (outcome.state.step, outcome.delay_s) == (next_step, delay_s)
    assert (outcome.state.job_status, outcome.state.describe, outcome.state.polls) == ("Running", describe, 5)
    assert (outcome.state.failures, outcome.state.last_error) == (0, None)  # an answer resets refusals
    if reports:
        assert outcome.progress is not None
        assert (outcome.progress.phase, outcome.progress.job_status, outcome.progress.job_outcome) == (
            "progress",
            "Running",
            None,
        )
    else:
        assert outcome.progress is None


async def test_the_wait_never_runs_past_the_deadline():
    """With less time left than the step's delay, the wait is the longest one that fits."""
    state = follow_state(step=2, deadline=datetime.now(UTC) + timedelta(seconds=1.5))
    outcome = await make_follower(ScriptedAws([answer({"status": "Running"})])).poll(delivery(state))
    assert type(outcome) is PollLater
    assert (outcome.state.step, outcome.delay_s) == (2, 1.0)


async def test_throttled_polls_wait_at_the_same_step_and_never_end_the_follow():
    """Throttles slow the follow down in its limiter and at the same step, however many come."""
    limiter = FakeLimiter()
    aws = ScriptedAws([client_error("ThrottlingException", 400, DESCRIBE, retry_after="1")] * 20)
    follower = make_follower(aws, limiter=limiter, max_failures=3)
    state = follow_state(step=1, failures=2)
    for _ in range(20):
        outcome = await follower.poll(delivery(state))
        assert type(outcome) is PollLater
        assert (outcome.state.step, outcome.delay_s, outcome.progress) == (1, 2.0, None)
        state = outcome.state

    assert (state.polls, state.failures) == (24, 2)
    assert state.last_error == {"code": "ThrottlingException", "message": "AWS said no"}
    assert [retry_after for _, retry_after in limiter.throttles] == [1.0] * 20
    assert limiter.successes == 0


@pytest.mark.parametrize(
    ("step", "code"),
    [
        pytest.param(answer({"executionId": "exec-1"}), "NoStatus", id="answer-without-status"),
        pytest.param(client_error("InternalServerException", 500, DESCRIBE), "InternalServerException", id="500"),
        pytest.param(TimeoutError(), "CallTimeout", id="timeout"),
    ],
)
async def test_a_transient_failure_polls_later_at_the_next_step(step, code):
    """A failure a later poll may not see: the next step, no refusal counted, the error kept for the record."""
    state = follow_state(step=0, failures=2, job_status="Running")
    outcome = await make_follower(ScriptedAws([step]), max_failures=3).poll(delivery(state))

    assert type(outcome) is PollLater
    assert (outcome.state.step, outcome.delay_s, outcome.state.failures) == (1, 2.0, 2)
    assert outcome.state.last_error["code"] == code
    assert (outcome.state.polls, outcome.state.job_status) == (5, "Running")


@pytest.mark.parametrize(("failures_before", "ends"), [(0, False), (1, False), (2, True)], ids=["1st", "2nd", "3rd"])
async def test_refusals_in_a_row_end_the_follow_as_unknown(failures_before, ends):
    """A refused Describe counts; the max_failures-th in a row ends the follow as `unknown`, the job untouched."""
    error = client_error("AccessDeniedException", 403, DESCRIBE, message="not allowed")
    state = follow_state(step=0, failures=failures_before)
    outcome = await make_follower(ScriptedAws([error]), max_failures=3).poll(delivery(state))

    assert outcome.state.failures == failures_before + 1
    assert outcome.state.last_error == {"code": "AccessDeniedException", "message": "not allowed"}
    if not ends:
        assert type(outcome) is PollLater
        assert (outcome.state.step, outcome.delay_s) == (1, 2.0)
        return
    assert type(outcome) is Finished
    completion = outcome.completion
    assert (completion.phase, completion.job_outcome, completion.polls) == ("finished", "unknown", 5)
    assert completion.error["code"] == "AccessDeniedException"
    assert completion.error["message"].startswith(f"{DESCRIBE} was refused 3 times in a row, last with")


@pytest.mark.parametrize(
    ("step", "polls", "job_outcome", "job_status"),
    [
        pytest.param(answer({"status": "Running"}), 5, "timed-out", "Running", id="still-running"),
        pytest.param(answer({"status": "Succeeded"}), 5, "succeeded", "Succeeded", id="ended-just-in-time"),
        pytest.param(client_error("InternalServerException", 500), 5, "timed-out", "Running", id="last-poll-failed"),
    ],
)
async def test_the_poll_at_the_deadline_is_the_last(step, polls, job_outcome, job_status):
    """Past the follow timeout one last Describe call decides: the job's end, or `timed-out`."""
    aws = ScriptedAws([step])
    state = follow_state(deadline=datetime.now(UTC) - timedelta(seconds=1), job_status="Running")
    outcome = await make_follower(aws).poll(delivery(state))

    assert type(outcome) is Finished
    completion = outcome.completion
    assert (completion.job_outcome, completion.job_status, completion.polls) == (job_outcome, job_status, polls)
    assert len(aws.calls) == 1


@pytest.mark.parametrize(
    ("signed", "body", "why"),
    [
        pytest.param(False, None, "without a valid x-dispatcher-signature", id="unsigned"),
        pytest.param(True, follow_state().body().replace(b"exec-1", b"exec-2"), "signature", id="altered"),
        pytest.param(True, orjson.dumps({"job_id": "job-1"}), "signature", id="foreign-body"),
    ],
)
async def test_a_follow_message_no_worker_wrote_is_dead_lettered_without_a_result(signed, body, why):
    """An unsigned or altered follow message is no job: a dead letter, no result, no call."""
    aws = ScriptedAws([])
    outcome = await make_follower(aws).poll(delivery(follow_state(), signed=signed, body=body))

    assert type(outcome) is DeadLetter
    assert (outcome.error.code, outcome.error.category, outcome.result, outcome.attempts) == (
        "UnreadableFollow",
        Category.INVALID,
        None,
        0,
    )
    assert why in outcome.error.message
    assert aws.calls == []


async def test_a_signed_follow_of_an_unknown_operation_is_dead_lettered():
    """A signed state naming no served operation (one removed since) cannot be polled."""
    outcome = await make_follower(ScriptedAws([])).poll(delivery(follow_state(operation="StopBatchJob")))
    assert type(outcome) is DeadLetter
    assert outcome.error.message == "no operation m2.StopBatchJob to follow"
    assert outcome.result is None


async def test_a_poll_that_waits_too_long_for_a_token_is_deferred_at_the_same_step():
    """No token within max_poll_wait_s: the poll waits on the broker again, uncounted, without a call."""
    aws = ScriptedAws([])
    state = follow_state(step=1)
    outcome = await make_follower(aws, limiter=FakeLimiter(block=True), max_poll_wait_s=0.005).poll(delivery(state))

    assert type(outcome) is PollLater
    assert (outcome.state.step, outcome.delay_s, outcome.state.polls) == (1, 2.0, 4)
    assert aws.calls == []


@pytest.mark.parametrize("already", [True, False], ids=["before", "while-waiting"])
async def test_draining_while_waiting_for_a_token_requeues_the_poll(already):
    """The worker drains before the poll had its token: the follow message goes back untouched."""
    draining = asyncio.Event()
    limiter = FakeLimiter(block=True)
    aws = ScriptedAws([])
    follower = make_follower(aws, limiter=limiter, draining=draining, max_poll_wait_s=5.0)
    if already:
        draining.set()
    task = asyncio.create_task(follower.poll(delivery(follow_state())))
    if not already:
        await limiter.waiting.wait()
        draining.set()
        follower.interrupt_waits()

    assert await asyncio.wait_for(task, 1.0) == Requeue("shutting down before the poll")
    assert aws.calls == []


async def test_a_poll_during_a_drain_leaves_no_coroutine_unawaited():
    """A poll refused because the worker drains must not leave its token request half made."""
    draining = asyncio.Event()
    draining.set()
    follower = make_follower(ScriptedAws([]), draining=draining)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await follower.poll(delivery(follow_state())) == Requeue("shutting down before the poll")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def started_job(follow=True, **extra):
    """A decoded m2 job that asked to be followed, and its start."""
    body = orjson.dumps(example_job("m2.StartBatchJob", "job-1", follow=follow, **extra))
    arrival = Arrival(body, "m2.StartBatchJob", None, {}, datetime.now(UTC), reply_to="me.replies", correlation_id="c")
    return arrival, DECODER.decode(body, "m2.StartBatchJob", None)


async def test_a_started_job_begins_its_chain_at_step_zero():
    """The first follow message: the Describe identifiers from request and response, the deadline, reply_to."""
    arrival, job = started_job({"timeout_s": 60, "progress": True}, metadata={"team": "a"})
    followed, later = await make_follower(ScriptedAws([])).chain_for(
        arrival, job, StartedEntry({"executionId": "exec-1"}, "req-1", 1), deduplicated=False
    )

    assert followed is True
    assert type(later) is PollLater
    state = later.state
    assert (later.delay_s, state.step, state.polls, later.progress) == (1.0, 0, 0, None)
    assert state.aws_job == M2_JOB
    assert (state.reply_to, state.correlation_id, state.metadata, state.progress) == (
        "me.replies",
        "c",
        {"team": "a"},
        True,
    )
    assert state.deadline - state.started_at == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("marked", "response", "expected"),
    [
        pytest.param(True, {"executionId": "exec-1"}, (True, False), id="redelivered-chain-exists"),
        pytest.param(False, {"executionId": "exec-1"}, (True, True), id="redelivered-no-chain-yet"),
        pytest.param(False, {}, (False, False), id="answer-without-identifiers"),
    ],
)
async def test_a_chain_is_begun_once_and_only_when_it_can_be_followed(marked, response, expected):
    """A redelivered start whose chain was published begins none; an answer without identifiers none either."""
    marks = ChainMarks(ttl_s=3600)
    if marked:
        await marks.mark("job-1")
    arrival, job = started_job()
    followed, later = await make_follower(ScriptedAws([]), marks=marks).chain_for(
        arrival, job, StartedEntry(response, "req-1", 1), deduplicated=True
    )
    assert (followed, later is not None) == expected


async def test_the_pipeline_hands_a_followed_start_its_first_follow_message():
    """Through the pipeline: the succeeded result says `following` and carries the chain's first message."""
    follower = make_follower(ScriptedAws([]))
    policy = JobPolicy(RetrySchedule((1.0,)), retry_jitter=0.0, retry_unknown_outcome=False, max_throttle_wait_s=1.0)
    aws = ScriptedAws([answer({"executionId": "exec-1"})])
    pipeline = Pipeline(
        DECODER, aws, Limiters(lambda *_: FakeLimiter()), LocalLedger(3600), policy, asyncio.Event(), follower
    )
    arrival, _ = started_job()
    outcome = await pipeline.run(arrival)

    assert type(outcome) is Succeeded
    assert outcome.result.following is True
    assert type(outcome.follow) is PollLater
    assert (outcome.follow.state.aws_job, outcome.follow.state.step) == (M2_JOB, 0)
