"""Where the worker's time goes: one worker run under cProfile, summarised by package and function.

The worker runs as `python -m bench.profiled <file> run` (cProfile from the moment it is ready
until it drains and exits on SIGTERM). cProfile's clock is wall time, so the event loop's idle
wait in `epoll` is taken out of the total. Deterministic profiling slows the worker down: read
the shares, not the absolute times.
"""

from __future__ import annotations

import pstats
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import orjson

from bench.harness import Scenario
from bench.report import Section
from bench.throughput import run_worker

if TYPE_CHECKING:
    from pathlib import Path

    from bench.harness import Drained
    from bench.processes import Emulator

TOP_FUNCTIONS = 25
STAGES = 15
_SITE = re.compile(r".*/site-packages/")
_STDLIB = re.compile(r".*/lib/python3\.\d+/")
_PROJECT = re.compile(r".*/(?=dispatcher/|bench/)")


def short_path(filename: str) -> str:
    """A file name without the machine's prefix: `botocore/auth.py`, `asyncio/events.py`."""
    for pattern in (_SITE, _STDLIB, _PROJECT):
        if pattern.match(filename):
            return pattern.sub("", filename, count=1)
    return filename


def _is_idle(key: tuple[str, int, str]) -> bool:
    """The event loop waiting for sockets: wall time, but no work."""
    filename, _, name = key
    return filename == "~" and name.startswith("<method 'poll' of 'select.")


def package_of(filename: str) -> str:
    """The top-level package a function belongs to; `~` (C built-ins) stays apart."""
    if filename == "~":
        return "C built-ins (socket, ssl, hashing, dict...)"
    return short_path(filename).split("/", 1)[0].removesuffix(".py")


async def profile_worker(
    amqp_url: str, emulator: Emulator, jobs: int, concurrency: int, log_dir: Path
) -> list[Section]:
    """Drain `jobs` with a profiled worker; returns the package and the function tables."""
    await emulator.configure({})
    profile_path = log_dir / "worker.prof"
    scenario = Scenario(amqp_url, "profile", concurrency)
    drained = await run_worker(scenario, emulator, jobs, log_dir, name="worker-profiled", profile_path=profile_path)
    probe = orjson.loads(profile_path.with_suffix(".probe.json").read_bytes())
    stats = pstats.Stats(str(profile_path))
    for key in [key for key in stats.stats if _is_idle(key)]:  # type: ignore[attr-defined]
        del stats.stats[key]  # type: ignore[attr-defined]
    total_s = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    return [
        _waits(probe, drained, concurrency),
        _by_package(stats, total_s, drained.jobs),
        _stages(stats, total_s, drained.jobs),
        _by_function(stats, total_s),
    ]


def _waits(probe: dict[str, Any], drained: Drained, concurrency: int) -> Section:
    """What the jobs in flight were waiting for, from the probe's samples."""
    samples = probe["samples"]
    section = Section(
        f"Profiled run: what jobs wait for (sampled every {probe['every_s'] * 1000:g} ms in the worker)",
        ["measure", "median", "p90", "max"],
    )
    for key, label in (
        ("lock_waiters", "publishes waiting for the publish channel's lock (aiormq)"),
        ("unconfirmed", "publishes sent, waiting for the broker's confirm"),
        ("loop_lag_ms", "event-loop lag, ms (how late a 100 ms sleep wakes)"),
    ):
        values = sorted(sample[key] for sample in samples)
        if values:
            section.add(label, _quantile(values, 0.5), _quantile(values, 0.9), values[-1])
    section.notes.append(
        f"{drained.jobs:,} jobs at {drained.jobs_per_s:,.0f} jobs/s under the profiler, up to "
        f"{concurrency * 5} deliveries in flight. aiormq holds a channel's lock from a publish until its "
        "frame is written, so the publishes of one channel go one after another, each taking event-loop turns."
    )
    section.data = {"samples": len(samples), "every_s": probe["every_s"]}
    return section


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def _by_package(stats: pstats.Stats, total_s: float, jobs: int) -> Section:
    own: dict[str, float] = defaultdict(float)
    for (filename, _, _), row in stats.stats.items():  # type: ignore[attr-defined]
        own[package_of(filename)] += row[2]
    section = Section(
        f"Profile of the worker (cProfile, {jobs:,} jobs, no latency): own time by package",
        ["package", "own time s", "share", "per job ms"],
    )
    for package, seconds in sorted(own.items(), key=lambda item: -item[1])[:12]:
        section.add(package, seconds, f"{seconds / total_s:.1%}", seconds / jobs * 1000)
    section.notes.append(
        f"{total_s:.1f} s busy (idle epoll wait excluded) for {jobs:,} jobs = {total_s / jobs * 1000:.2f} ms per job "
        "under cProfile (the profiler itself inflates it: read the shares)."
    )
    section.data = {"total_s": total_s, "jobs": jobs, "own_s_by_package": dict(own)}
    return section


def _stages(stats: pstats.Stats, total_s: float, jobs: int) -> Section:
    """The dispatcher's own functions by cumulative time: the stages of a job and what they cost."""
    rows = [
        (f"{short_path(filename)}:{line} {name}", row)
        for (filename, line, name), row in stats.stats.items()  # type: ignore[attr-defined]
        if short_path(filename).startswith("dispatcher/") and name != "<module>"
    ]
    rows.sort(key=lambda item: -item[1][3])
    section = Section(
        "Profile of the worker: dispatcher functions by cumulative time (the stages of a job)",
        ["function", "calls", "cumulative s", "share", "per job ms"],
    )
    stages = []
    for where, (_, calls, _, cumulative_s, _) in rows[:STAGES]:
        section.add(where, calls, cumulative_s, f"{cumulative_s / total_s:.1%}", cumulative_s / jobs * 1000)
        stages.append({"function": where, "calls": calls, "cumulative_s": cumulative_s})
    section.notes.append(
        "A coroutine's cumulative time is the CPU spent while it (or what it awaits) runs, summed over its resumes."
    )
    section.data = {"stages": stages}
    return section


def _by_function(stats: pstats.Stats, total_s: float) -> Section:
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:TOP_FUNCTIONS]  # type: ignore[attr-defined]
    section = Section(
        f"Profile of the worker: top {TOP_FUNCTIONS} functions by own time",
        ["function", "calls", "own s", "own share", "cumulative s"],
    )
    top = []
    for (filename, line, name), (_, calls, own_s, cumulative_s, _) in rows:
        where = name if filename == "~" else f"{short_path(filename)}:{line} {name}"
        section.add(where, calls, own_s, f"{own_s / total_s:.1%}", cumulative_s)
        top.append({"function": where, "calls": calls, "own_s": own_s, "cumulative_s": cumulative_s})
    section.data = {"top": top}
    return section
