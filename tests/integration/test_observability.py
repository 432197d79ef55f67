"""Probes, metrics and logs: what the platform team relies on to run the worker."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import uuid
from typing import TYPE_CHECKING

import aiohttp
from prometheus_client import generate_latest

from dispatcher.examples import example_job
from dispatcher.health import start_health_server
from dispatcher.metrics import REGISTRY
from dispatcher.registry import default_registry
from dispatcher.wiring import build_worker
from tests.integration.support import WorkerProcess

if TYPE_CHECKING:
    from dispatcher.worker import Worker

M2 = "m2.StartBatchJob"
SECRET_PARAM = "s3cr3t-param-value"  # noqa: S105 - the value the logs must not show


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_readyz_follows_the_worker_and_livez_the_loop(start_worker):
    """readyz is false before connect, true when consuming, false from SIGTERM on; livez true once started."""
    holder: dict[str, Worker] = {}
    runner = await start_health_server(
        lambda: "w" in holder and holder["w"].ready,
        lambda: "w" in holder and holder["w"].started.is_set(),
        "127.0.0.1",
        0,
    )
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        assert (await _get(f"{base}/readyz"))[0] == 503
        assert (await _get(f"{base}/livez")) == (503, "starting\n")
        holder["w"] = await start_worker()
        assert (await _get(f"{base}/livez"))[0] == 200
        assert (await _get(f"{base}/readyz"))[0] == 200
        holder["w"].stop()
        assert (await _get(f"{base}/readyz"))[0] == 503
        assert (await _get(f"{base}/livez"))[0] == 200
    finally:
        await runner.cleanup()


async def test_livez_stays_true_while_the_broker_is_unreachable(settings_for, emulator):
    """With a broker that hangs up on every connection, the worker keeps retrying: not ready, but alive."""
    attempts = asyncio.Queue[None]()

    def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.put_nowait(None)
        writer.close()

    refusing = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = refusing.sockets[0].getsockname()[1]
    worker = build_worker(settings_for(amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/"), default_registry())
    task = asyncio.create_task(worker.run())
    runner = await start_health_server(lambda: worker.ready, worker.started.is_set, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        await worker.started.wait()
        async with asyncio.timeout(10):
            for _ in range(3):  # the first connection and two retries after it failed
                await attempts.get()
        assert not task.done()
        assert (await _get(f"{base}/livez"))[0] == 200
        assert (await _get(f"{base}/readyz"))[0] == 503
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await runner.cleanup()
        refusing.close()
        await refusing.wait_closed()


def _sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_metrics_move_when_jobs_flow(start_worker, broker):
    """Jobs, AWS latency, dead letters and in-flight gauges change as jobs are settled."""
    await start_worker()
    before_ok = _sample("dispatcher_jobs_total", operation=M2, outcome="succeeded")
    before_dead = _sample("dispatcher_dead_letters_total", operation=M2, category="malformed")
    before_calls = _sample("dispatcher_aws_call_duration_seconds_count", operation=M2, status="200")
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    await broker.publish(example_job(M2, job_id), M2)
    await broker.publish(b"not json", M2)
    await broker.collect(broker.results_queue, 2)

    assert _sample("dispatcher_jobs_total", operation=M2, outcome="succeeded") == before_ok + 1
    assert _sample("dispatcher_dead_letters_total", operation=M2, category="malformed") == before_dead + 1
    assert _sample("dispatcher_aws_call_duration_seconds_count", operation=M2, status="200") == before_calls + 1
    assert _sample("dispatcher_jobs_in_flight", operation=M2) == 0
    assert _sample("dispatcher_consumers_attached") == 11  # five operations, triage, five follow queues
    assert _sample("dispatcher_rate_limit_calls_per_second", operation=M2, region="us-east-1") > 0


async def test_a_worker_whose_aws_clients_are_not_open_is_neither_started_nor_ready(settings_for, emulator):
    """With the broker up but the AWS clients still being made, /livez says starting and /readyz 503; then both 200."""
    worker = build_worker(settings_for(), default_registry())
    opening, release = asyncio.Event(), asyncio.Event()
    open_clients = worker.aws.open

    async def slow_open(*args: object) -> None:
        opening.set()
        await release.wait()
        await open_clients(*args)  # type: ignore[arg-type]

    worker.aws.open = slow_open  # type: ignore[method-assign]
    runner = await start_health_server(lambda: worker.ready, worker.started.is_set, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(opening.wait(), 10)
        assert (await _get(f"{base}/livez")) == (503, "starting\n")
        assert (await _get(f"{base}/readyz"))[0] == 503
        release.set()
        await asyncio.wait_for(worker.consuming.wait(), 30)
        assert (await _get(f"{base}/livez"))[0] == 200
        assert (await _get(f"{base}/readyz"))[0] == 200
    finally:
        release.set()
        worker.stop()
        await asyncio.wait_for(task, 30)
        await runner.cleanup()


async def test_rate_gauges_exist_before_the_first_job(settings_for):
    """Building a worker sets the configured and allowed rate of every operation and Describe/Get call, per region."""
    settings = settings_for(aws_region="us-east-1", rate_limits={M2: {"rate": 7, "burst": 3}})
    build_worker(settings, default_registry())
    for op in default_registry():
        for key in (op.routing_key, op.spec.companion_routing_key):
            assert _sample("dispatcher_rate_limit_configured_calls_per_second", operation=key, region="us-east-1") > 0
    assert _sample("dispatcher_rate_limit_configured_calls_per_second", operation=M2, region="us-east-1") == 7
    assert _sample("dispatcher_rate_limit_calls_per_second", operation=M2, region="us-east-1") == 7
    exposition = generate_latest(REGISTRY).decode()
    assert "_created" not in exposition


async def test_no_secret_reaches_the_logs(spawn_worker, worker_env, broker, emulator, declare, vhost):
    """The AMQP password, AWS secret key and sensitive parameters never appear in the worker's output."""
    password = f"pw-{uuid.uuid4().hex}"
    user = f"u{uuid.uuid4().hex[:8]}"
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None
    subprocess.run([ctl, "add_user", user, password], check=True, capture_output=True, timeout=120)
    subprocess.run([ctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"], check=True, timeout=120)
    aws_secret = f"aws-{uuid.uuid4().hex}"
    await declare()
    try:
        url = worker_env["DISPATCHER_AMQP_URL"].replace("guest:guest", f"{user}:{password}")
        worker = await spawn_worker(
            DISPATCHER_AMQP_URL=url, AWS_SECRET_ACCESS_KEY=aws_secret, DISPATCHER_LOG_LEVEL="debug"
        )
        quicksight = example_job("quicksight.StartAutomationJob", "job-secret-1")
        quicksight["params"]["InputPayload"] = {"token": SECRET_PARAM}
        cleanrooms = example_job("cleanrooms.StartProtectedJob", "job-secret-2")
        cleanrooms["params"]["jobParameters"]["parameters"] = {"key": SECRET_PARAM}
        invalid = example_job("cleanrooms.StartProtectedJob", "job-secret-3")
        invalid["params"]["jobParameters"]["parameters"] = {"bad key!": SECRET_PARAM}
        await broker.publish(quicksight, "quicksight.StartAutomationJob")
        await broker.publish(cleanrooms, "cleanrooms.StartProtectedJob")
        await broker.publish(invalid, "cleanrooms.StartProtectedJob")
        await worker.wait_for_event("job_settled", count=3)
        worker.send(signal.SIGTERM)
        assert await worker.wait() == 0
    finally:
        subprocess.run([ctl, "delete_user", user], check=False, capture_output=True, timeout=120)

    output = b"".join(worker.raw).decode()
    assert "job-secret-1" in output, "the jobs were not logged at all, so this test proved nothing"
    for secret in (password, aws_secret, SECRET_PARAM):
        assert secret not in output


async def test_broker_password_is_masked_when_the_connection_fails(worker_env):
    """A refused login is logged with the URL's password masked."""
    password = f"pw-{uuid.uuid4().hex}"
    url = worker_env["DISPATCHER_AMQP_URL"].replace("guest:guest", f"nobody:{password}")
    worker = await WorkerProcess.start({**worker_env, "DISPATCHER_AMQP_URL": url}, wait_ready=False)
    try:
        await worker.wait_for_event("broker_unavailable", timeout_s=30)
    finally:
        worker.send(signal.SIGTERM)
        await worker.wait()
    output = b"".join(worker.raw).decode()
    assert "broker_unavailable" in output
    assert password not in output
