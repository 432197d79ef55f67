"""`python -m bench` (`make bench`): run the benchmarks, print the tables, write Markdown and JSON.

Everything runs in a RabbitMQ vhost of its own, created here and deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING

from bench import follow, half_load, memory, ratelimit, redis_cost, throughput
from bench.config import from_args, parser
from bench.cpus import CpuPlan, pinned
from bench.harness import Scenario, bench_vhost, lost_broker, wait_for_broker
from bench.processes import running_emulator
from bench.profile import profile_worker
from bench.report import Section, console, display_path, redact, write

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from bench.config import BenchConfig
    from bench.harness import Drained
    from bench.processes import Emulator


def cpu_note(plan: CpuPlan) -> str:
    """The caveat every figure carries on a small machine."""
    cpus = os.cpu_count() or 1
    if plan.active:
        return f"This machine has {cpus} CPU core(s). {plan.describe()}"
    return (
        f"This machine has {cpus} CPU core(s). The worker, the emulator (its own process) and RabbitMQ all run on "
        "it, so the emulator and the broker compete with the worker for CPU: the figures are lower than what a "
        "worker with a core of its own would reach. The ratios are measured in one run, so machine noise "
        f"largely cancels. {plan.describe()}"
    )


class Bench:
    """One run: the config, the broker vhost, the emulator, and the sections measured so far."""

    def __init__(self, config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path) -> None:
        self.config = config
        self.amqp_url = amqp_url
        self.emulator = emulator
        self.log_dir = log_dir
        self.sections: list[Section] = []
        self.failed: list[str] = []
        self._bare: Drained | None = None
        self._worker_max_per_s: float | None = None

    async def step(self, name: str, work: Callable[[], Awaitable[list[Section]]]) -> None:
        """Run one benchmark; a failure is reported and the others still run."""
        console.rule(name)
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                await wait_for_broker(self.amqp_url)
                sections = await work()
                break
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
                traceback.print_exc()
                if attempt == 1 and lost_broker(exc):
                    console.print(f"[yellow]{name}: the broker went away; trying once more[/yellow]")
                    continue
                self.failed.append(name)
                sections = [Section(f"{name}: FAILED", ["error"], [[repr(exc)]])]
                break
        for section in sections:
            section.print()
            self.sections.append(section)
        console.print(f"[dim]{name} took {time.monotonic() - started:.0f} s[/dim]")

    async def run(self) -> None:
        """Every benchmark the config selects, in order."""
        only = self.config.only
        if "throughput" in only:
            await self.step("throughput", self._throughput)
        if "halfload" in only:
            await self.step("latency at half load", self._half_load)
        if "latency" in only:
            await self.step("latency", self._latency)
        if "redis" in only:
            await self.step("redis: shared limiter and ledger", self._one(redis_cost.redis_cost))
        if "ratelimit" in only:
            await self.step("rate-limit accuracy", self._one(ratelimit.accuracy))
        if "adaptation" in only:
            await self.step("adaptation", self._one(ratelimit.adaptation))
        if "memory" in only:
            await self.step("memory", self._one(memory.memory))
        if "follow" in only:
            await self.step("follow", self._one(follow.follow))

    def _one(self, benchmark: Callable[..., Awaitable[Section]]) -> Callable[[], Awaitable[list[Section]]]:
        async def work() -> list[Section]:
            return [await benchmark(self.config, self.amqp_url, self.emulator, self.log_dir)]

        return work

    async def _bare_amqp(self) -> Drained:
        """Bound (b), measured once: it has no AWS call, so no latency changes it."""
        if self._bare is None:
            scenario = Scenario(self.amqp_url, "bare", self.config.concurrency)
            self._bare = await throughput.run_bare_amqp(scenario, self.config.jobs, self.log_dir)
            console.print(f"(b) bare aio-pika loop: {self._bare.jobs_per_s:,.0f} jobs/s over {self._bare.jobs:,} jobs")
        return self._bare

    async def _throughput(self) -> list[Section]:
        """`rounds` interleaved rounds of (b), the worker and (a); the round of median ratio is the table."""
        config = self.config
        runs = []
        for number in range(1, config.rounds + 1):
            if number > 1:
                self._bare = None  # every round measures (b) afresh, next to its worker and (a)
            bare = await self._bare_amqp()
            runs.append(await throughput.measure(config, self.amqp_url, self.emulator, self.log_dir, 0, bare))
            console.print(f"round {number}: worker / bound = {runs[-1].ratio:.2f}")
        run = sorted(runs, key=lambda each: each.ratio)[len(runs) // 2]
        self._bare = run.bare_amqp
        self._worker_max_per_s = run.worker.jobs_per_s
        sections = [throughput.throughput_section(run, config.target_ratio, runs)]
        missed = run.ratio < config.target_ratio
        if config.profile == "always" or (config.profile == "auto" and missed):
            console.print(f"worker / bound = {run.ratio:.2f}: profiling the worker (cProfile)…")
            sections += await profile_worker(
                self.amqp_url, self.emulator, config.profile_jobs, config.concurrency, self.log_dir
            )
        return sections

    async def _half_load(self) -> list[Section]:
        args = (self.config, self.amqp_url, self.emulator, self.log_dir, self._worker_max_per_s)
        return [await half_load.half_load(*args)]

    async def _latency(self) -> list[Section]:
        bare = await self._bare_amqp()
        runs = [
            await throughput.measure(self.config, self.amqp_url, self.emulator, self.log_dir, latency_ms, bare)
            for latency_ms in self.config.latencies_ms
        ]
        return [throughput.latency_section(runs)]


async def main_async(config: BenchConfig, command: str, plan: CpuPlan) -> int:
    """Set up the vhost and the emulator, run, write the results; 1 if a benchmark failed."""
    started = time.monotonic()
    log_dir = config.out_dir / "logs"
    with bench_vhost() as amqp_url:
        async with running_emulator(log_dir) as emulator:
            bench = Bench(config, amqp_url, emulator, log_dir)
            await bench.run()
    duration_s = time.monotonic() - started
    summary = Section("Conditions", ["note"], [[cpu_note(plan)]])
    md_path, json_path = write([summary, *bench.sections], config, command, duration_s)
    where = display_path(md_path.parent)
    console.print(f"\nwrote {md_path.name} and {json_path.name} to {where}/ ({duration_s:.0f} s in all)")
    if bench.failed:
        console.print(f"[red]failed:[/red] {', '.join(bench.failed)}")
        return 1
    return 0


def main() -> int:
    """Parse the flags, print the command that reproduces the run, and run."""
    args = parser().parse_args()
    # SIGTERM unwinds like Ctrl-C, so the children are stopped and the vhost is deleted.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = from_args(args)
    command = redact(shlex.join(["uv", "run", "python", "-m", "bench", *sys.argv[1:]]))
    console.print(f"[bold]reproduce with:[/bold] {command}", highlight=False)
    with pinned(config.pin) as plan:
        console.print(cpu_note(plan), highlight=False)
        return asyncio.run(main_async(config, command, plan))


if __name__ == "__main__":
    sys.exit(main())
