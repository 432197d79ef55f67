"""Nothing is lost: confirmed jobs under broker, worker, AWS and operator faults all end in an outcome.

Every test publishes its jobs with confirms across the five operations while a worker runs, injects
one fault, waits for every confirmed job id in `dispatcher.results` or `dispatcher.dead`, and checks
the harness's invariants (`FaultReport.problems`): none lost, no id nobody published, no token-bearing
job started twice, no success without an AWS start. Duplicates of the token-less ones are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from dispatcher.emulator import parse_faults
from tests.faults.harness import (
    M2,
    ROUTING_KEYS,
    OutcomeReader,
    Outcomes,
    rabbitmqctl,
    restart_broker_app,
)
from tests.integration.support import free_port, redis_server, start_cli

if TYPE_CHECKING:
    from aiohttp import web

    from dispatcher.emulator import RunningEmulator
    from tests.integration.support import WorkerProcess

pytestmark = pytest.mark.faults

WORKER_ENV = {
    "DISPATCHER_RECONNECT_MAX_DELAY_S": "2",
    "DISPATCHER_AWS_CALL_TIMEOUT_S": "10",
    "DISPATCHER_PUBLISH_TIMEOUT_S": "5",
    "DISPATCHER_SHUTDOWN_GRACE_S": "20",
    "DISPATCHER_LOG_LEVEL": "info",
}
# A lost broker connection may still leave a token-less job an unknown outcome: a worker that
# reconnects and takes the redelivery before the old call ends finds that call's claim in flight.
BROKER_LOSS_CATEGORIES = {"unknown-outcome"}
# Enough latency that a fault always finds jobs in flight.
SOME_LATENCY = {key: {"latency_ms": 10, "jitter_ms": 40} for key in ROUTING_KEYS}


def alive(worker: WorkerProcess) -> bool:
    """The worker process is still running."""
    return worker.process.returncode is None


async def test_connections_closed_again_and_again_lose_nothing(fault_run, declare, spawn_worker, emulator, vhost, jobs):
    """`rabbitmqctl close_all_connections` four times mid-load: every confirmed job ends in an outcome, none lost."""
    emulator.state.replace_faults(parse_faults(SOME_LATENCY))
    await declare()
    worker = await spawn_worker(**WORKER_ENV)
    run = fault_run("close_all_connections x4", jobs)
    run.start_publishing()
    for step in range(1, 5):
        await run.wait_for_calls(step * jobs // 5)
        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "fault suite: connection loss")

    report = await run.finish(allowed_categories=BROKER_LOSS_CATEGORIES)

    assert report.problems() == []
    assert set(report.outcomes) <= {"succeeded", "failed"}
    assert worker.events("broker_connection_lost"), "the worker never lost its connection: nothing was tested"
    assert alive(worker)


async def test_broker_stopped_and_started_mid_load_loses_nothing(fault_run, declare, spawn_worker, emulator, jobs):
    """`rabbitmqctl stop_app` / `start_app` once mid-load: the worker reconnects and no confirmed job is lost."""
    emulator.state.replace_faults(parse_faults(SOME_LATENCY))
    await declare()
    worker = await spawn_worker(**WORKER_ENV)
    run = fault_run("broker stop_app/start_app", jobs)
    run.start_publishing()
    await run.wait_for_calls(jobs // 3)
    # Every user of this broker loses it for a few seconds: one short cycle, and always started again.
    await asyncio.to_thread(restart_broker_app, 1.0)

    report = await run.finish(allowed_categories=BROKER_LOSS_CATEGORIES)

    assert report.problems() == []
    assert set(report.outcomes) <= {"succeeded", "failed"}
    assert worker.events("broker_connection_lost"), "the worker never lost the broker: nothing was tested"
    assert alive(worker)


async def test_worker_killed_mid_load_loses_nothing(fault_run, declare, spawn_worker, emulator, jobs):
    """SIGKILL of the worker mid-load, then a new worker: every confirmed job succeeds, token jobs start once."""
    emulator.state.replace_faults(parse_faults(SOME_LATENCY))
    await declare()
    first = await spawn_worker(**WORKER_ENV)
    run = fault_run("worker SIGKILL", jobs)
    run.start_publishing()
    await run.wait_for_calls(jobs // 3)
    first.kill()
    assert await first.wait() == -signal.SIGKILL
    second = await spawn_worker(**WORKER_ENV)

    report = await run.finish()

    assert report.problems() == []
    assert report.outcomes == {"succeeded": report.published}
    assert alive(second)


@pytest.mark.redis
async def test_worker_killed_with_the_ledger_in_redis_starts_no_job_twice(
    fault_run, declare, spawn_worker, emulator, redis_url, jobs
):
    """With the start ledger in Redis, SIGKILL mid-load then a new worker: no job of any operation starts twice."""
    env = {**WORKER_ENV, "DISPATCHER_REDIS_URL": redis_url}
    emulator.state.replace_faults(parse_faults(SOME_LATENCY))
    await declare()
    first = await spawn_worker(**env)
    run = fault_run("worker SIGKILL, ledger in Redis", jobs)
    run.start_publishing()
    await run.wait_for_calls(jobs // 3)
    first.kill()
    assert await first.wait() == -signal.SIGKILL
    second = await spawn_worker(**env)

    # A token-less call in flight at the kill is an unknown outcome: the contract's answer, not a loss.
    report = await run.finish(allowed_categories={"unknown-outcome"})

    assert report.problems() == []
    assert report.duplicate_starts == dict.fromkeys(report.duplicate_starts, 0)
    assert alive(second)


async def test_worker_terminated_mid_load_drains_and_starts_nothing_twice(
    fault_run, declare, spawn_worker, emulator, jobs
):
    """SIGTERM mid-load: the worker exits 0 within its grace period, a new one finishes, no job starts twice."""
    emulator.state.replace_faults(parse_faults(SOME_LATENCY))
    await declare()
    first = await spawn_worker(**WORKER_ENV)
    run = fault_run("worker SIGTERM", jobs)
    run.start_publishing()
    await run.wait_for_calls(jobs // 3)
    first.send(signal.SIGTERM)
    assert await first.wait(timeout_s=float(WORKER_ENV["DISPATCHER_SHUTDOWN_GRACE_S"]) + 30) == 0
    second = await spawn_worker(**WORKER_ENV)

    report = await run.finish()

    assert report.problems() == []
    assert report.outcomes == {"succeeded": report.published}
    assert sum(report.duplicate_starts.values()) == 0, "a clean drain must not leave a started job unacknowledged"
    assert report.duplicated_results == 0
    assert alive(second)


def _chaos(*, burst: bool, drop_phase: str) -> dict[str, Any]:
    """AWS at its worst (throttled, failing with 5xx, slow, hanging up) or merely throttled and slow."""
    if not burst:
        return {key: {"rate_limit_per_s": 150, "rate_limit_burst": 20, "jitter_ms": 30} for key in ROUTING_KEYS}
    return {
        key: {
            "rate_limit_per_s": 40,
            "rate_limit_burst": 5,
            "error_rate": 0.5,
            "latency_ms": 5,
            "jitter_ms": 400,
            "drop_rate": 0.05,
            "drop_phase": drop_phase,
        }
        for key in ROUTING_KEYS
    }


async def _cycle_chaos(emulator: RunningEmulator, stop: asyncio.Event) -> None:
    """Alternate bursts of every fault with calmer spells until told to stop; then no faults."""
    phases = [
        (_chaos(burst=True, drop_phase="before_start"), 1.5),
        (_chaos(burst=False, drop_phase=""), 1.0),
        (_chaos(burst=True, drop_phase="after_start"), 1.5),
        (_chaos(burst=False, drop_phase=""), 1.0),
    ]
    try:
        while not stop.is_set():
            for faults, hold_s in phases:
                emulator.state.replace_faults(parse_faults(faults))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), hold_s)
                if stop.is_set():
                    break
    finally:
        emulator.state.replace_faults({})


async def test_aws_throttling_errors_latency_and_drops_at_once_lose_nothing(
    fault_run, declare, spawn_worker, emulator, jobs
):
    """Throttling, 5xx bursts, latency spikes and dropped connections together: jobs end succeeded or dead-lettered."""
    await declare()
    worker = await spawn_worker(**WORKER_ENV)
    run = fault_run("AWS throttling+5xx+latency+drops", jobs)
    stop = asyncio.Event()
    chaos = asyncio.ensure_future(_cycle_chaos(emulator, stop))
    run.start_publishing()
    try:
        await run.wait_for_calls(jobs)
    finally:
        stop.set()
        await chaos

    report = await run.finish(allowed_categories={"exhausted", "unknown-outcome"})

    assert report.problems() == []
    assert set(report.outcomes) <= {"succeeded", "failed"}
    calls = run.calls()
    assert any(call["error_code"] == "ThrottlingException" for call in calls), "AWS never throttled"
    assert any(call["error_code"] == "InternalServerException" for call in calls), "AWS never failed"
    assert any(call["outcome"] == "dropped" for call in calls), "AWS never hung up"
    assert alive(worker)


class HeldCalls:
    """Counts the AWS calls whose request carries `mark` and, if `hold`, keeps them unanswered until released."""

    def __init__(self, mark: bytes, *, hold: bool) -> None:
        self.mark = mark
        self.hold = hold
        self.arrivals = 0
        self.released = asyncio.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Route the emulator's calls through this (the emulator looks `answer_call` up per call)."""
        from dispatcher.emulator import app as emulator_app  # noqa: PLC0415 - patched for one test only

        answer_call = emulator_app.answer_call

        async def answer(state: Any, operation: Any, request: web.Request) -> web.StreamResponse:
            if self.mark in await request.read():
                self.arrivals += 1
                if self.hold:
                    await self.released.wait()
            return await answer_call(state, operation, request)

        monkeypatch.setattr(emulator_app, "answer_call", answer)

    async def wait_for(self, arrivals: int, timeout_s: float = 120) -> None:
        async with asyncio.timeout(timeout_s):
            while self.arrivals < arrivals:
                await asyncio.sleep(0.02)


