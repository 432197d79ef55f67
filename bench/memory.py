"""Memory: the worker's RSS while a large backlog waits in the queues.

The jobs are published first; the worker then starts against an emulator with a long latency,
so it holds its prefetch (concurrency x operations deliveries) and nothing else. Its RSS, read
from `/proc/<pid>/status`, must stay flat and under the limit: the backlog stays in the broker.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from bench.harness import ROUTING_KEYS, Scenario, collect_results, delete_queues, job_ids, prepare_queues
from bench.processes import running_worker
from bench.procfs import rss_mb
from bench.report import Section, verdict
from bench.throughput import faults_for_latency

if TYPE_CHECKING:
    from pathlib import Path

    from bench.config import BenchConfig
    from bench.processes import Emulator

SAMPLE_EVERY_S = 0.5
FLAT_TOLERANCE = 0.10
"""How much the second half of the samples may exceed the first half's peak and still be flat."""


async def memory(config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path) -> Section:
    """Sample the worker's RSS with `memory_jobs` waiting."""
    scenario = Scenario(amqp_url, "memory", config.concurrency)
    jobs = job_ids("memory", ROUTING_KEYS, config.memory_jobs)
    await emulator.configure(faults_for_latency(config.memory_latency_ms))
    publish_per_s = await prepare_queues(scenario, jobs)
    samples: list[tuple[float, float]] = []
    try:
        async with (
            collect_results(scenario, len(jobs)) as collected,
            running_worker(scenario, emulator, log_dir, name="worker-memory") as worker,
        ):
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < config.memory_sample_s:
                samples.append((elapsed, rss_mb(worker.pid)))
                await asyncio.sleep(SAMPLE_EVERY_S)
            finished = len(collected.outcomes)
    finally:
        await delete_queues(scenario)
        await emulator.configure({})
    values = [mb for _, mb in samples]
    half = len(values) // 2
    early_peak, late_peak = max(values[:half]), max(values[half:])
    flat = late_peak <= early_peak * (1 + FLAT_TOLERANCE)
    limit = config.memory_limit_mb
    in_flight = config.concurrency * len(ROUTING_KEYS)
    section = Section(
        f"Memory: worker RSS with {len(jobs):,} jobs waiting, emulator latency {config.memory_latency_ms:g} ms, "
        f"sampled {config.memory_sample_s:g} s",
        ["measure", "value", "target", "verdict"],
    )
    section.add("RSS min, MB", min(values), "", "")
    section.add("RSS max, MB", max(values), f"<= {limit:g}", verdict(max(values) <= limit))
    section.add("RSS first / last sample, MB", f"{values[0]:.1f} / {values[-1]:.1f}", "", "")
    section.add(
        "peak of the second half vs the first half",
        f"{late_peak / early_peak - 1:+.1%}",
        f"<= +{FLAT_TOLERANCE:.0%} (flat)",
        verdict(flat),
    )
    section.add("jobs finished while sampling", finished, "", "")
    section.notes.append(
        f"The worker holds at most {in_flight} deliveries (prefetch {config.concurrency} x {len(ROUTING_KEYS)} "
        f"operations); the jobs were pre-published at {publish_per_s:,.0f}/s."
    )
    section.data = {"samples": samples, "min_mb": min(values), "max_mb": max(values), "finished": finished}
    return section
