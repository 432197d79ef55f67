"""Throughput: the worker draining pre-published jobs, against the two loops it is made of.

(a) a bare aiobotocore loop making the same calls with no broker, and (b) a bare aio-pika
consume -> publish-with-confirm -> ack loop with no AWS call. A worker doing both on one event
loop can at best reach the combined bound 1/(1/a + 1/b); with emulator latency, it can at best
reach concurrency x operations / latency as well. (c), the naive loop, does both in one process
with nothing else: what a team would write instead of using the dispatcher.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from bench.harness import AWS_ENV, ROUTING_KEYS, Scenario, drain, job_ids
from bench.processes import Process, running_worker, wait_file
from bench.procfs import cpu_s
from bench.report import Section, verdict

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from bench.config import BenchConfig
    from bench.harness import Drained
    from bench.processes import Emulator


@dataclass(frozen=True)
class BareAws:
    """Bound (a): calls per second and the CPU they took."""

    jobs: int
    elapsed_s: float
    cpu_s: float

    @property
    def jobs_per_s(self) -> float:
        """Calls per second."""
        return self.jobs / self.elapsed_s

    @property
    def cpu_ms_per_job(self) -> float:
        """CPU per call."""
        return self.cpu_s / self.jobs * 1000

    @property
    def cpu_share(self) -> float:
        """How much of one core the loop got."""
        return self.cpu_s / self.elapsed_s


@dataclass(frozen=True)
class Run:
    """The three measurements at one emulator latency."""

    latency_ms: float
    jobs: int
    concurrency: int
    worker: Drained
    bare_aws: BareAws
    bare_amqp: Drained
    naive: Drained
    """(c): the naive loop draining the same jobs."""
    emulator_cpu_ms_per_call: float
    """CPU the emulator process spent per call, over the worker run and bound (a)."""

    @property
    def bare_aws_per_s(self) -> float:
        """Bound (a)."""
        return self.bare_aws.jobs_per_s

    @property
    def bare_amqp_per_s(self) -> float:
        """Bound (b)."""
        return self.bare_amqp.jobs_per_s

    @property
    def cpu_ratio(self) -> float:
        """CPU per job of (a) plus (b), over the worker's: the ratio with CPU contention taken out."""
        return (self.bare_aws.cpu_ms_per_job + self.bare_amqp.cpu_ms_per_job) / self.worker.cpu_ms_per_job

    @property
    def combined_bound_per_s(self) -> float:
        """What one loop doing (a) then (b) for every job can reach: 1/(1/a + 1/b)."""
        return 1 / (1 / self.bare_aws_per_s + 1 / self.bare_amqp_per_s)

    @property
    def concurrency_bound_per_s(self) -> float:
        """Calls in flight over the latency: concurrency x operations / latency."""
        if self.latency_ms <= 0:
            return math.inf
        return self.concurrency * len(ROUTING_KEYS) / (self.latency_ms / 1000)

    @property
    def bound_per_s(self) -> float:
        """The tighter of the two bounds."""
        return min(self.combined_bound_per_s, self.concurrency_bound_per_s)

    @property
    def ratio(self) -> float:
        """Worker throughput over the bound."""
        return self.worker.jobs_per_s / self.bound_per_s

    @property
    def naive_ratio(self) -> float:
        """Worker throughput over the naive loop's: what using the dispatcher costs against writing the loop."""
        return self.worker.jobs_per_s / self.naive.jobs_per_s if self.naive.jobs_per_s else 0.0


def faults_for_latency(latency_ms: float) -> dict[str, dict[str, float]]:
    """Emulator faults adding `latency_ms` to every operation (none at 0)."""
    return {rk: {"latency_ms": latency_ms} for rk in ROUTING_KEYS} if latency_ms > 0 else {}


def drain_timeout_s(jobs: int) -> float:
    """Generous: a healthy run takes a fraction of this; a stuck one must still end."""
    return 60 + jobs / 40


async def run_worker(
    scenario: Scenario,
    emulator: Emulator,
    jobs: int,
    log_dir: Path,
    *,
    name: str,
    profile_path: Path | None = None,
) -> Drained:
    """The worker draining `jobs` pre-published jobs spread over the five operations."""

    def subject() -> contextlib.AbstractAsyncContextManager[Process]:
        return running_worker(scenario, emulator, log_dir, name=name, profile_path=profile_path)

    return await _drain_jobs(scenario, jobs, subject)


async def run_bare_amqp(scenario: Scenario, jobs: int, log_dir: Path) -> Drained:
    """Bound (b): the bare aio-pika loop draining the same number of jobs."""
    subject = _until_ready("bare-amqp", "bench.bare_amqp", _loop_args(scenario), {}, log_dir)
    return await _drain_jobs(scenario, jobs, subject)


