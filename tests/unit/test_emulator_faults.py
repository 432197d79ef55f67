"""The emulator's pure policies: fault dice, token bucket, idempotent job store, call log, redaction."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from dispatcher.emulator.faults import DropPhase, FaultPolicy, FaultSettings, TokenBucket, load_fault_file, parse_faults
from dispatcher.emulator.jobs import Call, CallLog, CallOutcome, IdempotencyConflictError, JobStore, redact
from dispatcher.emulator.responses import NewJob

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _policy(**settings: object) -> FaultPolicy:
    return FaultPolicy(FaultSettings.model_validate(settings), default_error_code="InternalServerException")


def _seeded() -> random.Random:
    return random.Random(7)


def test_token_bucket_allows_the_burst_then_refuses() -> None:
    """A full bucket lets `burst` calls through at once and refuses the next."""
    bucket = TokenBucket(rate_per_s=1.0, burst=3)
    assert [bucket.try_take(now=10.0) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_refills_at_its_rate() -> None:
    """An empty bucket gains one token per `1 / rate` seconds, never more than the burst."""
    bucket = TokenBucket(rate_per_s=2.0, burst=2)
    assert bucket.try_take(now=0.0)
    assert bucket.try_take(now=0.0)
    assert not bucket.try_take(now=0.25)
    assert bucket.try_take(now=0.5)
    assert bucket.try_take(now=100.0)
    assert bucket.try_take(now=100.0)
    assert not bucket.try_take(now=100.0)


def test_token_bucket_says_how_long_to_wait() -> None:
    """A refused caller is told the time until the next token."""
    bucket = TokenBucket(rate_per_s=0.5, burst=1)
    assert bucket.try_take(now=0.0)
    assert bucket.seconds_until_token(now=0.5) == pytest.approx(1.5)


def test_no_settings_means_no_faults() -> None:
    """Default settings never delay, throttle, fail or drop a call."""
    policy = _policy()
    plans = [policy.plan(now=0.0, rng=_seeded()) for _ in range(100)]
    assert all(
        plan.delay_s == 0 and not plan.throttled and plan.error_code is None and plan.drop_phase is None
        for plan in plans
    )


def test_rate_limit_throttles_with_a_retry_hint() -> None:
    """Calls beyond the rate limit's burst are throttled with a whole-second retry hint, and nothing else."""
    policy = _policy(rate_limit_per_s=0.25, rate_limit_burst=1, error_rate=1.0, drop_rate=1.0)
    rng = _seeded()
    assert not policy.plan(now=0.0, rng=rng).throttled
    throttled = policy.plan(now=0.0, rng=rng)
    assert throttled.throttled
    assert throttled.retry_after_s == 4
    assert (throttled.error_code, throttled.drop_phase) == (None, None)


def test_rate_limit_burst_defaults_to_the_rate() -> None:
    """Without a burst, a rate of 2.5 calls/s lets 3 calls through at once."""
    policy = _policy(rate_limit_per_s=2.5)
    rng = _seeded()
    assert [policy.plan(now=0.0, rng=rng).throttled for _ in range(4)] == [False, False, False, True]


def test_error_rate_uses_the_chosen_code_or_the_default() -> None:
    """An error rate of 1 fails every call, with `error_code` when set, else the operation's default."""
    assert _policy(error_rate=1.0).plan(now=0.0, rng=_seeded()).error_code == "InternalServerException"
    chosen = _policy(error_rate=1.0, error_code="ConflictException")
    assert chosen.plan(now=0.0, rng=_seeded()).error_code == "ConflictException"


def test_error_rate_fails_about_its_share() -> None:
    """An error rate of 0.2 fails roughly a fifth of 2,000 calls."""
    policy = _policy(error_rate=0.2)
    rng = _seeded()
    failed = sum(policy.plan(now=0.0, rng=rng).error_code is not None for _ in range(2000))
    assert 320 <= failed <= 480


@pytest.mark.parametrize("phase", list(DropPhase))
def test_drop_rate_drops_in_the_chosen_phase(phase: DropPhase) -> None:
    """A drop rate of 1 drops every call, before or after the start as configured."""
    policy = _policy(drop_rate=1.0, drop_phase=phase.value)
    assert policy.plan(now=0.0, rng=_seeded()).drop_phase is phase


def test_latency_adds_fixed_delay_plus_jitter() -> None:
    """Every delay lies between the fixed latency and the latency plus the jitter."""
    policy = _policy(latency_ms=100, jitter_ms=50)
    rng = _seeded()
    delays_s = [policy.plan(now=0.0, rng=rng).delay_s for _ in range(200)]
    assert all(0.1 <= delay_s <= 0.15 for delay_s in delays_s)
    assert max(delays_s) - min(delays_s) > 0.03


