"""Many replicas, one dispatcher: shared rate limits and the start ledger in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import uuid
from collections import Counter
from datetime import datetime

import pytest
from redis.asyncio import Redis

from dispatcher.emulator import parse_faults
from dispatcher.examples import example_job
from dispatcher.ratelimit_redis import SharedLimiter

pytestmark = pytest.mark.redis

M2 = "m2.StartBatchJob"
DATAZONE = "datazone.StartDataSourceRun"


def m2_job(job_id: str) -> dict[str, object]:
    """An M2 job whose parameters carry its id, so the emulator's call log tells jobs apart."""
    job = example_job(M2, job_id)
    job["params"] = {**job["params"], "jobParams": {"JOBKEY": job_id}}
    return job


def new_ids(count: int, tag: str = "job") -> list[str]:
    """Fresh job ids."""
    return [f"{tag}-{uuid.uuid4().hex[:12]}" for _ in range(count)]


async def test_three_replicas_share_one_limit(spawn_worker, broker, emulator, declare, redis_url):
    """Three worker processes limited to 40/s together call AWS at 40/s and share one burst."""
    await declare()
    rate, burst = 40, 20
    job_ids = new_ids(700)
    for job_id in job_ids:
        await broker.publish(m2_job(job_id), M2)
    env = {
        "DISPATCHER_REDIS_URL": redis_url,
        "DISPATCHER_RATE_LIMITS": f'{{"{M2}": {{"rate": {rate}, "burst": {burst}}}}}',
    }
    workers = [await spawn_worker(**env) for _ in range(3)]
    async with asyncio.timeout(60):  # 14 s of calls at 40/s: 2 s of start-up, 10 measured, 2 spare
        while emulator.state.arrived[M2] < burst + rate * 14:
            await asyncio.sleep(0.1)
    for worker in workers:
        worker.send(signal.SIGTERM)
    for worker in workers:
        assert await worker.wait() == 0

    times = sorted(datetime.fromisoformat(c["received_at"]).timestamp() for c in emulator.state.calls.to_json(M2))
    assert all(len(w.events("job_settled")) > 20 for w in workers), "a replica did no work"
    steady = [t for t in times if times[0] + 2 <= t < times[0] + 12]
    assert 38 <= len(steady) / 10 <= 42, len(steady) / 10
    busiest = max(sum(1 for u in times if t <= u < t + 1) for t in times)
    # Grants never exceed rate + burst in a second (next test). Here the emulator's clock sees them
    # after a send on a loaded two-core machine, which can bunch a quarter second of calls together
    # (CI saw 54 at burst 5). The burst is large so that a replica bursting on its own (rate + 3 bursts
    # = 100) still fails clearly.
    assert busiest <= rate + burst + rate // 4, busiest


async def test_shared_grants_never_exceed_rate_plus_burst(redis_url, prefix):
    """48 callers on three shared limiters get 20/s together and never more than rate + burst in a second."""
    redis = Redis.from_url(redis_url)
    key = f"{prefix}:rate:{M2}:us-east-1"
    limiters = [SharedLimiter(redis, key, ceiling=20, burst=5, expected_replicas=3) for _ in range(3)]
    grants: list[float] = []
    end = asyncio.get_running_loop().time() + 6

    async def call_until_end(limiter: SharedLimiter) -> None:
        # Run out rather than being cancelled: a Redis call cancelled mid-reply leaks its connection.
        while asyncio.get_running_loop().time() < end:
            grants.append((await limiter.acquire()).at)

    try:
        await asyncio.gather(*(call_until_end(limiter) for limiter in limiters for _ in range(16)))
    finally:
        await redis.delete(key)
        await redis.aclose()
    grants.sort()
    steady = [t for t in grants if grants[0] + 1 <= t < grants[0] + 6]
    assert len(steady) / 5 == pytest.approx(20, rel=0.05)
    assert max(sum(1 for u in grants if t <= u < t + 1) for t in grants) <= 20 + 5


async def test_a_throttle_seen_by_one_replica_slows_the_others(redis_url, prefix):
    """Two limiters on one shared key: a throttle reported through one lowers the rate the other gets."""
    redis = Redis.from_url(redis_url)
    try:
        key = f"{prefix}:rate:{M2}:us-east-1"
        one = SharedLimiter(redis, key, ceiling=100, burst=10, expected_replicas=2)
        other = SharedLimiter(redis, key, ceiling=100, burst=10, expected_replicas=2)
        grant = await one.acquire()
        await other.acquire()
        assert other.rate == 100
        await one.on_throttle(grant)
        await other.acquire()
        assert other.rate == pytest.approx(70, rel=0.05)
        await asyncio.sleep(1.0)
        await other.acquire()
        assert 70 < other.rate <= 100, "the shared rate did not recover with time"
    finally:
        await redis.delete(f"{prefix}:rate:{M2}:us-east-1")
        await redis.aclose()


@contextlib.contextmanager
def private_redis():
    """A Redis server of this test alone, which it may stop and start."""
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed (see .ci/run)"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL)]

    def restart() -> None:
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))

    try:
        yield f"redis://127.0.0.1:{port}/0", processes, restart
    finally:
        for process in processes:
            process.kill()
            process.wait()