def naive_loop(
    scenario: Scenario, emulator: Emulator, jobs: int, log_dir: Path
) -> Callable[[], contextlib.AbstractAsyncContextManager[Process]]:
    """(c), `bench.bare_loop`, consuming the queues of `scenario` once its consumers are attached."""
    args = [*_loop_args(scenario), "--jobs", str(jobs)]
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": emulator.url}
    return _until_ready("bare-loop", "bench.bare_loop", args, env, log_dir)


async def run_naive_loop(scenario: Scenario, emulator: Emulator, jobs: int, log_dir: Path) -> Drained:
    """(c): the naive loop draining `jobs` pre-published jobs, as the worker does."""
    return await _drain_jobs(scenario, jobs, naive_loop(scenario, emulator, jobs, log_dir))


async def _drain_jobs(
    scenario: Scenario, jobs: int, subject: Callable[[], contextlib.AbstractAsyncContextManager[Process]]
) -> Drained:
    """`jobs` pre-published jobs over the five operations, drained by what `subject` starts."""
    return await drain(scenario, job_ids(scenario.prefix, ROUTING_KEYS, jobs), subject, timeout_s=drain_timeout_s(jobs))


def _loop_args(scenario: Scenario) -> list[str]:
    """The flags every bare loop takes: the broker, the scenario's names and its prefetch."""
    return ["--url", scenario.amqp_url, "--prefix", scenario.prefix, "--concurrency", str(scenario.concurrency)]


def _until_ready(
    name: str, module: str, args: list[str], env: dict[str, str], log_dir: Path
) -> Callable[[], contextlib.AbstractAsyncContextManager[Process]]:
    """A bare loop's process, yielded once it has created its `--ready` file, stopped after the block."""

    @contextlib.asynccontextmanager
    async def subject() -> AsyncIterator[Process]:
        ready = log_dir / f"{name}.ready"
        ready.unlink(missing_ok=True)
        process = Process(name, ["-m", module, *args, "--ready", str(ready)], env, log_dir, measured=True)
        try:
            await wait_file(ready, process)
            yield process
        finally:
            await process.stop()

    return subject


async def run_bare_aws(emulator: Emulator, jobs: int, concurrency: int, log_dir: Path, *, name: str) -> BareAws:
    """Bound (a): the bare aiobotocore loop making the same calls."""
    out = log_dir / f"{name}.json"
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": emulator.url}
    args = ["-m", "bench.bare_aws", "--jobs", str(jobs), "--concurrency", str(concurrency), "--out", str(out)]
    process = Process(name, args, env, log_dir, measured=True)
    code = await process.wait(timeout_s=drain_timeout_s(jobs))
    if code != 0:
        msg = f"the bare aiobotocore loop failed:\n{process.tail()}"
        raise RuntimeError(msg)
    figures = orjson.loads(out.read_bytes())
    if figures["errors"]:
        msg = f"the bare aiobotocore loop had {figures['errors']} failed calls of {jobs}"
        raise RuntimeError(msg)
    return BareAws(int(figures["jobs"]), float(figures["elapsed_s"]), float(figures["cpu_s"]))


async def measure(
    config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path, latency_ms: float, bare_amqp: Drained
) -> Run:
    """The worker, bound (a) and the naive loop (c) at one emulator latency."""
    jobs = config.jobs if latency_ms <= 0 else config.latency_jobs
    label = f"{latency_ms:g}ms"
    await emulator.configure(faults_for_latency(latency_ms))
    scenario = Scenario(amqp_url, f"tp{label}", config.concurrency)
    emulator_cpu = cpu_s(emulator.process.pid)
    worker = await run_worker(scenario, emulator, jobs, log_dir, name=f"worker-{label}")
    await emulator.configure(faults_for_latency(latency_ms))
    emulator_cpu_worker, emulator_cpu = cpu_s(emulator.process.pid) - emulator_cpu, cpu_s(emulator.process.pid)
    bare_aws = await run_bare_aws(emulator, jobs, config.concurrency, log_dir, name=f"bare-aws-{label}")
    emulator_cpu_bare = cpu_s(emulator.process.pid) - emulator_cpu
    naive = await run_naive_loop(Scenario(amqp_url, f"naive{label}", config.concurrency), emulator, jobs, log_dir)
    return Run(
        latency_ms,
        jobs,
        config.concurrency,
        worker,
        bare_aws,
        bare_amqp,
        naive,
        emulator_cpu_ms_per_call=(emulator_cpu_worker + emulator_cpu_bare) / (2 * jobs) * 1000,
    )