async def test_broker_connection_loss_lets_in_flight_aws_calls_finish(
    fault_run, declare, spawn_worker, emulator, monkeypatch, vhost
):
    """Connections closed while M2 calls are in flight: those jobs still succeed, none becomes an unknown outcome."""
    tag = uuid.uuid4().hex[:6]
    in_flight = HeldCalls(f"inflight-{tag}".encode(), hold=True)
    in_flight.install(monkeypatch)
    await declare()
    worker = await spawn_worker(**WORKER_ENV)
    run = fault_run("close_all_connections, 8 M2 calls in flight", 0)
    for number in range(8):
        await run.publish_one(M2, f"inflight-{tag}-{number}")
    try:
        await in_flight.wait_for(8)
        await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "fault suite: connection loss")
        await worker.wait_for_event("broker_connection_lost")
    finally:
        in_flight.released.set()  # AWS answers only now, after the connection was lost

    report = await run.finish()

    assert alive(worker)
    assert report.lost == []
    assert report.failures == {}, "jobs whose AWS call was under way when the connection dropped"
    assert report.outcomes == {"succeeded": 8}


async def test_job_that_kills_its_workers_ends_as_delivery_limit_and_others_are_unaffected(
    fault_run, declare, spawn_worker, emulator, monkeypatch, jobs
):
    """A job whose worker is SIGKILLed each time it holds it ends `delivery-limit`; every other job succeeds."""
    poison_id = f"poison-{uuid.uuid4().hex[:10]}"
    poison = HeldCalls(poison_id.encode(), hold=True)
    poison.install(monkeypatch)
    env = {**WORKER_ENV, "DISPATCHER_DELIVERY_LIMIT": "2", "DISPATCHER_CONCURRENCY": "4"}
    await declare(delivery_limit=2)
    run = fault_run("worker killed by one job x3", jobs)
    await run.publish_one(M2, poison_id)
    run.start_publishing()
    try:
        for kill in range(1, 4):
            worker = await spawn_worker(**env)
            await poison.wait_for(kill)
            # Let the jobs redelivered by the previous kill settle, so only the poison is held every time.
            with contextlib.suppress(TimeoutError):
                await worker.wait_for_event("job_settled", count=40, timeout_s=10)
            worker.kill()
            await worker.wait()
        final = await spawn_worker(**env)
        report = await run.finish(allowed_categories={"delivery-limit"})
    finally:
        poison.released.set()

    assert report.problems() == []
    assert report.failures == {poison_id: "delivery-limit"}
    assert report.outcomes == {"succeeded": report.published - 1, "failed": 1}
    assert poison.arrivals == 3, "the broker gave the job to a worker after its delivery limit"
    assert alive(final)