@pytest.mark.parametrize(
    "raw",
    [
        {"m2.StartBatchJob": {"error_rate": 1.5}},
        {"m2.StartBatchJob": {"latency_ms": -1}},
        {"m2.StartBatchJob": {"rate_limit_per_s": 0}},
        {"m2.StartBatchJob": {"drop_phase": "during"}},
        {"m2.StartBatchJob": {"error_rte": 0.1}},
        ["m2.StartBatchJob"],
    ],
)
def test_parse_faults_refuses_bad_settings(raw: object) -> None:
    """Out-of-range values, unknown phases, misspelt settings and non-objects are refused."""
    with pytest.raises(ValidationError):
        parse_faults(raw)


def test_load_fault_file_reads_json(tmp_path: Path) -> None:
    """A faults file maps routing keys to settings."""
    path = tmp_path / "faults.json"
    path.write_text('{"m2.StartBatchJob": {"drop_rate": 0.1, "drop_phase": "after_start"}}')
    faults = load_fault_file(path)
    assert faults == {"m2.StartBatchJob": FaultSettings(drop_rate=0.1, drop_phase=DropPhase.AFTER_START)}


def _job_factory() -> tuple[list[str], Callable[[], NewJob]]:
    made: list[str] = []

    def make() -> NewJob:
        made.append(f"job-{len(made) + 1}")
        return NewJob(made[-1], {"JobId": made[-1]})

    return made, make


def test_job_store_replays_a_token_with_the_same_params() -> None:
    """The same token and parameters return the first job, and no second job is made."""
    store = JobStore(max_tokens=10)
    made, make = _job_factory()
    first, first_is_new = store.start("svc.Op", {"a": 1, "Token": "t"}, "t", make)
    again, again_is_new = store.start("svc.Op", {"a": 1, "Token": "t"}, "t", make)
    assert (first.job_id, first_is_new) == ("job-1", True)
    assert (again.job_id, again_is_new) == ("job-1", False)
    assert made == ["job-1"]


def test_job_store_refuses_a_token_with_other_params() -> None:
    """The same token with other parameters is a conflict."""
    store = JobStore(max_tokens=10)
    _, make = _job_factory()
    store.start("svc.Op", {"a": 1}, "t", make)
    with pytest.raises(IdempotencyConflictError):
        store.start("svc.Op", {"a": 2}, "t", make)


def test_job_store_keeps_tokens_per_operation_and_starts_tokenless_jobs_anew() -> None:
    """A token is scoped to its operation; calls without a token always start a new job."""
    store = JobStore(max_tokens=10)
    made, make = _job_factory()
    store.start("svc.One", {"a": 1}, "t", make)
    store.start("svc.Two", {"a": 1}, "t", make)
    store.start("svc.Two", {"a": 1}, None, make)
    store.start("svc.Two", {"a": 1}, None, make)
    assert made == ["job-1", "job-2", "job-3", "job-4"]


def test_job_store_forgets_the_oldest_tokens_beyond_its_bound() -> None:
    """Beyond `max_tokens`, the oldest token is forgotten and would start a new job."""
    store = JobStore(max_tokens=2)
    made, make = _job_factory()
    for token in ["t1", "t2", "t3", "t1"]:
        store.start("svc.Op", {}, token, make)
    assert made == ["job-1", "job-2", "job-3", "job-4"]


def _call(routing_key: str) -> Call:
    return Call(
        time=datetime(2024, 1, 1, tzinfo=UTC),
        received_at=datetime(2024, 1, 1, tzinfo=UTC),
        routing_key=routing_key,
        request_id="r",
        params={},
        idempotency_token=None,
        outcome=CallOutcome.STARTED,
    )


def test_call_log_keeps_the_newest_calls_numbered() -> None:
    """The log keeps the newest `limit` calls, numbered since the last reset, with RFC 3339 times."""
    log = CallLog(limit=2)
    for routing_key in ["a.A", "b.B", "a.A"]:
        log.record(_call(routing_key))
    entries = log.to_json()
    assert log.total == 3
    assert [(entry["seq"], entry["routing_key"]) for entry in entries] == [(2, "b.B"), (3, "a.A")]
    assert entries[0]["time"] == "2024-01-01T00:00:00Z"
    assert [entry["seq"] for entry in log.to_json("a.A")] == [3]
    log.clear()
    assert (log.total, log.to_json()) == (0, [])


def test_redact_hides_sensitive_paths_only() -> None:
    """Values at sensitive paths, through `*` wildcards too, are redacted in a copy; others are kept."""
    params: dict[str, Any] = {
        "jobParameters": {"parameters": {"k": "v"}, "arn": "x"},
        "items": [{"secret": 1, "open": 2}],
    }
    redacted = redact(params, ["jobParameters.parameters", "items.*.secret", "absent.path"])
    assert redacted == {
        "jobParameters": {"parameters": "<redacted>", "arn": "x"},
        "items": [{"secret": "<redacted>", "open": 2}],
    }
    assert params["jobParameters"]["parameters"] == {"k": "v"}
