"""What the settler publishes for each outcome, and when it acks or hands the delivery back: no broker.

A real `Settler` publishes to fake exchanges that confirm into one log (or fail, or never confirm)
and settles a fake delivery whose `ack`/`nack` record what was done or fail as a lost channel does.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from aio_pika import DeliveryMode
from aio_pika.exceptions import ChannelInvalidStateError
from structlog.testing import capture_logs

from dispatcher.errors import RejectedByAws, RetryableAwsError
from dispatcher.follow_state import FollowState
from dispatcher.outcome import DeadLetter, Finished, PollLater, Requeue, RetryLater, Succeeded
from dispatcher.results import Completion, Result
from dispatcher.retry import RetryState
from dispatcher.settle import Exchanges, Settlement, Settler
from dispatcher.stamps import Stamper
from dispatcher.topology import Names
from tests.unit.fakes import FakeExchange, FakeIncoming, nacked, returned

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NAMES = Names("t.jobs", "t.results", "t.dead")
STAMPER = Stamper(b"k" * 32)
M2 = "m2.StartBatchJob"
BODY = b'{"job_id":"job-1","service":"m2","operation":"StartBatchJob","params":{}}'
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
REPLY = "client.replies"

SUCCEEDED = Result("job-1", "m2", "StartBatchJob", "succeeded", NOW, NOW, 1, {"team": "a"}, {"executionId": "e-1"})
REJECTED = RejectedByAws("ValidationException", "applicationId is wrong", aws_request_id="req-2", http_status=400)
FAILED = Result("job-1", "m2", "StartBatchJob", "failed", NOW, NOW, 1, error=REJECTED, aws_request_id="req-2")
RETRY_STATE = RetryState(1, 1, ("InternalServerException",))
RETRY = RetryLater(1.0, RETRY_STATE, RetryableAwsError("InternalServerException", "oops"), "job-1")
DEAD = DeadLetter(REJECTED, FAILED, 1)
FOLLOW = FollowState(
    job_id="job-1",
    service="m2",
    operation="StartBatchJob",
    region="us-east-1",
    aws_job={"applicationId": "app", "executionId": "e-1"},
    started_at=NOW,
    deadline=NOW,
    reply_to="follower.replies",
    correlation_id="corr-f",
)
COMPLETION = Completion("finished", "job-1", "m2", "StartBatchJob", {}, "Succeeded", {}, FOLLOW.aws_job, 3, NOW, NOW)
PROGRESS = Completion("progress", "job-1", "m2", "StartBatchJob", {}, "Running", {}, FOLLOW.aws_job, 2, NOW, NOW)


class Broker:
    """One channel's exchanges, every confirmed publish in one log in the order it was made."""

    def __init__(self) -> None:
        self.log = []
        self.default = FakeExchange("", self.log)
        self.results = FakeExchange("t.results", self.log)
        self.dead = FakeExchange("t.dead", self.log)
        self.retry = FakeExchange("t.jobs.retry.1s", self.log)
        self.follow = FakeExchange("t.jobs.follow.2s", self.log)

    def exchanges(self) -> Exchanges:
        return Exchanges(self.default, self.results, self.dead, {1.0: self.retry}, {2.0: self.follow})

    def sent(self):
        return [(p.exchange, p.routing_key, p.mandatory) for p in self.log]


class Marks:
    """Follow marks that record which chains were published."""

    def __init__(self) -> None:
        self.marked = []

    async def followed(self, job_id):
        return job_id in self.marked

    async def mark(self, job_id):
        self.marked.append(job_id)


def make_settler(broker, *, marks=None, results_queue_enabled=True, timeout_s=0.05):
    """A real settler on the fake broker's exchanges."""
    return Settler(
        [broker.exchanges()],
        names=NAMES,
        stamper=STAMPER,
        publish_timeout_s=timeout_s,
        results_queue_enabled=results_queue_enabled,
        marks=marks,
    )


def incoming(**changes):
    """A job delivery with every property the settler copies set."""
    values = {
        "body": BODY,
        "routing_key": M2,
        "message_id": "job-1",
        "reply_to": REPLY,
        "correlation_id": "corr-1",
        "headers": {"team": "a", "traceparent": TRACE, "x-dispatcher-category": "forged"},
        "priority": 3,
        "type": "job",
        "app_id": "billing",
        "expiration": "60000",
        "user_id": "guest",
    }
    return FakeIncoming(**{**values, **changes})