def throughput_section(run: Run, target: float, rounds: list[Run]) -> Section:
    """The CPU-bound comparison (no emulator latency): `run` is the median of `rounds` by ratio."""
    section = Section(
        f"Throughput: {run.jobs:,} jobs over {len(ROUTING_KEYS)} operations, concurrency {run.concurrency}, "
        f"no emulator latency (the median of {len(rounds)} interleaved round(s) by worker / bound)",
        ["measure", "jobs/s", "CPU ms per job", "share of a core", "target", "verdict"],
    )
    worker, aws, amqp = run.worker, run.bare_aws, run.bare_amqp
    section.add("worker (python -m dispatcher run)", worker.jobs_per_s, worker.cpu_ms_per_job, _pct(worker.cpu_share))
    section.add("(a) bare aiobotocore loop, no broker", aws.jobs_per_s, aws.cpu_ms_per_job, _pct(aws.cpu_share))
    section.add(
        "(b) bare aio-pika consume/publish-confirm/ack, no AWS",
        amqp.jobs_per_s,
        amqp.cpu_ms_per_job,
        _pct(amqp.cpu_share),
    )
    section.add("combined bound 1/(1/a + 1/b)", run.combined_bound_per_s, aws.cpu_ms_per_job + amqp.cpu_ms_per_job, "")
    naive = run.naive
    section.add(
        "(c) naive loop: consume, call AWS, publish-confirm, ack",
        naive.jobs_per_s,
        naive.cpu_ms_per_job,
        _pct(naive.cpu_share),
    )
    section.add("worker / bound", run.ratio, "", "", f">= {target:g}", verdict(run.ratio >= target))
    section.add("CPU per job of a + b, over the worker's", run.cpu_ratio, "", "", "", "")
    section.add("naive loop / bound", naive.jobs_per_s / run.combined_bound_per_s, "", "", "", "")
    section.add("worker / naive loop", run.naive_ratio, "", "", "", "")
    section.add("CPU per job of c, over the worker's", naive.cpu_ms_per_job / worker.cpu_ms_per_job, "", "", "", "")
    section.notes += _run_notes(run)
    emulator_ms = run.emulator_cpu_ms_per_call
    section.notes.append(
        f"While the worker drained, the machine's CPUs were {worker.machine_busy:.0%} busy "
        f"(the worker, the emulator, RabbitMQ and anything else running); the emulator used {emulator_ms:.2f} ms "
        f"of CPU per call: {emulator_ms * worker.jobs_per_s / 1000:.0%} of a core at the worker's rate, "
        f"{emulator_ms * aws.jobs_per_s / 1000:.0%} at (a)'s."
    )
    section.notes += _contention_notes(run)
    section.notes.append(
        f"Median per job: {worker.handling_ms:.1f} ms in the worker before its result is published, "
        f"{worker.delivery_ms:.0f} ms from that publish to the result read back from the results queue "
        f"(bare aio-pika loop: {amqp.delivery_ms:.0f} ms)."
    )
    section.notes.append(
        "CPU is the process's own (user + system, from /proc or process_time); 'share of a core' is CPU over wall "
        "time: under 100% means the process waited or did not get the CPU."
    )
    if len(rounds) > 1:
        section.notes.append(
            "Every round, in order (worker / bound, CPU ratio, worker / naive loop; worker, a, b, c jobs/s): "
            + "; ".join(
                f"{each.ratio:.2f}, {each.cpu_ratio:.2f}, {each.naive_ratio:.2f} ({each.worker.jobs_per_s:,.0f}, "
                f"{each.bare_aws_per_s:,.0f}, {each.bare_amqp_per_s:,.0f}, {each.naive.jobs_per_s:,.0f})"
                for each in rounds
            )
            + f". Median CPU ratio {statistics.median(each.cpu_ratio for each in rounds):.2f}."
        )
    section.data = {**_run_data(run), "rounds": [_run_data(each) for each in rounds]}
    return section


def _contention_notes(run: Run) -> list[str]:
    """Where the worker's wall time went: running, waiting for a CPU, or idle; and its rate on a core of its own."""
    worker = run.worker
    waited = worker.run_queue_wait_share
    if waited is None:
        return []
    idle = max(0.0, 1 - worker.cpu_share - waited)
    own_core = 1000 / worker.cpu_ms_per_job if worker.cpu_ms_per_job else 0.0
    others = [(name, drained.run_queue_wait_share) for name, drained in (("(b)", run.bare_amqp), ("(c)", run.naive))]
    waits = ", ".join(f"{name} {share:.0%}" for name, share in others if share is not None)
    bare = f" (the same wait for {waits} of their drains)" if waits else ""
    note = (
        f"The worker's event loop ran {worker.cpu_share:.0%} of the drain, was runnable but waiting for a CPU "
        f"{waited:.0%} (taken by the emulator, RabbitMQ and the rest; /proc/<pid>/schedstat){bare}, and had "
        f"nothing to do {idle:.0%}. At its CPU per job, a core of its own would give {own_core:,.0f} jobs/s."
    )
    return [note]


