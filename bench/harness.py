"""Broker side of every benchmark: a vhost of its own, topology, pre-published jobs, results read back.

`drain` is the measurement most benchmarks share: publish the jobs with confirms, start the
consuming process, and time it from the first job taken to the last result in the results queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aio_pika
import orjson
from aio_pika import DeliveryMode, Message

from bench.procfs import cpu_s, machine_cpu, run_queue_wait_s
from dispatcher.examples import EXAMPLE_PARAMS, example_job
from dispatcher.settings import Settings
from dispatcher.topology import Names, declare_topology, poll_schedule

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
    from contextlib import AbstractAsyncContextManager

    from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

    from bench.processes import Process

ROUTING_KEYS: tuple[str, ...] = tuple(EXAMPLE_PARAMS)
BROKER_HOST = "127.0.0.1:5672"
PUBLISH_WINDOW = 1000
"""Publishes awaiting their confirm at once while pre-publishing."""
RABBITMQCTL_TIMEOUT_S = 300
"""Adding or deleting a vhost waits for other vhost changes on the node (other test runs, say)."""
CONNECT_TIMEOUT_S = 30
"""A broker that accepts TCP but never answers the AMQP header must fail a benchmark, not hang it."""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
}


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=RABBITMQCTL_TIMEOUT_S)


@contextlib.contextmanager
def bench_vhost() -> Iterator[str]:
    """A vhost of its own for one benchmark run, deleted afterwards; yields its AMQP URL."""
    name = f"dispatcher-bench-{secrets.token_hex(4)}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{BROKER_HOST}/{name}"
    finally:
        _delete_vhost(name)


def _delete_vhost(name: str, attempts: int = 6, pause_s: float = 10) -> None:
    """Delete the vhost, waiting out a broker restart; warn instead of failing the run."""
    for attempt in range(attempts):
        try:
            _rabbitmqctl("delete_vhost", name)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if attempt + 1 < attempts:
                time.sleep(pause_s)
        else:
            return
    print(f"warning: could not delete vhost {name}: run `rabbitmqctl delete_vhost {name}`", file=sys.stderr)


async def wait_for_broker(amqp_url: str, timeout_s: float = 120) -> None:
    """Wait until the broker accepts a connection (other test runs may restart it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection = await aio_pika.connect(amqp_url, timeout=5)
        except (OSError, aio_pika.exceptions.AMQPError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(2)
        else:
            await connection.close()
            return


def lost_broker(exc: BaseException) -> bool:
    """True if the broker went away under `exc` (a restart, say), so a second try may work."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionError | aio_pika.exceptions.AMQPConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True)
class Scenario:
    """One worker configuration: its own exchange and queue names inside the bench vhost."""

    amqp_url: str
    prefix: str
    concurrency: int
    rate_limits: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default_rate_limit: Mapping[str, float] = field(default_factory=lambda: {"rate": 1_000_000, "burst": 100_000})
    extra_settings: Mapping[str, Any] = field(default_factory=dict)
    """Further worker settings (`redis_url`, say), as `Settings` field names."""

    @property
    def settings(self) -> Settings:
        """The worker's settings, also used here to declare the same topology before it starts."""
        return Settings(**self._values())

    @property
    def names(self) -> Names:
        """Every broker name of this scenario."""
        return Names.from_settings(self.settings)

    def worker_env(self, emulator_url: str, http_port: int) -> dict[str, str]:
        """The environment of `python -m dispatcher run` for these settings."""
        env = {
            f"DISPATCHER_{key.upper()}": value if isinstance(value, str) else orjson.dumps(value).decode()
            for key, value in self._values().items()
        }
        return {
            **env,
            **AWS_ENV,
            "AWS_ENDPOINT_URL": emulator_url,
            "DISPATCHER_HTTP_HOST": "127.0.0.1",
            "DISPATCHER_HTTP_PORT": str(http_port),
            "DISPATCHER_LOG_LEVEL": "info",  # as deployed: one line per job
            "DISPATCHER_LOG_FORMAT": "json",
        }

    def _values(self) -> dict[str, Any]:
        return {
            "amqp_url": self.amqp_url,
            "jobs_exchange": f"{self.prefix}.jobs",
            "results_exchange": f"{self.prefix}.results",
            "dead_exchange": f"{self.prefix}.dead",
            "concurrency": self.concurrency,
            "rate_limits": {key: dict(limit) for key, limit in self.rate_limits.items()},
            "default_rate_limit": dict(self.default_rate_limit),
            **self.extra_settings,
        }


def job_ids(prefix: str, routing_keys: Iterable[str], count: int) -> list[tuple[str, str]]:
    """`count` (routing key, job id) pairs spread round-robin over `routing_keys`."""
    keys = tuple(routing_keys)
    return [(keys[i % len(keys)], f"{prefix}-{i:06d}") for i in range(count)]


async def prepare_queues(scenario: Scenario, jobs: list[tuple[str, str]]) -> float:
    """Declare the scenario's topology afresh and publish `jobs` with confirms; returns jobs/s published.

    Queues left by an interrupted earlier try are deleted first, so the run starts empty.
    """
    await delete_queues(scenario)
    settings = scenario.settings
    connection = await connect(scenario.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(
            channel,
            scenario.names,
            ROUTING_KEYS,
            retry_delays_s=settings.retry_delays,
            delivery_limit=settings.delivery_limit,
            results_queue_enabled=True,
        )
        exchange = await channel.get_exchange(scenario.names.jobs_exchange)
        started = time.perf_counter()
        for start in range(0, len(jobs), PUBLISH_WINDOW):
            batch = jobs[start : start + PUBLISH_WINDOW]
            await asyncio.gather(
                *(exchange.publish(job_message(rk, job_id), rk, mandatory=True) for rk, job_id in batch)
            )
        return len(jobs) / (time.perf_counter() - started)


def job_message(routing_key: str, job_id: str) -> Message:
    """The message a publisher sends for one example job."""
    return Message(
        orjson.dumps(example_job(routing_key, job_id)),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=job_id,
    )


async def connect(amqp_url: str) -> AbstractConnection:
    """A broker connection, or an error if the broker does not answer: a benchmark must not hang on it."""
    return await aio_pika.connect(amqp_url, timeout=CONNECT_TIMEOUT_S)


async def delete_queues(scenario: Scenario) -> None:
    """Drop every queue of the scenario, the follow and wait queues its worker declares included.

    RabbitMQ 3.x keeps file handles for every classic queue (three each here) out of a budget
    set by its open-files limit (927 under the default 1,024): with the ~300 queues a full run
    used to leave behind, the broker stopped accepting connections, and the run hung.
    """
    names, settings = scenario.names, scenario.settings
    queues = [names.job_queue(rk) for rk in ROUTING_KEYS]
    queues += [names.triage, names.dead_queue, names.results_queue]
    queues += [names.retry_queue(d) for d in settings.retry_delays]
    queues += [names.follow_queue(rk) for rk in ROUTING_KEYS]
    queues += [names.follow_wait_queue(wait) for wait in poll_schedule(settings).waits_s]
    connection = await connect(scenario.amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)


@dataclass
class Collected:
    """Results read back: by job id, with the earliest start and the time the last one arrived."""

    expected: int
    outcomes: dict[str, str] = field(default_factory=dict)
    first_started_at: float | None = None
    last_arrival: float | None = None
    handling_s: list[float] = field(default_factory=list)
    """Per job: from the delivery taken to the result built (limiter, AWS call, decisions)."""
    delivery_s: list[float] = field(default_factory=list)
    """Per job: from the result built to it read back here (publish, confirm, queue, consumer)."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lost: BaseException | None = None
    """Set when the results consumer lost the broker (a restart, say): the run cannot finish."""

    def add(self, message: AbstractIncomingMessage) -> None:
        """Count one result message (a duplicate counts once)."""
        document = orjson.loads(message.body)
        job_id = str(document.get("job_id") or message.message_id)
        if job_id in self.outcomes:
            return
        self.outcomes[job_id] = str(document.get("outcome"))
        now = time.time()
        started = datetime.fromisoformat(document["started_at"]).timestamp()
        finished = datetime.fromisoformat(document["finished_at"]).timestamp()
        self.handling_s.append(finished - started)
        self.delivery_s.append(now - finished)
        if self.first_started_at is None or started < self.first_started_at:
            self.first_started_at = started
        self.last_arrival = now
        if len(self.outcomes) >= self.expected:
            self.done.set()

    @property
    def succeeded(self) -> int:
        """Results whose outcome is `succeeded`."""
        return sum(1 for outcome in self.outcomes.values() if outcome == "succeeded")

    @property
    def elapsed_s(self) -> float:
        """From the first job taken to the last result in the results queue."""
        assert self.first_started_at is not None
        assert self.last_arrival is not None
        return self.last_arrival - self.first_started_at


@contextlib.asynccontextmanager
async def collect_results(scenario: Scenario, expected: int) -> AsyncIterator[Collected]:
    """Consume the results queue for the block's duration (no ack: reading is all it is for)."""
    collected = Collected(expected)

    def lost(exc: BaseException) -> None:
        collected.lost = exc
        collected.done.set()

    async with reading_results(scenario, collected.add, on_lost=lost):
        yield collected


@contextlib.asynccontextmanager
async def reading_results(
    scenario: Scenario,
    on_result: Callable[[AbstractIncomingMessage], None],
    *,
    on_lost: Callable[[BaseException], None] | None = None,
) -> AsyncIterator[None]:
    """Hand every result in the scenario's results queue to `on_result` for the block's duration, unacked."""
    connection = await connect(scenario.amqp_url)

    def on_close(_: object, exc: BaseException | None = None) -> None:
        if on_lost is not None:
            on_lost(exc or ConnectionError("the results consumer's connection closed"))

    connection.close_callbacks.add(on_close)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        queue = await channel.get_queue(scenario.names.results_queue, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            on_result(message)

        tag = await queue.consume(on_message, no_ack=True)
        try:
            yield
        finally:
            connection.close_callbacks.discard(on_close)
            with contextlib.suppress(Exception):
                await queue.cancel(tag)


@dataclass(frozen=True)
class Drained:
    """How one worker run over pre-published jobs went."""

    jobs: int
    results: int
    succeeded: int
    elapsed_s: float
    publish_per_s: float
    timed_out: bool
    handling_ms: float
    """Median time a job spends in the worker before its result is published."""
    delivery_ms: float
    """Median time from a result's publish to it being read from the results queue."""
    cpu_s: float
    """CPU the consuming process used from ready to the last result."""
    results_measured: int
    """Results read back while `cpu_s` was measured: a process takes jobs before it says it is ready."""
    wall_s: float
    """Wall time over which `cpu_s` was measured."""
    machine_busy: float
    """Share of all the machine's CPU time that was busy meanwhile (every process)."""
    run_queue_wait_s: float | None
    """Time the process's event loop was runnable but waiting for a CPU meanwhile (None: not known)."""

    @property
    def cpu_ms_per_job(self) -> float:
        """CPU per job of the consuming process, over the jobs it finished while its CPU was measured."""
        return self.cpu_s / self.results_measured * 1000 if self.results_measured else 0.0

    @property
    def cpu_share(self) -> float:
        """How much of one core the consuming process got."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def run_queue_wait_share(self) -> float | None:
        """Share of the wall time the event loop waited for a CPU: what it lost to other processes."""
        if self.run_queue_wait_s is None or not self.wall_s:
            return None
        return self.run_queue_wait_s / self.wall_s

    @property
    def jobs_per_s(self) -> float:
        """Results per second, first job taken to last result in the results queue."""
        return self.results / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def drain(
    scenario: Scenario,
    jobs: list[tuple[str, str]],
    subject: Callable[[], AbstractAsyncContextManager[Process]],
    *,
    timeout_s: float,
) -> Drained:
    """Pre-publish `jobs`, start the consuming process, and time it until every job has its result."""
    publish_per_s = await prepare_queues(scenario, jobs)
    try:
        async with collect_results(scenario, len(jobs)) as collected, subject() as process:
            cpu_before, wall_before, machine_before = cpu_s(process.pid), time.monotonic(), machine_cpu()
            wait_before, results_before = run_queue_wait_s(process.pid), len(collected.outcomes)
            timed_out = not await _wait_done(collected, process, timeout_s)
            cpu_used, wall = cpu_s(process.pid) - cpu_before, time.monotonic() - wall_before
            machine_after, wait_after = machine_cpu(), run_queue_wait_s(process.pid)
    finally:
        await delete_queues(scenario)
    return Drained(
        jobs=len(jobs),
        results=len(collected.outcomes),
        succeeded=collected.succeeded,
        elapsed_s=collected.elapsed_s if collected.outcomes else 0.0,
        publish_per_s=publish_per_s,
        timed_out=timed_out,
        handling_ms=_median_ms(collected.handling_s),
        delivery_ms=_median_ms(collected.delivery_s),
        cpu_s=cpu_used,
        results_measured=len(collected.outcomes) - results_before,
        wall_s=wall,
        machine_busy=(machine_after[0] - machine_before[0]) / max(1.0, machine_after[1] - machine_before[1]),
        run_queue_wait_s=None if wait_before is None or wait_after is None else wait_after - wait_before,
    )


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else 0.0


async def _wait_done(collected: Collected, process: Process, timeout_s: float) -> bool:
    """Wait for every result; False on timeout, an error if the process died first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collected.done.wait(), 0.5)
            if collected.lost is not None:
                msg = f"lost the broker after {len(collected.outcomes)} of {collected.expected} results"
                raise ConnectionError(msg) from collected.lost
            return True
        if process.exited():
            got = f"{len(collected.outcomes)} of {collected.expected} results"
            msg = f"{process.name} exited with {got}:\n{process.tail()}"
            raise RuntimeError(msg)
    return False