RESULTS_OK = ("t.results", "m2.StartBatchJob.succeeded", True)
RESULTS_FAILED = ("t.results", "m2.StartBatchJob.failed", True)
TO_REPLY = ("", REPLY, True)


@pytest.mark.parametrize(
    ("outcome", "reply_to", "sent"),
    [
        pytest.param(RETRY, REPLY, [("t.jobs.retry.1s", M2, True)], id="retry-later"),
        pytest.param(DEAD, REPLY, [("t.dead", M2, True), RESULTS_FAILED, TO_REPLY], id="dead-letter"),
        pytest.param(DEAD, None, [("t.dead", M2, True), RESULTS_FAILED], id="dead-letter-no-reply-to"),
        pytest.param(DeadLetter(REJECTED, None, 0), REPLY, [("t.dead", M2, True)], id="dead-letter-no-result"),
        pytest.param(Succeeded(SUCCEEDED), REPLY, [RESULTS_OK, TO_REPLY], id="succeeded"),
        pytest.param(Succeeded(SUCCEEDED), "t.results", [RESULTS_OK], id="reply-to-own-queue-ignored"),
        pytest.param(Succeeded(SUCCEEDED), "t.jobs.m2.StartBatchJob", [RESULTS_OK], id="reply-to-job-queue-ignored"),
        pytest.param(
            Succeeded(SUCCEEDED, PollLater(FOLLOW, 2.0)),
            REPLY,
            [("t.jobs.follow.2s", M2, True), RESULTS_OK, TO_REPLY],
            id="succeeded-followed-chain-first",
        ),
        pytest.param(PollLater(FOLLOW, 2.0), REPLY, [("t.jobs.follow.2s", M2, True)], id="poll-later"),
        pytest.param(
            PollLater(FOLLOW, 2.0, PROGRESS),
            REPLY,
            [
                ("t.jobs.follow.2s", M2, True),
                ("t.results", "m2.StartBatchJob.progress", True),
                ("", "follower.replies", True),
            ],
            id="poll-later-with-progress",
        ),
        pytest.param(
            Finished(COMPLETION, FOLLOW),
            REPLY,
            [("t.results", "m2.StartBatchJob.finished", True), ("", "follower.replies", True)],
            id="finished-replies-to-the-start-reply-to",
        ),
    ],
)
async def test_each_outcome_is_published_where_it_belongs_then_acked(outcome, reply_to, sent):
    """Every publish an outcome needs, confirmed in order, then exactly one ack."""
    broker = Broker()
    delivery = incoming(reply_to=reply_to)
    settlement = await make_settler(broker).settle(delivery, outcome)

    assert broker.sent() == sent
    assert settlement == Settlement(published=True, acked=True)
    assert delivery.settled == ["ack"]


async def test_results_are_not_mandatory_without_a_results_queue():
    """Without the results queue an unrouted result is no failure; dead letters stay mandatory."""
    broker = Broker()
    await make_settler(broker, results_queue_enabled=False).settle(incoming(reply_to=None), DEAD)
    assert broker.sent() == [("t.dead", M2, True), ("t.results", "m2.StartBatchJob.failed", False)]


async def test_a_retry_copy_is_the_same_message_with_signed_retry_state():
    """Body and properties copied, publisher's x-dispatcher-* dropped, retry state signed, no expiration."""
    broker = Broker()
    await make_settler(broker).settle(incoming(), RETRY)
    [published] = broker.log
    copy = published.message

    assert copy.body == BODY
    assert copy.headers == {
        "team": "a",
        "traceparent": TRACE,
        "x-dispatcher-retries": 1,
        "x-dispatcher-attempts": 1,
        "x-dispatcher-error-codes": "InternalServerException",
        "x-dispatcher-signature": copy.headers["x-dispatcher-signature"],
    }
    assert STAMPER.verified(copy.headers, copy.body, "job-1")
    assert RetryState.from_headers(copy.headers) == RETRY_STATE
    assert (copy.message_id, copy.correlation_id, copy.reply_to) == ("job-1", "corr-1", REPLY)
    assert (copy.content_type, copy.priority, copy.type, copy.app_id) == ("application/json", 3, "job", "billing")
    assert (copy.expiration, copy.user_id, copy.delivery_mode) == (None, None, DeliveryMode.PERSISTENT)


