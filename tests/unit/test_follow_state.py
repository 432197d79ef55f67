"""Follow messages are acted on only if a worker signed them, and read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from dispatcher.envelope import Decoder, FollowDefaults, FollowOptions
from dispatcher.errors import InvalidJob
from dispatcher.examples import example_job
from dispatcher.follow_state import FollowState, UnreadableFollow
from dispatcher.registry import default_registry
from dispatcher.stamps import Stamper

STAMPER = Stamper(b"k" * 32)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
STATE = FollowState(
    job_id="job-1",
    service="m2",
    operation="StartBatchJob",
    region="us-east-1",
    aws_job={"applicationId": "app", "executionId": "e-1"},
    started_at=NOW,
    deadline=NOW + timedelta(hours=1),
    describe={"status": "Running", "startTime": NOW},
)


def test_a_signed_state_reads_back_equal():
    """What a worker wrote is what the next poll reads (timestamps as RFC 3339 in between)."""
    body = STATE.body()
    read = FollowState.read(body, STATE.headers(STAMPER), "job-1", STAMPER)
    assert read.model_dump(exclude={"describe"}) == STATE.model_dump(exclude={"describe"})
    assert read.describe == {"status": "Running", "startTime": "2026-12-04T12:00:00Z"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"headers": {}}, "signature"),
        ({"key": b"other" * 8}, "signature"),
        ({"message_id": "job-2"}, "signature"),
        ({"body": STATE.body().replace(b"e-1", b"e-2")}, "signature"),
    ],
)
def test_unsigned_or_altered_states_are_refused(change, why):
    """A follow message a publisher wrote, or one altered on the way, is never polled."""
    body = change.get("body", STATE.body())
    headers = change.get("headers", STATE.headers(STAMPER))
    stamper = Stamper(change["key"]) if "key" in change else STAMPER
    with pytest.raises(UnreadableFollow, match=why):
        FollowState.read(body, headers, change.get("message_id", "job-1"), stamper)


def test_a_signed_state_of_another_format_is_refused():
    """A signed body this version cannot read is refused, not half-read."""
    body = orjson.dumps({**orjson.loads(STATE.body()), "unknown": 1})
    headers = STAMPER.sign({"x-dispatcher-follow": 1}, body, "job-1")
    with pytest.raises(UnreadableFollow, match="cannot read"):
        FollowState.read(body, headers, "job-1", STAMPER)


DEFAULTS = FollowDefaults(frozenset({"m2.StartBatchJob"}), timeout_s=600, progress=False)
DECODER = Decoder(default_registry(), "us-east-1", ("us-east-1",), 1 << 20, DEFAULTS)


@pytest.mark.parametrize(
    ("routing_key", "follow", "expected"),
    [
        ("m2.StartBatchJob", None, FollowOptions(600, progress=False)),
        ("m2.StartBatchJob", False, None),
        ("cleanrooms.StartProtectedJob", None, None),
        ("cleanrooms.StartProtectedJob", True, FollowOptions(600, progress=False)),
        ("datazone.StartDataSourceRun", {"timeout_s": 30, "progress": True}, FollowOptions(30, progress=True)),
        ("datazone.StartDataSourceRun", {"progress": True}, FollowOptions(600, progress=True)),
    ],
)
def test_follow_is_the_jobs_choice_else_the_operations_default(routing_key, follow, expected):
    """`follow` in the body wins; without it, the settings' operations are followed."""
    extra = {} if follow is None else {"follow": follow}
    job = DECODER.decode(orjson.dumps(example_job(routing_key, "j-1", **extra)), routing_key, None)
    assert job.follow == expected


@pytest.mark.parametrize(
    "follow",
    ["yes", 1, {"timeout_s": 0}, {"timeout_s": 32 * 24 * 3600}, {"progress": "true"}, {"every_s": 5}],
)
def test_a_bad_follow_is_an_invalid_job(follow):
    """`follow` is validated like every other field: the job is refused before AWS is called."""
    body = orjson.dumps(example_job("m2.StartBatchJob", "j-1", follow=follow))
    with pytest.raises(InvalidJob, match="follow"):
        DECODER.decode(body, "m2.StartBatchJob", None)