def _pct(share: float) -> str:
    return f"{share:.0%}"


def latency_section(runs: list[Run]) -> Section:
    """The concurrency-bound comparison, one row per emulator latency."""
    section = Section(
        "Throughput with emulator latency (concurrency-bound)",
        [
            "latency ms",
            "jobs",
            "worker jobs/s",
            "(a) bare aiobotocore jobs/s",
            "1/(1/a + 1/b)",
            "concurrency bound",
            "worker / min(bounds)",
            "(c) naive loop jobs/s",
            "worker / naive loop",
            "median ms in worker",
            "median ms publish → read",
            "worker share of a core",
        ],
    )
    for run in runs:
        section.add(
            run.latency_ms,
            run.jobs,
            run.worker.jobs_per_s,
            run.bare_aws_per_s,
            run.combined_bound_per_s,
            run.concurrency_bound_per_s,
            run.ratio,
            run.naive.jobs_per_s,
            run.naive_ratio,
            run.worker.handling_ms,
            run.worker.delivery_ms,
            _pct(run.worker.cpu_share),
        )
        section.notes += [f"{run.latency_ms:g} ms: {note}" for note in _run_notes(run)]
    if runs:
        section.notes.append(f"(b), the bare aio-pika loop, has no AWS call: {runs[0].bare_amqp_per_s:,.0f} jobs/s.")
    section.notes.append(
        "concurrency bound = concurrency x 5 operations / latency: the most calls that many slots can make; "
        "(a) at the same latency shows how much of it the AWS client alone reaches on this machine."
    )
    section.notes.append(
        "The worker holds each delivery until its result is confirmed, so a slot is busy for the time in the "
        "worker plus the publish confirm; the last two columns show both (publish → read stands for the confirm)."
    )
    section.data = {"runs": [_run_data(run) for run in runs]}
    return section


def _run_notes(run: Run) -> list[str]:
    worker = run.worker
    notes = []
    if worker.timed_out or worker.results < worker.jobs:
        notes.append(f"worker timed out: {worker.results:,} of {worker.jobs:,} results")
    if worker.succeeded < worker.results:
        notes.append(f"{worker.results - worker.succeeded:,} results were failures")
    return notes


def _run_data(run: Run) -> dict[str, object]:
    return {
        "latency_ms": run.latency_ms,
        "jobs": run.jobs,
        "concurrency": run.concurrency,
        "worker_jobs_per_s": run.worker.jobs_per_s,
        "worker_elapsed_s": run.worker.elapsed_s,
        "worker_results": run.worker.results,
        "worker_succeeded": run.worker.succeeded,
        "worker_handling_ms_median": run.worker.handling_ms,
        "worker_delivery_ms_median": run.worker.delivery_ms,
        "bare_amqp_delivery_ms_median": run.bare_amqp.delivery_ms,
        "prepublish_jobs_per_s": run.worker.publish_per_s,
        "worker_cpu_ms_per_job": run.worker.cpu_ms_per_job,
        "worker_cpu_share": run.worker.cpu_share,
        "machine_busy_during_worker": run.worker.machine_busy,
        "worker_run_queue_wait_share": run.worker.run_queue_wait_share,
        "emulator_cpu_ms_per_call": run.emulator_cpu_ms_per_call,
        "bare_aws_jobs_per_s": run.bare_aws_per_s,
        "bare_aws_cpu_ms_per_job": run.bare_aws.cpu_ms_per_job,
        "bare_amqp_cpu_ms_per_job": run.bare_amqp.cpu_ms_per_job,
        "cpu_ratio": run.cpu_ratio,
        "bare_amqp_jobs_per_s": run.bare_amqp_per_s,
        "combined_bound_jobs_per_s": run.combined_bound_per_s,
        "concurrency_bound_jobs_per_s": None
        if math.isinf(run.concurrency_bound_per_s)
        else run.concurrency_bound_per_s,
        "ratio": run.ratio,
        "naive_jobs_per_s": run.naive.jobs_per_s,
        "naive_cpu_ms_per_job": run.naive.cpu_ms_per_job,
        "worker_over_naive": run.naive_ratio,
    }
