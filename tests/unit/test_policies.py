"""Pure policies: token bucket, adaptive limiter, retry schedule and state, failure classes, triage."""

from __future__ import annotations

import random

import botocore.session
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from dispatcher.classify import classify_aws_failure
from dispatcher.errors import Category, InvalidJob, RejectedByAws, RetryableAwsError, ThrottledByAws, UnknownOutcome
from dispatcher.ratelimit import MIN_RATE, AdaptiveLimiter, Grant, TokenBucket
from dispatcher.retry import MAX_JITTER_S, RetrySchedule, RetryState, jitter_s
from dispatcher.triage import job_id_of, triage


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_rate():
    """A full bucket gives `burst` tokens at once, then one per 1/rate seconds."""
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.1)
    clock.now += 0.1
    assert bucket.take() == 0


def test_bucket_empty_until_pauses_and_kills_the_burst():
    """After `empty(until)` no token is given before `until`, and none in a burst after it."""
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    bucket.empty(until=clock.now + 2)
    assert bucket.take() == pytest.approx(2.1)
    clock.now += 2.1
    assert bucket.take() == 0
    assert bucket.take() > 0


def test_limiter_sustains_its_ceiling_over_time():
    """Over 10 simulated seconds the limiter grants rate x seconds + burst tokens, no more."""
    clock = Clock()
    limiter = AdaptiveLimiter(ceiling=20, burst=5, clock=clock)
    granted = 0
    for _ in range(10_000):
        if limiter.try_acquire() == 0:
            granted += 1
        clock.now += 0.001
    assert granted == pytest.approx(20 * 10 + 5, abs=1)


async def test_throttle_cuts_once_per_round_trip_and_success_recovers():
    """A burst of throttles sent before the first cut lowers the rate once; successes climb back."""
    clock = Clock()
    limiter = AdaptiveLimiter(ceiling=100, burst=10, clock=clock)
    sent_at = Grant(clock.now)
    for _ in range(10):
        limiter.try_acquire()
    clock.now += 0.05
    await limiter.on_throttle(sent_at)
    after_first = limiter.rate
    for _ in range(9):
        await limiter.on_throttle(sent_at)
    assert limiter.rate == after_first < 100
    assert after_first >= MIN_RATE
    for _ in range(200):
        clock.now += 0.1
        limiter.on_success()
    assert limiter.rate == 100


async def test_retry_after_pauses_the_whole_operation():
    """Retry-After from AWS delays the next token of every job of the operation."""
    clock = Clock()
    limiter = AdaptiveLimiter(ceiling=100, burst=10, clock=clock)
    await limiter.on_throttle(Grant(clock.now), retry_after_s=3)
    assert limiter.try_acquire() >= 3


def test_schedule_and_state_count_attempts_and_budget():
    """Attempts are delays + 1; a spent retry moves along the schedule; state survives headers."""
    schedule = RetrySchedule((1.0, 5.0))
    assert schedule.attempts == 3
    state = RetryState().called("InternalServerException").spent().called("ThrottlingException")
    assert schedule.delay_for(state.retries) == 5.0
    assert schedule.delay_for(state.spent().retries) is None
    assert RetryState.from_headers(state.to_headers()) == state
    assert RetryState.from_headers({"x-dispatcher-retries": "junk", "x-dispatcher-attempts": -3}) == RetryState()


def test_jitter_stays_within_share_and_cap():
    """Jitter is between 0 and min(delay x share, the cap)."""
    rng = random.Random(7)
    values = [jitter_s(600, 0.2, rng) for _ in range(200)]
    assert max(values) <= MAX_JITTER_S
    assert min(values) >= 0
    assert max(jitter_s(1, 0.2, rng) for _ in range(200)) <= 0.2


OPERATION = botocore.session.get_session().get_service_model("m2").operation_model("StartBatchJob")


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    """A botocore ClientError as a real response would produce it."""
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "r-1", "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "StartBatchJob")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("ThrottlingException", 429), ThrottledByAws),
        (client_error("LimitExceededException", 409), ThrottledByAws),
        (client_error("SomethingNew", 429), ThrottledByAws),
        (client_error("InternalServerException", 500), RetryableAwsError),
        (client_error("ServiceUnavailable", 503), RetryableAwsError),
        (client_error("ValidationException", 400), RejectedByAws),
        (client_error("AccessDeniedException", 403), RejectedByAws),
        (client_error("ConflictException", 409), RejectedByAws),
        (client_error("ServiceQuotaExceededException", 402), RejectedByAws),
        (EndpointConnectionError(endpoint_url="http://x"), RetryableAwsError),
        (ConnectTimeoutError(endpoint_url="http://x"), RetryableAwsError),
    ],
)
def test_aws_failures_map_to_the_contract_classes(exc, expected):
    """Throttling, transient, refused and not-connected failures take the contract's classes."""
    error = classify_aws_failure(exc, OPERATION, has_idempotency_token=False, retry_unknown_outcome=False)
    assert type(error) is expected


