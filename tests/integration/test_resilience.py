"""Rate limits, durable retries, broker loss, shutdown and poison messages, against the real parts."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import uuid
from collections import Counter
from datetime import datetime

from dispatcher.emulator import parse_faults
from dispatcher.examples import example_job
from tests.integration.support import Broker, wait_until

M2 = "m2.StartBatchJob"
DATAZONE = "datazone.StartDataSourceRun"
LOOKOUT = "lookoutequipment.StartDataIngestionJob"
TOKEN_BEARING = (DATAZONE, LOOKOUT)


def new_ids(count: int, tag: str = "job") -> list[str]:
    """Fresh job ids."""
    return [f"{tag}-{uuid.uuid4().hex[:12]}" for _ in range(count)]


async def test_throttled_operation_does_not_block_another_nor_exhaust_its_jobs(start_worker, broker, emulator):
    """M2 throttled by AWS at 4/s keeps every job alive while DataZone jobs flow at full speed."""
    emulator.state.replace_faults(parse_faults({M2: {"rate_limit_per_s": 4, "rate_limit_burst": 1}}))
    await start_worker(rate_limits={M2: {"rate": 100, "burst": 10}}, retry_delays=[0.2])
    m2_ids, dz_ids = new_ids(16, "m2"), new_ids(40, "dz")
    for job_id in m2_ids:
        await broker.publish(example_job(M2, job_id), M2)
    for job_id in dz_ids:
        await broker.publish(example_job(DATAZONE, job_id), DATAZONE)

    results = await broker.collect_ids(broker.results_queue, [*m2_ids, *dz_ids], timeout_s=60)

    finished = {job_id: datetime.fromisoformat(r[0].json()["finished_at"]) for job_id, r in results.items()}
    datazone_s = (max(finished[i] for i in dz_ids) - min(finished.values())).total_seconds()
    m2_s = (max(finished[i] for i in m2_ids) - min(finished.values())).total_seconds()
    assert datazone_s < 2, "DataZone jobs waited behind the throttled operation"
    assert m2_s > datazone_s
    assert all(r[0].json()["outcome"] == "succeeded" for r in results.values())
    throttles = [c for c in emulator.state.calls.to_json(M2) if c["error_code"] == "ThrottlingException"]
    assert throttles, "the emulator never throttled, so this test proved nothing"


async def test_retry_waiting_on_the_broker_survives_a_worker_restart(start_worker, broker, emulator):
    """A job whose retry waits in a retry queue is finished by a new worker after the first one stops."""
    emulator.state.replace_faults(parse_faults({M2: {"error_rate": 1.0, "error_code": "InternalServerException"}}))
    first = await start_worker(retry_delays=[2.0])
    [job_id] = new_ids(1)
    await broker.publish(example_job(M2, job_id), M2)
    async with asyncio.timeout(10):
        while not emulator.state.calls.to_json(M2):
            await asyncio.sleep(0.05)
    first.stop()
    await first.stopped.wait()  # drained: the retry is in its retry queue
    emulator.state.replace_faults({})
    await start_worker(retry_delays=[2.0])

    results = await broker.collect_ids(broker.results_queue, [job_id], timeout_s=20)
    result = results[job_id][0].json()
    assert result["outcome"] == "succeeded"
    assert result["attempts"] == 2


async def test_closed_connections_lose_nothing_and_start_no_token_job_twice(
    start_worker, amqp_url, prefix, emulator, vhost
):
    """`rabbitmqctl close_all_connections` mid-load: every job ends once, token jobs start at most once."""
    emulator.state.replace_faults(
        parse_faults({key: {"latency_ms": 30, "jitter_ms": 30} for key in (M2, DATAZONE, LOOKOUT)})
    )
    ids = {key: new_ids(120, key.split(".")[0]) for key in (M2, DATAZONE, LOOKOUT)}
    # 120 calls a second in all, so the load lasts about 3 s and every close lands mid-load.
    await start_worker(rate_limits={key: {"rate": 40, "burst": 5} for key in ids})
    async with Broker.connect(amqp_url, prefix) as publisher:
        for key, job_ids in ids.items():
            for job_id in job_ids:
                await publisher.publish(example_job(key, job_id), key)
    arrived = emulator.state.arrived
    calls_before = 0
    for _ in range(3):
        # Close again once the worker is back and busy: 60 more calls since the last close.
        await wait_until(
            lambda since=calls_before: arrived.total() >= since + 60, "60 calls since the last close", timeout_s=60
        )
        calls_before = arrived.total()
        await asyncio.to_thread(_close_all_connections, vhost)
    assert arrived.total() < 360, "the jobs were all called before the last close"

    everything = [job_id for job_ids in ids.values() for job_id in job_ids]
    async with Broker.connect(amqp_url, prefix) as reader:
        results = await reader.collect_ids(reader.results_queue, everything, timeout_s=90)
    assert set(results) >= set(everything)
    outcomes = {job_id: {m.json()["outcome"] for m in results[job_id]} for job_id in everything}
    assert all(o == {"succeeded"} for o in outcomes.values()), outcomes
    for key in TOKEN_BEARING:
        new_jobs = Counter(c["idempotency_token"] for c in emulator.state.calls.to_json(key) if c["new_job"])
        assert len(new_jobs) == len(ids[key])
        assert max(new_jobs.values()) == 1


def _close_all_connections(vhost: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None
    subprocess.run([ctl, "close_all_connections", "-p", vhost, "test: connection loss"], check=True, timeout=60)


async def test_sigterm_mid_load_drains_exits_zero_and_loses_nothing(
    spawn_worker, broker, emulator, start_worker, declare
):
    """SIGTERM while jobs are in flight: the worker finishes them, exits 0, and every job ends exactly once."""
    emulator.state.replace_faults(parse_faults({M2: {"latency_ms": 150}}))
    await declare()
    job_ids = new_ids(150)
    for job_id in job_ids:
        await broker.publish(example_job(M2, job_id), M2)
    worker = await spawn_worker(DISPATCHER_SHUTDOWN_GRACE_S="20")
    await worker.wait_for_event("job_settled", count=20)
    worker.send(signal.SIGTERM)
    assert await worker.wait(timeout_s=30) == 0
    assert worker.events("draining"), "the worker had nothing in flight, so this test proved nothing"
    # An operator reading the log sees the stop asked for and the stop done.
    [stopping] = worker.events("stopping")
    assert stopping["in_flight"] > 0
    assert worker.events("stopped")

    await start_worker()
    results = await broker.collect_ids(broker.results_queue, job_ids, timeout_s=60)
    assert all(len(messages) == 1 for messages in results.values())
    started = [c for c in emulator.state.calls.to_json(M2) if c["new_job"]]
    assert len(started) == len(job_ids), "an M2 job (no idempotency token) was started twice or not at all"


async def test_message_that_kills_workers_ends_as_delivery_limit_without_taking_others(
    spawn_worker, broker, emulator, start_worker, declare
):
    """A job during whose call the worker dies again and again is dead-lettered `delivery-limit`; others succeed."""
    emulator.state.replace_faults(parse_faults({M2: {"latency_ms": 5000}}))
    await declare(delivery_limit=2)
    [poison] = new_ids(1, "poison")
    good = new_ids(10, "good")
    await broker.publish(example_job(M2, poison), M2)
    env = {"DISPATCHER_DELIVERY_LIMIT": "2"}
    arrived = emulator.state.arrived
    for _ in range(3):
        calls_before = arrived[M2]
        worker = await spawn_worker(**env)
        await wait_until(lambda before=calls_before: arrived[M2] > before, "the worker's call of the poison job")
        worker.kill()
        await worker.wait()
    for job_id in good:
        await broker.publish(example_job(DATAZONE, job_id), DATAZONE)
    await start_worker(delivery_limit=2)

    [dead] = await broker.collect(broker.dead_queue, 1, timeout_s=30)
    assert dead.headers["x-dispatcher-category"] == "delivery-limit"
    assert dead.headers["x-dispatcher-error-code"] == "DeliveryLimitExceeded"
    assert dead.headers["x-dispatcher-original-routing-key"] == M2
    assert dead.json()["job_id"] == poison
    results = await broker.collect_ids(broker.results_queue, [*good, poison], timeout_s=30)
    assert all(results[job_id][0].json()["outcome"] == "succeeded" for job_id in good)
    assert results[poison][0].json()["error"]["category"] == "delivery-limit"
