"""Pipeline fixtures: the emulator in-process over real HTTP, workers on the same loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from typing import TYPE_CHECKING, Any

import aio_pika
import pytest

from dispatcher.emulator import start_emulator
from dispatcher.registry import default_registry
from dispatcher.settings import Settings
from dispatcher.topology import Names, declare_for
from dispatcher.wiring import build_worker
from tests.integration.support import Broker, WorkerProcess

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from dispatcher.emulator import RunningEmulator
    from dispatcher.worker import Worker


# Retry delays and poll waits the tests configure; their queues are deleted with the rest of a test's names.
RETRY_DELAYS_USED = (0.1, 0.2, 0.3, 0.4, 2.0)
FOLLOW_WAITS_USED = (0.2, 0.3, 0.5, 1.0)


@pytest.fixture
async def emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningEmulator]:
    """A fresh emulator on an ephemeral port; every AWS client of the test points at it."""
    async with start_emulator() as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL", running.url)
        yield running


@pytest.fixture
async def prefix(amqp_url: str) -> AsyncIterator[str]:
    """Exchange and queue names of this test alone, deleted after it (quorum queues are not free)."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    names = Names(f"{name}.jobs", f"{name}.results", f"{name}.dead")
    queues = [names.job_queue(key) for key in default_registry().routing_keys]
    queues += [names.results_queue, names.dead_queue, names.triage]
    queues += [names.retry_queue(delay) for delay in RETRY_DELAYS_USED]
    queues += [names.follow_queue(op.routing_key) for op in default_registry() if op.companion is not None]
    queues += [names.follow_wait_queue(wait) for wait in FOLLOW_WAITS_USED]
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for queue in queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.close()


@pytest.fixture
def settings_for(amqp_url: str, prefix: str) -> Callable[..., Settings]:
    """Settings of a test worker: its own names, short retry delays, no HTTP port."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "amqp_url": amqp_url,
            "jobs_exchange": f"{prefix}.jobs",
            "results_exchange": f"{prefix}.results",
            "dead_exchange": f"{prefix}.dead",
            "retry_delays": [0.2, 0.4],
            "retry_jitter": 0.0,
            "concurrency": 16,
            "rate_limits": {},
            "default_rate_limit": {"rate": 1000, "burst": 100},
            "shutdown_grace_s": 10,
            "publish_timeout_s": 5,
            "aws_call_timeout_s": 5,
            "follow_poll_delays": [0.3],
            "follow_poll_jitter": 0.0,
            "default_follow_rate_limit": {"rate": 1000, "burst": 100},
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def start_worker(
    settings_for: Callable[..., Settings], emulator: RunningEmulator
) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    """Start workers on this loop, ready to consume; each one is stopped and drained after the test."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []
    registry = default_registry()

    async def start(**overrides: Any) -> Worker:
        worker = build_worker(settings_for(**overrides), registry)
        task = asyncio.create_task(worker.run())
        running.append((worker, task))
        consuming = asyncio.create_task(worker.consuming.wait())
        async with asyncio.timeout(20):
            await asyncio.wait({task, consuming}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # it failed to start: say why
        return worker

    yield start
    for worker, task in running:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def broker(amqp_url: str, prefix: str) -> AsyncIterator[Broker]:
    """A publisher and reader of the test's queues."""
    async with Broker.connect(amqp_url, prefix) as connected:
        yield connected


@pytest.fixture
def worker_env(amqp_url: str, prefix: str, emulator: RunningEmulator) -> dict[str, str]:
    """Environment of a worker process pointed at this test's names, vhost and emulator."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": emulator.url,
        "DISPATCHER_AMQP_URL": amqp_url,
        "DISPATCHER_JOBS_EXCHANGE": f"{prefix}.jobs",
        "DISPATCHER_RESULTS_EXCHANGE": f"{prefix}.results",
        "DISPATCHER_DEAD_EXCHANGE": f"{prefix}.dead",
        "DISPATCHER_RETRY_DELAYS": "[0.2, 0.4]",
        "DISPATCHER_DEFAULT_RATE_LIMIT": '{"rate": 1000, "burst": 100}',
        "DISPATCHER_HTTP_PORT": "0",
        "DISPATCHER_LOG_FORMAT": "json",
        "DISPATCHER_CONCURRENCY": "16",
        "DISPATCHER_FOLLOW_POLL_DELAYS": "0.3",
        "DISPATCHER_FOLLOW_POLL_JITTER": "0",
        "DISPATCHER_DEFAULT_FOLLOW_RATE_LIMIT": "1000/100",
    }


@pytest.fixture
async def spawn_worker(worker_env: dict[str, str]) -> AsyncIterator[Callable[..., Awaitable[WorkerProcess]]]:
    """Start `dispatcher run` processes; any still running after the test are killed."""
    processes: list[WorkerProcess] = []

    async def spawn(**env: str) -> WorkerProcess:
        process = await WorkerProcess.start({**worker_env, **env})
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        process.kill()


@pytest.fixture
def declare(settings_for: Callable[..., Settings]) -> Callable[..., Awaitable[None]]:
    """Declare the test's topology before any worker runs (for jobs published ahead of a worker)."""

    async def run(**overrides: Any) -> None:
        settings = settings_for(**overrides)
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        async with connection:
            await declare_for(await connection.channel(), settings, default_registry())

    return run


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (CI starts it); keys are namespaced by each test's prefix."""
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