def test_retry_after_header_is_read():
    """M2's Retry-After header reaches the throttling error."""
    error = classify_aws_failure(
        client_error("ThrottlingException", 429, {"retry-after": "2"}),
        OPERATION,
        has_idempotency_token=False,
        retry_unknown_outcome=False,
    )
    assert isinstance(error, ThrottledByAws)
    assert error.retry_after_s == 2
    assert error.aws_request_id == "r-1"
    assert error.http_status == 429


@pytest.mark.parametrize("exc", [ReadTimeoutError(endpoint_url="http://x"), TimeoutError()])
def test_lost_answers_are_unknown_without_token_and_retryable_with_one(exc):
    """A lost answer is an unknown outcome for a token-less job, a retry for a token-bearing one."""
    kwargs = {"retry_unknown_outcome": False}
    assert isinstance(classify_aws_failure(exc, OPERATION, has_idempotency_token=False, **kwargs), UnknownOutcome)
    assert isinstance(classify_aws_failure(exc, OPERATION, has_idempotency_token=True, **kwargs), RetryableAwsError)
    forced = classify_aws_failure(exc, OPERATION, has_idempotency_token=False, retry_unknown_outcome=True)
    assert isinstance(forced, RetryableAwsError)


def test_bugs_are_not_classified_as_aws_failures():
    """An exception that is no AWS answer propagates (the worker requeues it)."""
    with pytest.raises(KeyError):
        classify_aws_failure(KeyError("x"), OPERATION, has_idempotency_token=False, retry_unknown_outcome=False)


QUEUES = {"dispatcher.jobs.m2.StartBatchJob": "m2.StartBatchJob"}


def test_triage_reads_delivery_limit_and_expiry_from_x_death():
    """Delivery-limit and expiry in a job queue and an unknown routing key get their categories."""
    death = {"reason": b"delivery_limit", "queue": b"dispatcher.jobs.m2.StartBatchJob"}
    limited = triage({"x-death": [death], "x-delivery-count": 3}, "m2.StartBatchJob", QUEUES, dead_lettered=True)
    assert limited.category is Category.DELIVERY_LIMIT
    assert "3 times" in limited.message
    expired_death = {"reason": "expired", "queue": "dispatcher.jobs.m2.StartBatchJob"}
    expired = triage({"x-death": [expired_death]}, "m2.X", QUEUES, dead_lettered=True)
    assert expired.category is Category.EXPIRED
    retry_death = {"reason": "expired", "queue": "dispatcher.jobs.retry.1s"}
    retried = triage({"x-death": [retry_death]}, "m2.Nope", QUEUES, dead_lettered=False)
    assert retried.category is Category.UNROUTABLE
    forged = triage({"x-death": [{"reason": "delivery_limit"}]}, "m2.Nope", QUEUES, dead_lettered=True)
    assert forged.category is Category.UNROUTABLE
    lost = triage({}, "m2.Nope", QUEUES, dead_lettered=False)
    assert lost.category is Category.UNROUTABLE
    assert "m2.Nope" in lost.message
    assert "m2.StartBatchJob" in lost.message


@pytest.mark.parametrize("x_death", [{"reason": "expired"}, 7, "x", [1, 2], [], None, [{"reason": 5}]])
def test_triage_never_raises_on_odd_headers(x_death):
    """Whatever a publisher put in x-death, triage answers (its queue has no delivery limit)."""
    assert triage({"x-death": x_death}, "m2.Nope", QUEUES, dead_lettered=True).category is Category.UNROUTABLE


@pytest.mark.parametrize("reason", ["delivery_limit", "expired"])
def test_triage_ignores_an_x_death_naming_our_queue_on_a_message_the_alternate_exchange_routed(reason):
    """A publisher can write x-death naming a job queue; only the broker's dead-lettering is believed."""
    forged = {"x-death": [{"reason": reason, "queue": "dispatcher.jobs.m2.StartBatchJob"}], "x-delivery-count": 9}
    assert triage(forged, "m2.Nope", QUEUES, dead_lettered=False).category is Category.UNROUTABLE
    assert triage(forged, "m2.Nope", QUEUES, dead_lettered=True).category is not Category.UNROUTABLE


def test_job_id_of_never_raises():
    """The triage job id reader survives any body."""
    assert job_id_of(b'{"job_id": "a"}', 100) == "a"
    assert job_id_of(b"\xff\xfe", 100) is None
    assert job_id_of(b"[1]", 100) is None
    assert job_id_of(b'{"job_id": "a"}', 3) is None
    assert job_id_of(b"[" * 5000 + b"]" * 5000, 100_000) is None


def test_invalid_job_is_not_retryable():
    """Bad input never asks for a retry."""
    assert not InvalidJob("x", "y").retryable