async def test_a_dead_letter_is_stamped_with_why_and_its_result_says_the_same():
    """The dead-letter copy carries the signed contract headers; the result the error and the ids."""
    broker = Broker()
    await make_settler(broker).settle(incoming(message_id=None), DEAD)
    dead, result, reply = (p.message for p in broker.log)

    assert dead.body == BODY
    assert dead.message_id == "job-1"  # the job's id, not a random one, when the delivery had none
    stamp = {name: value for name, value in dead.headers.items() if name.startswith("x-dispatcher-")}
    assert stamp.pop("x-dispatcher-dead-lettered-at").endswith("Z")
    assert stamp.pop("x-dispatcher-signature")
    assert stamp == {
        "x-dispatcher-category": "rejected",
        "x-dispatcher-error-code": "ValidationException",
        "x-dispatcher-error-message": "applicationId is wrong",
        "x-dispatcher-attempts": 1,
        "x-dispatcher-original-routing-key": M2,
        "x-dispatcher-aws-request-id": "req-2",
        "x-dispatcher-http-status": 400,
    }
    assert STAMPER.verified(dead.headers, dead.body, "job-1")
    document = orjson.loads(result.body)
    assert (document["outcome"], document["error"]["code"], document["aws_request_id"]) == (
        "failed",
        "ValidationException",
        "req-2",
    )
    assert (result.message_id, result.correlation_id, result.headers) == ("job-1", "corr-1", {"traceparent": TRACE})
    assert reply is result


async def test_a_followed_start_is_marked_only_once_its_chain_is_published():
    """The follow mark is set after the chain and result are confirmed, never for a failed publish."""
    outcome = Succeeded(SUCCEEDED, PollLater(FOLLOW, 2.0))
    marks, broker = Marks(), Broker()
    await make_settler(broker, marks=marks).settle(incoming(), outcome)
    assert marks.marked == ["job-1"]
    follow = broker.log[0].message
    assert FollowState.read(follow.body, follow.headers, follow.message_id, STAMPER) == FOLLOW

    marks, broker = Marks(), Broker()
    broker.follow.fail = nacked()
    delivery = incoming()
    settlement = await make_settler(broker, marks=marks).settle(delivery, outcome)
    assert marks.marked == []
    assert broker.sent() == []  # no result promising a completion whose chain was never published
    assert (settlement.published, settlement.acked, delivery.settled) == (False, False, ["nack(requeue=True)"])


def failing(kind):
    """Configure an exchange to fail its publishes as `kind` says."""

    def apply(exchange):
        if kind == "hang":
            exchange.hang = True
        else:
            exchange.fail = kind

    return apply


NOT_CONFIRMED = [
    pytest.param(failing(nacked()), "failed", id="nacked"),
    pytest.param(failing(returned(REPLY)), "returned unroutable", id="returned"),
    pytest.param(failing(ChannelInvalidStateError("closed")), "failed", id="channel-closed"),
    pytest.param(failing(ConnectionError("reset")), "failed", id="connection-lost"),
    pytest.param(failing("hang"), "not confirmed in 0.01s", id="no-confirm-in-time"),
]


@pytest.mark.parametrize(("break_exchange", "why"), NOT_CONFIRMED)
@pytest.mark.parametrize(
    ("outcome", "broken", "sent_before"),
    [
        pytest.param(RETRY, "retry", [], id="retry"),
        pytest.param(DEAD, "dead", [], id="dead-copy"),
        pytest.param(DEAD, "results", [("t.dead", M2, True)], id="dead-result"),
        pytest.param(Succeeded(SUCCEEDED), "results", [], id="succeeded-result"),
        pytest.param(PollLater(FOLLOW, 2.0), "follow", [], id="poll-later"),
        pytest.param(Finished(COMPLETION, FOLLOW), "results", [], id="finished"),
    ],
)
async def test_a_publish_not_confirmed_hands_the_delivery_back(break_exchange, why, outcome, broken, sent_before):
    """Anything short of a confirm stops the settlement: nothing more is sent and the delivery is requeued."""
    broker = Broker()
    break_exchange(getattr(broker, broken))
    delivery = incoming()
    settlement = await make_settler(broker, timeout_s=0.01).settle(delivery, outcome)

    assert broker.sent() == sent_before
    assert delivery.settled == ["nack(requeue=True)"]
    assert (settlement.published, settlement.acked, settlement.ack_lost) == (False, False, False)
    assert settlement.requeued.startswith("publish not confirmed: ")
    assert why in settlement.requeued