async def dlq_job_ids(env: dict[str, str]) -> list[str]:
    """The job ids in the DLQ, read with `dispatcher dlq list --json` (the queue is left as it was)."""
    process = await start_cli(env, "dlq", "list", "--json")
    stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, stderr.decode()
    return [orjson.loads(line)["job_id"] for line in stdout.splitlines() if line.strip()]


def succeeded_ids(outcomes: Outcomes) -> set[str]:
    """Jobs with a succeeded result."""
    return {job_id for job_id, results in outcomes.results.items() if any(r["outcome"] == "succeeded" for r in results)}


async def test_dlq_replay_killed_midway_loses_nothing(fault_run, declare, spawn_worker, emulator, worker_env, jobs):
    """`dlq replay` SIGKILLed mid-way: each job is back and succeeded or still in the DLQ; a second replay ends it."""
    emulator.state.replace_faults(
        parse_faults({key: {"error_rate": 1.0, "error_code": "AccessDeniedException"} for key in ROUTING_KEYS})
    )
    await declare()
    worker = await spawn_worker(**WORKER_ENV)
    run = fault_run("dlq replay SIGKILL", jobs)
    run.start_publishing()
    await run.published()
    confirmed = run.publisher.confirmed
    rejected = OutcomeReader(run.amqp_url, {f"{run.prefix}.results": Outcomes.add_result})
    async with rejected.reading():
        assert await rejected.wait_until(lambda seen: confirmed <= seen.ids(), timeout_s=run.patience_s, quiet_s=1)
    assert rejected.outcomes.categories() == {"rejected": len(confirmed)}
    emulator.state.replace_faults({})

    cli_env = dict(worker_env)
    replayed = OutcomeReader(run.amqp_url, {f"{run.prefix}.results": Outcomes.add_result})
    async with replayed.reading():
        replay = await start_cli(cli_env, "dlq", "replay", "--rate", str(max(50, jobs // 10)))
        try:
            await replayed.wait_until(
                lambda seen: len(succeeded_ids(seen)) >= jobs // 4, timeout_s=run.patience_s, quiet_s=0
            )
        finally:
            replay.kill()
            await replay.communicate()
        assert replay.returncode == -signal.SIGKILL, "the replay ended before it was killed: nothing was tested"
        # Mid-way, every job is back and succeeded, or still dead-lettered (replayed copies in flight settle first).
        await replayed.wait_until(lambda seen: True, timeout_s=run.patience_s, quiet_s=3)
        in_dlq = set(await dlq_job_ids(cli_env))
        back = succeeded_ids(replayed.outcomes)
        assert back, "nothing was replayed before the kill"
        assert in_dlq, "everything was replayed before the kill"
        midway_lost = confirmed - back - in_dlq

        finish = await start_cli(cli_env, "dlq", "replay")
        _, stderr = await asyncio.wait_for(finish.communicate(), run.patience_s)
        assert finish.returncode == 0, stderr.decode()
        await replayed.wait_until(lambda seen: confirmed <= succeeded_ids(seen), timeout_s=run.patience_s)
        left_in_dlq = set(await dlq_job_ids(cli_env)) & confirmed

    report = run.report(replayed.outcomes)
    report.dead_by_category = rejected.outcomes.categories()
    report.notes.append(f"killed with {len(in_dlq)} still in the DLQ")
    assert sorted(midway_lost) == []
    assert report.problems() == []
    assert report.outcomes == {"succeeded": report.published}
    assert left_in_dlq == set()
    # A replay killed at any instant leaves at most the message in hand twice.
    assert report.duplicated_results <= 1
    assert alive(worker)


@pytest.mark.redis
async def test_every_fault_at_once_at_the_default_configuration_starts_no_job_twice(
    fault_run, declare, spawn_worker, emulator, vhost, jobs
):
    """Default concurrency with Redis on: connection closes, kill -9, Redis killed and back empty, AWS chaos.

    Only what a test cannot wait for differs from the defaults: short retry delays and timeouts.
    """
    size = max(jobs, 3000)
    with redis_server(free_port()) as redis:
        env = {**WORKER_ENV, "DISPATCHER_REDIS_URL": redis.url, "DISPATCHER_CONCURRENCY": "32"}
        await declare()
        first = worker = await spawn_worker(**env)
        run = fault_run("all at once, default config, Redis", size)
        stop = asyncio.Event()
        chaos = asyncio.ensure_future(_cycle_chaos(emulator, stop))
        run.start_publishing()
        try:
            await run.wait_for_calls(size // 6)
            await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "fault suite: connection loss")
            await run.wait_for_calls(size // 3)
            redis.kill()
            await asyncio.sleep(3)
            redis.start()  # empty: everything the ledger held is gone
            await run.wait_for_calls(size // 2)
            worker.kill()
            assert await worker.wait() == -signal.SIGKILL
            worker = await spawn_worker(**env)
            await run.wait_for_calls(2 * size // 3)
            await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "fault suite: connection loss")
            await run.wait_for_calls(size)
        finally:
            stop.set()
            await chaos

        report = await run.finish(allowed_categories={"exhausted", "unknown-outcome"})
    assert report.problems() == []
    assert report.duplicate_starts == dict.fromkeys(report.duplicate_starts, 0)
    assert first.events("redis_unreachable"), "the worker never lost Redis: nothing was tested"
    assert alive(worker)