async def test_redis_stopped_mid_load_loses_nothing_and_falls_back(spawn_worker, broker, emulator, declare):
    """With Redis killed mid-load the workers stay up on their local limits, and every job ends once."""
    await declare()
    job_ids = new_ids(300)
    with private_redis() as (url, processes, restart):
        await asyncio.sleep(0.3)
        env = {
            "DISPATCHER_REDIS_URL": url,
            "DISPATCHER_RATE_LIMITS": '{"datazone.StartDataSourceRun": {"rate": 40, "burst": 5}}',
            "DISPATCHER_EXPECTED_REPLICAS": "2",
        }
        # Both ready before the jobs go out: a worker can take seconds to start on a busy machine.
        workers = [await spawn_worker(**env) for _ in range(2)]
        for job_id in job_ids:
            await broker.publish(example_job(DATAZONE, job_id), DATAZONE)
        await workers[0].wait_for_event("job_settled", count=20)
        processes[0].kill()
        processes[0].wait()
        await workers[0].wait_for_event("redis_unreachable_using_local_rate_limit")
        restart()
        results = await broker.collect_ids(broker.results_queue, job_ids, timeout_s=90)
        for worker in workers:
            assert worker.process.returncode is None, "a worker died when Redis went away"
            worker.send(signal.SIGTERM)
            await worker.wait()
    assert all(len(messages) == 1 for messages in results.values())
    assert all(messages[0].json()["outcome"] == "succeeded" for messages in results.values())
    tokens = Counter(c["idempotency_token"] for c in emulator.state.calls.to_json(DATAZONE) if c["new_job"])
    assert len(tokens) == len(job_ids)
    assert max(tokens.values()) == 1


async def test_kill_9_of_workers_never_starts_a_tokenless_job_twice(
    spawn_worker, broker, emulator, declare, redis_url, record_property
):
    """Workers SIGKILLed again and again mid-load: each M2 job is started at most once, every job ends somewhere."""
    emulator.state.replace_faults(parse_faults({M2: {"latency_ms": 200, "jitter_ms": 200}}))
    await declare()
    job_ids = new_ids(600)
    for job_id in job_ids:
        await broker.publish(m2_job(job_id), M2)
    env = {"DISPATCHER_REDIS_URL": redis_url, "DISPATCHER_AWS_CALL_TIMEOUT_S": "2"}
    for _ in range(4):
        workers = [await spawn_worker(**env) for _ in range(2)]
        await asyncio.sleep(1.5)
        for worker in workers:
            worker.kill()
            await worker.wait()
    finisher = await spawn_worker(**env)
    outcomes = await _outcomes(broker, job_ids)
    finisher.send(signal.SIGTERM)
    await finisher.wait()

    starts = Counter(c["params"]["jobParams"]["JOBKEY"] for c in emulator.state.calls.to_json(M2) if c["new_job"])
    assert max(starts.values()) == 1, [k for k, n in starts.items() if n > 1]
    assert set(outcomes) == set(job_ids)
    unknown = [job_id for job_id, category in outcomes.items() if category == "unknown-outcome"]
    assert set(outcomes.values()) <= {"succeeded", "unknown-outcome"}
    report = f"{len(unknown)} of {len(job_ids)} jobs were in flight at a kill and ended as unknown-outcome"
    record_property("unknown_outcome_jobs", len(unknown))
    print(f"\n{report}")  # noqa: T201 - the issue asks for this count to be reported


async def _outcomes(broker, job_ids: list[str]) -> dict[str, str]:
    """Each job's final word: `succeeded`, or its dead-letter category (from the results queue)."""
    results = await broker.collect_ids(broker.results_queue, job_ids, timeout_s=120)
    outcomes = {}
    for job_id, messages in results.items():
        result = messages[-1].json()
        outcomes[job_id] = "succeeded" if result["outcome"] == "succeeded" else result["error"]["category"]
    return outcomes


async def test_replaying_a_started_job_does_not_call_aws_again(start_worker, broker, emulator, redis_url):
    """A job published again after AWS started it is answered from the ledger, even by a fresh worker."""
    first = await start_worker(redis_url=redis_url)
    [job_id] = new_ids(1)
    await broker.publish(m2_job(job_id), M2)
    [original] = (await broker.collect_ids(broker.results_queue, [job_id]))[job_id]
    first.stop()
    await start_worker(redis_url=redis_url)
    await broker.publish(m2_job(job_id), M2)
    [again] = (await broker.collect_ids(broker.results_queue, [job_id]))[job_id]

    assert again.json()["deduplicated"] is True
    assert again.json()["response"] == original.json()["response"]
    assert len(emulator.state.calls.to_json(M2)) == 1


async def test_same_job_id_with_other_params_is_rejected(start_worker, broker, emulator, redis_url):
    """Reusing a job_id for a different request is dead-lettered `rejected` as DuplicateJobId, never started."""
    await start_worker(redis_url=redis_url)
    [job_id] = new_ids(1)
    await broker.publish(m2_job(job_id), M2)
    await broker.collect_ids(broker.results_queue, [job_id])
    changed = m2_job(job_id)
    changed["params"] = {**changed["params"], "applicationId": "another-app"}
    await broker.publish(changed, M2)
    [dead] = await broker.collect(broker.dead_queue, 1)
    assert dead.headers["x-dispatcher-category"] == "rejected"
    assert dead.headers["x-dispatcher-error-code"] == "DuplicateJobId"
    assert len(emulator.state.calls.to_json(M2)) == 1
