"""Added latency at half load: publish -> result for the worker and for a naive loop at the same rate.

Jobs are published at a steady rate (half the worker's maximum, from the throughput run of the
same `python -m bench` when it ran first), each stamped when it leaves the publisher; the
latency of a job is from then to its result read back from the results queue. The worker runs
as deployed (validation, limits, ledger, metrics, info logs); the naive loop
(`bench.bare_loop`) consumes, calls AWS, publishes with confirm and acks, nothing else. Both
see the same broker, emulator and rate, so the difference of their percentiles is what the
dispatcher adds to a job's latency.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from bench.harness import (
    ROUTING_KEYS,
    Scenario,
    connect,
    delete_queues,
    job_ids,
    job_message,
    prepare_queues,
    reading_results,
)
from bench.processes import Process, running_worker
from bench.procfs import cpu_s
from bench.report import Section, verdict
from bench.throughput import naive_loop

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from aio_pika.abc import AbstractIncomingMessage

    from bench.config import BenchConfig
    from bench.processes import Emulator

FALLBACK_RATE_PER_S = 250.0
"""The rate when no throughput run measured the worker's maximum first."""
WARMUP_S = 2.0
"""Jobs published in the first seconds open connections and fill caches: measured, not counted."""


@dataclass
class Latencies:
    """When each job was published and when its result came back."""

    expected: int
    counted_from: float = 0.0
    """Monotonic time: jobs published before it are not counted (the warm-up)."""
    published: dict[str, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    received: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def arrived(self, message: AbstractIncomingMessage) -> None:
        """A result read back: its job's latency, once."""
        job_id = str(orjson.loads(message.body).get("job_id") or message.message_id)
        sent = self.published.pop(job_id, None)
        if sent is None:
            return
        if sent >= self.counted_from:
            self.seconds.append(time.monotonic() - sent)
        self.received += 1
        if self.received >= self.expected:
            self.done.set()

    def percentile_ms(self, q: float) -> float:
        """The q-quantile of the latencies, ms."""
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


@dataclass(frozen=True)
class Paced:
    """One subject at the paced rate: its latencies and the CPU it used per job."""

    name: str
    latencies: Latencies
    cpu_ms_per_job: float
    achieved_per_s: float


async def paced_run(
    scenario: Scenario, jobs: int, rate_per_s: float, subject: Callable[[], AbstractAsyncContextManager[Process]]
) -> tuple[Latencies, float, float]:
    """Publish `jobs` at `rate_per_s` to a ready subject; (latencies, its CPU s, achieved publish rate)."""
    await prepare_queues(scenario, [])
    latencies = Latencies(jobs)
    try:
        async with reading_results(scenario, latencies.arrived), subject() as process:
            connection = await connect(scenario.amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=False)
                exchange = await channel.get_exchange(scenario.names.jobs_exchange)
                cpu_before = cpu_s(process.pid)
                started = time.monotonic()
                latencies.counted_from = started + WARMUP_S
                for i, (routing_key, job_id) in enumerate(job_ids(scenario.prefix, ROUTING_KEYS, jobs)):
                    due = started + i / rate_per_s
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    message = job_message(routing_key, job_id)
                    latencies.published[job_id] = time.monotonic()
                    await exchange.publish(message, routing_key)
                achieved = jobs / (time.monotonic() - started)
                async with asyncio.timeout(60 + jobs / rate_per_s):
                    await latencies.done.wait()
                cpu_used = cpu_s(process.pid) - cpu_before
    finally:
        await delete_queues(scenario)
    return latencies, cpu_used, achieved


async def half_load(
    config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path, worker_max_per_s: float | None
) -> Section:
    """The worker and the naive loop, one after the other, at half the worker's maximum rate."""
    rate = worker_max_per_s / 2 if worker_max_per_s else FALLBACK_RATE_PER_S
    jobs = config.half_load_jobs
    await emulator.configure({})
    runs: list[Paced] = []
    for name in ("worker", "naive loop"):
        scenario = Scenario(amqp_url, "half" + name.replace(" ", ""), config.concurrency)
        subject: Callable[[], AbstractAsyncContextManager[Process]]
        if name == "worker":
            subject = functools.partial(running_worker, scenario, emulator, log_dir, name="worker-half-load")
        else:
            subject = naive_loop(scenario, emulator, jobs, log_dir)
        latencies, cpu_used, achieved = await paced_run(scenario, jobs, rate, subject)
        runs.append(Paced(name, latencies, cpu_used / jobs * 1000, achieved))
    return _section(runs, rate, config.max_added_p99_ms, measured=worker_max_per_s is not None)


def _section(runs: list[Paced], rate: float, max_added_p99_ms: float, *, measured: bool) -> Section:
    worker, naive = runs
    section = Section(
        f"Latency at half load: {worker.latencies.expected:,} jobs at {rate:,.0f} jobs/s, publish -> result read "
        f"(the first {WARMUP_S:g} s not counted)",
        ["measure", "p50 ms", "p99 ms", "max ms", "CPU ms per job", "target", "verdict"],
    )
    for run in runs:
        lat = run.latencies
        section.add(run.name, *(lat.percentile_ms(q) for q in (0.5, 0.99, 1.0)), run.cpu_ms_per_job)
    added_p50 = worker.latencies.percentile_ms(0.5) - naive.latencies.percentile_ms(0.5)
    added_p99 = worker.latencies.percentile_ms(0.99) - naive.latencies.percentile_ms(0.99)
    target = f"p99 <= {max_added_p99_ms:g}"
    section.add("added by the worker", added_p50, added_p99, "", "", target, verdict(added_p99 <= max_added_p99_ms))
    where = "half the worker's jobs/s in this run's throughput benchmark" if measured else "a fixed rate"
    section.notes.append(
        f"The rate is {where}. The naive loop is bench/bare_loop.py: consume, call AWS, publish the result with "
        "confirm, ack; no validation, limits, ledger, retries, metrics or logs. Publishes reached "
        f"{worker.achieved_per_s:,.0f} and {naive.achieved_per_s:,.0f} jobs/s."
    )
    section.data = {
        "rate_per_s": rate,
        "runs": {
            run.name: {
                "p50_ms": run.latencies.percentile_ms(0.5),
                "p99_ms": run.latencies.percentile_ms(0.99),
                "max_ms": run.latencies.percentile_ms(1.0),
                "cpu_ms_per_job": run.cpu_ms_per_job,
            }
            for run in runs
        },
        "added_p99_ms": added_p99,
    }
    return section