@pytest.mark.parametrize(
    "break_exchange",
    [
        pytest.param(failing(returned(REPLY)), id="queue-gone"),
        pytest.param(failing(ChannelInvalidStateError("closed")), id="channel-closed"),
        pytest.param(failing("hang"), id="no-confirm"),
    ],
)
@pytest.mark.parametrize("outcome", [pytest.param(DEAD, id="dead"), pytest.param(Succeeded(SUCCEEDED), id="succeeded")])
async def test_a_reply_to_that_is_gone_does_not_hold_the_job(break_exchange, outcome):
    """The result is safe on the results exchange: an unreachable reply_to is logged and the job acked."""
    broker = Broker()
    break_exchange(broker.default)
    delivery = incoming()
    with capture_logs() as logs:
        settlement = await make_settler(broker, timeout_s=0.01).settle(delivery, outcome)

    assert [(log["event"], log["reply_to"]) for log in logs] == [("reply_to_unreachable", REPLY)]

    assert ("t.results", f"m2.StartBatchJob.{outcome.result.outcome}", True) in broker.sent()
    assert all(exchange != "" for exchange, _, _ in broker.sent())
    assert settlement == Settlement(published=True, acked=True)
    assert delivery.settled == ["ack"]


@pytest.mark.parametrize(
    ("outcome", "publish_fails", "expected"),
    [
        pytest.param(Succeeded(SUCCEEDED), False, Settlement(published=True, acked=False, ack_lost=True), id="ack"),
        pytest.param(
            Requeue("shutting down"),
            False,
            Settlement(published=False, acked=False, ack_lost=True, requeued="shutting down"),
            id="requeue-nack",
        ),
        pytest.param(DEAD, True, None, id="not-confirmed-nack"),
    ],
)
async def test_a_lost_channel_at_settlement_is_reported_not_raised(outcome, publish_fails, expected):
    """An ack or nack on a channel that is gone says so; the broker redelivers the message anyway."""
    broker = Broker()
    if publish_fails:
        broker.dead.fail = nacked()
    delivery = incoming(channel_gone=True)
    settlement = await make_settler(broker).settle(delivery, outcome)

    assert delivery.settled == []
    if expected is None:
        assert (settlement.published, settlement.acked, settlement.ack_lost) == (False, False, True)
        assert settlement.requeued.startswith("publish not confirmed")
    else:
        assert settlement == expected


async def test_requeue_publishes_nothing_and_nacks():
    """A job handed back while draining: no publish, one nack with requeue."""
    broker = Broker()
    delivery = incoming()
    settlement = await make_settler(broker).settle(delivery, Requeue("shutting down before AWS was called"))

    assert broker.sent() == []
    assert delivery.settled == ["nack(requeue=True)"]
    assert settlement == Settlement(published=False, acked=False, requeued="shutting down before AWS was called")


@pytest.mark.parametrize(("fail_times", "settled"), [(1, "ack"), (-1, "nack(requeue=True)")], ids=["once", "always"])
async def test_a_copy_that_cannot_be_sent_is_settled_as_a_safe_copy(fail_times, settled):
    """An unexpected failure settles once more with only the body and the dispatcher's values, else requeues."""
    broker = Broker()
    broker.dead.fail, broker.dead.fail_times = RuntimeError("frame too large"), fail_times
    delivery = incoming()
    with capture_logs() as logs:  # and no traceback rendered: that alone takes a quarter second
        settlement = await make_settler(broker).settle(delivery, DEAD)

    assert logs[0]["event"] == "settlement_failed_settling_a_safe_copy"

    assert delivery.settled == [settled]
    if settled == "ack":
        assert settlement == Settlement(published=True, acked=True)
        assert broker.sent() == [("t.dead", M2, True), RESULTS_FAILED]  # no reply_to: nothing of it is trusted
        dead = broker.log[0].message
        assert dead.headers["x-dispatcher-safe-copy"] == "RuntimeError('frame too large')"
        assert "team" not in dead.headers
        assert STAMPER.verified(dead.headers, BODY, "job-1")
    else:
        assert (settlement.published, settlement.acked) == (False, False)
        assert settlement.requeued == "even the safe copy failed: RuntimeError('frame too large')"
        assert broker.sent() == []


async def test_settlements_take_turns_over_the_channels():
    """Outcomes are spread over the publish channels, each settlement on one of them."""
    first, second = Broker(), Broker()
    settler = Settler(
        [first.exchanges(), second.exchanges()],
        names=NAMES,
        stamper=STAMPER,
        publish_timeout_s=0.05,
        results_queue_enabled=True,
    )
    for _ in range(3):
        await settler.settle(incoming(reply_to=None), Succeeded(SUCCEEDED))
    assert (len(first.log), len(second.log)) == (2, 1)
