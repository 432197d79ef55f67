"""Following: thousands of started jobs followed to their end by one worker, Describe rate-limited.

One worker process and the emulator, in one run: a batch of plain jobs is started first (the
start throughput alone), then `follow_jobs` jobs with `"follow": true` whose emulated durations are
uniform in [min, max] s, then the same plain batch again while those are polled. Every Describe
call is limited to `rate`/s per operation in the worker and at the emulator (which throttles above
it), so the run shows whether the limit holds, how late completions come, and that the followed
jobs wait in the broker rather than in the worker's memory.

Sources: completion results read from the results queue (with the time each arrived), the
emulator's job list (`ended_at`: when the AWS job ended) and its call log, sampled every few
seconds and de-duplicated by `seq` (it keeps only the newest 10,000 calls), the worker's RSS from
`/proc`, and its `/metrics` at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aio_pika import DeliveryMode, Message

from bench.harness import PUBLISH_WINDOW, ROUTING_KEYS, Scenario, connect, delete_queues
from bench.processes import running_worker
from bench.procfs import cpu_s, machine_cpu, rss_mb
from bench.ratelimit import max_in_window
from bench.report import Section, verdict
from dispatcher.examples import example_job
from dispatcher.operations import OPERATION_SPECS
from dispatcher.topology import declare_topology, poll_schedule

if TYPE_CHECKING:
    from pathlib import Path

    from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

    from bench.config import BenchConfig
    from bench.processes import Emulator, Process

DESCRIBE_KEYS: dict[str, str] = {
    spec.routing_key: spec.companion_routing_key
    for spec in OPERATION_SPECS
    if spec.routing_key in ROUTING_KEYS and spec.companion_routing_key is not None
}
"""Start routing key -> its Describe/Get routing key (the worker's limit and the emulator's fault key)."""
RSS_EVERY_S = 1.0
WARMUP_JOBS = 100
"""Plain jobs started and left out before the first measured batch: the AWS clients' first connections."""
CALLS_EVERY_S = 4.0
"""At the most a few hundred calls a second, the emulator's 10,000-call log covers 20 s or more."""
RATE_TOLERANCE = 0.02
LIMIT_SHARE = 0.9
"""A second with at least this share of the rate's calls counts as one at the limit."""
STEADY_WINDOW_S = 60.0
"""A token bucket allows rate x 60 + burst calls in 60 s: burst 50 at 50/s adds 1.7%, inside the tolerance."""
_FOLLOW_POLLS = re.compile(
    r'^dispatcher_follow_polls_total\{operation="([^"]+)",outcome="([^"]+)"\} (\S+)$', re.MULTILINE
)


@dataclass
class Results:
    """Everything read from the results queue: start results and completions, with arrival times."""

    starts: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    completions: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    duplicate_completions: int = 0
    duplicate_starts: int = 0
    other: int = 0
    lost: BaseException | None = None

    def add(self, message: AbstractIncomingMessage) -> None:
        """File one result by kind; a second one for the same job id is counted, not kept."""
        document = orjson.loads(message.body)
        now = time.time()
        job_id = str(document.get("job_id") or message.message_id)
        if document.get("phase") == "finished":
            if job_id in self.completions:
                self.duplicate_completions += 1
            else:
                self.completions[job_id] = (document, now)
        elif "outcome" in document:
            if job_id in self.starts:
                self.duplicate_starts += 1
            else:
                self.starts[job_id] = (document, now)
        else:
            self.other += 1

    def start_rate(self, ids: list[str]) -> float:
        """Start results per second of a batch: from the first job taken to its last result read back."""
        got = [self.starts[i] for i in ids if i in self.starts]
        if len(got) < 2:
            return 0.0
        first = min(_epoch(document["started_at"]) for document, _ in got)
        last = max(arrival for _, arrival in got)
        return len(got) / (last - first) if last > first else 0.0


@dataclass
class Sampled:
    """Readings taken while the run goes: worker RSS and the emulator's Describe calls by `seq`."""

    rss: list[tuple[float, float]] = field(default_factory=list)
    calls: dict[int, tuple[str, float, str, str | None, str | None]] = field(default_factory=dict)
    """seq -> (routing key, received_at, outcome, error code, emulator job id), Describe calls only."""
    log_total: int = 0
    seen_seqs: int = 0
    gaps: int = 0
    """Calls that left the emulator's log before a sample read them."""
    _last_seq: int = 0

    def add_calls(self, document: dict[str, Any], describe_keys: set[str]) -> None:
        """Keep the Describe calls of one `GET /_emulator/calls` not seen before; count any gap."""
        calls = document["calls"]
        self.log_total = int(document["total"])
        if calls and calls[0]["seq"] > self._last_seq + 1:
            self.gaps += calls[0]["seq"] - self._last_seq - 1
        for call in calls:
            seq = call["seq"]
            if seq <= self._last_seq:
                continue
            self.seen_seqs += 1
            if call["routing_key"] in describe_keys:
                received = _epoch(call.get("received_at") or call["time"])
                self.calls[seq] = (call["routing_key"], received, call["outcome"], call["error_code"], call["job_id"])
        if calls:
            self._last_seq = max(self._last_seq, calls[-1]["seq"])


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _job_message(routing_key: str, job_id: str, *, follow: bool) -> Message:
    body = example_job(routing_key, job_id, follow=True) if follow else example_job(routing_key, job_id)
    return Message(
        orjson.dumps(body),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=job_id,
    )


async def _publish(exchange: AbstractExchange, jobs: list[tuple[str, str]], *, follow: bool) -> None:
    """Publish with confirms, `PUBLISH_WINDOW` at a time, while the worker already consumes."""
    for start in range(0, len(jobs), PUBLISH_WINDOW):
        batch = jobs[start : start + PUBLISH_WINDOW]
        await asyncio.gather(
            *(exchange.publish(_job_message(rk, job_id, follow=follow), rk, mandatory=True) for rk, job_id in batch)
        )


def _batch(prefix: str, count: int) -> list[tuple[str, str]]:
    return [(ROUTING_KEYS[i % len(ROUTING_KEYS)], f"{prefix}-{i:06d}") for i in range(count)]


async def _declare(scenario: Scenario) -> None:
    """The worker's whole topology, follow queues included, declared before it starts."""
    settings = scenario.settings
    connection = await connect(scenario.amqp_url)
    async with connection:
        channel = await connection.channel()
        await declare_topology(
            channel,
            scenario.names,
            ROUTING_KEYS,
            retry_delays_s=settings.retry_delays,
            delivery_limit=settings.delivery_limit,
            results_queue_enabled=True,
            follow_routing_keys=ROUTING_KEYS,
            follow_waits_s=poll_schedule(settings).waits_s,
        )


async def _emulator_get(session: aiohttp.ClientSession, emulator: Emulator, path: str) -> dict[str, Any]:
    async with session.get(f"{emulator.url}/_emulator/{path}") as response:
        response.raise_for_status()
        return dict(orjson.loads(await response.read()))


def _http_port(pid: int) -> int | None:
    """The worker's `DISPATCHER_HTTP_PORT`, from its environment in `/proc` (the harness picks it)."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/environ", "rb") as environ:  # noqa: PTH123 - procfs
        for item in environ.read().split(b"\0"):
            if item.startswith(b"DISPATCHER_HTTP_PORT="):
                return int(item.split(b"=", 1)[1])
    return None


async def _follow_polls(session: aiohttp.ClientSession, pid: int) -> dict[str, dict[str, float]]:
    """The worker's `dispatcher_follow_polls_total` by Describe call and outcome, from its `/metrics`."""
    port = _http_port(pid)
    if port is None:
        return {}
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return {}
    counts: dict[str, dict[str, float]] = {}
    for operation, outcome, value in _FOLLOW_POLLS.findall(text):
        counts.setdefault(operation, {})[outcome] = float(value)
    return counts


@dataclass
class Run:
    """The raw readings of one follow run."""

    before_ids: list[str]
    during_ids: list[str]
    follow_ids: list[str]
    results: Results
    sampled: Sampled
    emulator_jobs: list[dict[str, Any]]
    marks: dict[str, float]
    """Epoch seconds of each phase boundary."""
    worker_polls: dict[str, dict[str, float]]
    timed_out: bool
    cpu: dict[str, tuple[float, float, float]]
    """Per plain batch: the worker's share of a core, the machine's busy share, and the wall seconds."""


def _cpu_now(pid: int) -> tuple[float, float, float]:
    """The worker's CPU seconds and the machine's busy and total jiffies now."""
    busy, total = machine_cpu()
    return cpu_s(pid), busy, total


def _cpu_since(before: tuple[float, float, float], pid: int) -> tuple[float, float, float]:
    """The worker's share of a core and the machine's busy share since `before` (from `_cpu_now`)."""
    worker_before, busy_before, total_before = before
    busy, total = machine_cpu()
    ticks = max(1.0, total - total_before)
    wall_s = ticks / os.sysconf("SC_CLK_TCK") / (os.cpu_count() or 1)
    return (cpu_s(pid) - worker_before) / wall_s, (busy - busy_before) / ticks, wall_s


async def _wait_until(done: Any, worker: Process, results: Results, timeout_s: float, what: str) -> bool:
    """Wait for `done()`; False on timeout, an error if the worker died or the broker went away."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if results.lost is not None:
            msg = f"lost the broker while waiting for {what}"
            raise ConnectionError(msg) from results.lost
        if worker.exited():
            msg = f"{worker.name} exited while waiting for {what}:\n{worker.tail()}"
            raise RuntimeError(msg)
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def _run(config: BenchConfig, scenario: Scenario, emulator: Emulator, log_dir: Path) -> Run:  # noqa: PLR0915 - one run, its phases in order
    before_ids = _batch("plain-before", config.follow_start_jobs)
    during_ids = _batch("plain-during", config.follow_start_jobs)
    follow_ids = _batch("followed", config.follow_jobs)
    results, sampled, marks = Results(), Sampled(), {}
    cpu: dict[str, tuple[float, float, float]] = {}
    describe_keys = set(DESCRIBE_KEYS.values())
    connection = await connect(scenario.amqp_url)

    def on_close(_: object, exc: BaseException | None = None) -> None:
        results.lost = exc or ConnectionError("the results consumer's connection closed")

    connection.close_callbacks.add(on_close)
    async with (
        connection,
        aiohttp.ClientSession(raise_for_status=True) as session,
        running_worker(scenario, emulator, log_dir, name="worker-follow") as worker,
    ):
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        queue = await channel.get_queue(scenario.names.results_queue, ensure=False)

        async def on_message(message: AbstractIncomingMessage) -> None:
            results.add(message)

        tag = await queue.consume(on_message, no_ack=True)
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await publish_channel.get_exchange(scenario.names.jobs_exchange)

        async def sample_rss() -> None:
            while True:
                with contextlib.suppress(OSError, RuntimeError):
                    sampled.rss.append((time.time(), rss_mb(worker.pid)))
                await asyncio.sleep(RSS_EVERY_S)

        async def sample_calls() -> None:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    sampled.add_calls(await _emulator_get(session, emulator, "calls"), describe_keys)
                await asyncio.sleep(CALLS_EVERY_S)

        samplers = [asyncio.create_task(sample_rss()), asyncio.create_task(sample_calls())]
        try:
            marks["ready"] = time.time()
            timeout = 120 + config.follow_start_jobs / 20
            warmup = _batch("warmup", WARMUP_JOBS)
            await _publish(exchange, warmup, follow=False)
            ids = [i for _, i in warmup]
            await _wait_until(lambda: all(i in results.starts for i in ids), worker, results, timeout, "warm-up jobs")
            ids = [i for _, i in before_ids]
            cpu["before"] = _cpu_now(worker.pid)
            await _publish(exchange, before_ids, follow=False)
            await _wait_until(lambda: all(i in results.starts for i in ids), worker, results, timeout, "plain jobs")
            cpu["before"] = _cpu_since(cpu["before"], worker.pid)
            marks["plain_before_done"] = time.time()
            ids = [i for _, i in follow_ids]
            await _publish(exchange, follow_ids, follow=True)
            marks["followed_published"] = time.time()
            await _wait_until(
                lambda: all(i in results.starts for i in ids), worker, results, 120 + len(ids) / 20, "follow starts"
            )
            marks["followed_started"] = time.time()
            during = [i for _, i in during_ids]
            cpu["during"] = _cpu_now(worker.pid)
            await _publish(exchange, during_ids, follow=False)
            await _wait_until(lambda: all(i in results.starts for i in during), worker, results, timeout, "plain jobs")
            cpu["during"] = _cpu_since(cpu["during"], worker.pid)
            marks["plain_during_done"] = time.time()
            left = config.follow_timeout_s - (time.time() - marks["followed_published"])
            finished = await _wait_until(
                lambda: all(i in results.completions for i in ids), worker, results, max(left, 1), "completions"
            )
            marks["completed"] = time.time()
            await asyncio.sleep(CALLS_EVERY_S)  # a late duplicate, and the last calls into one more sample
            sampled.add_calls(await _emulator_get(session, emulator, "calls"), describe_keys)
            emulator_jobs = (await _emulator_get(session, emulator, "jobs"))["jobs"]
            worker_polls = await _follow_polls(session, worker.pid)
        finally:
            for task in samplers:
                task.cancel()
            await asyncio.gather(*samplers, return_exceptions=True)
            connection.close_callbacks.discard(on_close)
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
    return Run(
        before_ids=[i for _, i in before_ids],
        during_ids=[i for _, i in during_ids],
        follow_ids=[i for _, i in follow_ids],
        results=results,
        sampled=sampled,
        emulator_jobs=emulator_jobs,
        marks=marks,
        worker_polls=worker_polls,
        timed_out=not finished,
        cpu=cpu,
    )


async def follow(config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path) -> Section:
    """Follow `follow_jobs` jobs to their end with Describe limited per operation, and report."""
    rate, burst = config.follow_rate_per_s, config.follow_burst
    scenario = Scenario(
        amqp_url,
        "follow",
        config.concurrency,
        extra_settings={"default_follow_rate_limit": {"rate": rate, "burst": burst}},
    )
    await emulator.configure(
        {key: {"rate_limit_per_s": rate, "rate_limit_burst": burst} for key in DESCRIBE_KEYS.values()}
    )
    lifecycle = {"default": {"duration_s": {"min": config.follow_min_s, "max": config.follow_max_s}}}
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        await (await session.put(f"{emulator.url}/_emulator/lifecycle", data=orjson.dumps(lifecycle))).release()
    await delete_queues(scenario)
    await _declare(scenario)
    try:
        run = await _run(config, scenario, emulator, log_dir)
    finally:
        await delete_queues(scenario)
        await emulator.configure({})  # the reset also puts back the start-up lifecycle
    return _section(config, scenario, run)


def _pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _section(config: BenchConfig, scenario: Scenario, run: Run) -> Section:  # noqa: C901, PLR0912, PLR0915 - one table
    rate, burst, window = config.follow_rate_per_s, config.follow_burst, STEADY_WINDOW_S
    schedule = poll_schedule(scenario.settings)
    delays = schedule.delays_s
    results, sampled = run.results, run.sampled
    jobs = len(run.follow_ids)
    completions = [results.completions[i] for i in run.follow_ids if i in results.completions]
    outcomes: dict[str, int] = {}
    for document, _ in completions:
        outcomes[str(document.get("job_outcome"))] = outcomes.get(str(document.get("job_outcome")), 0) + 1

    by_identifiers = {(job["routing_key"], tuple(sorted(job["identifiers"].items()))): job for job in run.emulator_jobs}
    first_seen: dict[str, float] = {}
    ended_at_by_emulator_id = {
        job["job_id"]: _epoch(job["ended_at"]) for job in run.emulator_jobs if job.get("ended_at")
    }
    for _, received, outcome, _, job_id in sorted(sampled.calls.values(), key=lambda call: call[1]):
        if outcome != "described" or job_id is None or job_id in first_seen:
            continue
        ended = ended_at_by_emulator_id.get(job_id)
        if ended is not None and received >= ended:
            first_seen[job_id] = received
    delays_s, ratios, noticed_s, reported_s, polls = [], [], [], [], []
    unmatched = 0
    for document, arrival in completions:
        polls.append(int(document.get("polls") or 0))
        key = (f"{document['service']}.{document['operation']}", tuple(sorted(document["aws_job"].items())))
        job = by_identifiers.get(key)
        if job is None or not job.get("ended_at"):
            unmatched += 1
            continue
        ended = _epoch(job["ended_at"])
        delay = arrival - ended
        delays_s.append(delay)
        interval = delays[min(max(polls[-1], 1) - 1, len(delays) - 1)]
        ratios.append(delay / interval)
        seen = first_seen.get(job["job_id"])
        if seen is not None:
            noticed_s.append(seen - ended)
            reported_s.append(arrival - seen)

    section = Section(
        f"Follow: {jobs:,} followed jobs, durations {config.follow_min_s:g} to {config.follow_max_s:g} s, "
        f"Describe limited to {rate:g}/s (burst {burst}) per operation, one worker",
        ["measure", "value", "target", "verdict"],
    )
    got = len(completions)
    section.add(
        "completion results / followed jobs", f"{got:,} / {jobs:,} ({got / jobs:.1%})", "100%", verdict(got == jobs)
    )
    section.add("duplicate completion results", results.duplicate_completions, "", "")
    section.add("job outcomes", ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())) or "—", "", "")
    median_ratio = statistics.median(ratios) if ratios else float("inf")
    section.add(
        "delay AWS end → completion read back, median s", statistics.median(delays_s) if delays_s else None, "", ""
    )
    section.add("delay AWS end → completion read back, p90 s", _pct(delays_s, 0.9), "", "")
    section.add("delay / poll interval, median", median_ratio, "<= 1", verdict(median_ratio <= 1))
    section.add("delay / poll interval, p90", _pct(ratios, 0.9), "", "")
    if noticed_s:
        section.add("  AWS end → the Describe that saw it, median s", statistics.median(noticed_s), "", "")
        section.add("  that Describe → completion read back, median s", statistics.median(reported_s), "", "")
    section.add(
        "polls per job, mean / max", f"{statistics.mean(polls) if polls else 0:.2f} / {max(polls, default=0)}", "", ""
    )

    throttled_total = describe_total = 0
    per_op: dict[str, dict[str, float | list[int]]] = {}
    for describe_key in DESCRIBE_KEYS.values():
        calls = [call for call in sampled.calls.values() if call[0] == describe_key]
        times = sorted(call[1] for call in calls)
        throttled = sum(1 for call in calls if call[3] == "ThrottlingException")
        throttled_total += throttled
        describe_total += len(calls)
        busiest_1s, _ = max_in_window(times, 1.0) if times else (0, 0.0)
        busiest_60s, _ = max_in_window(times, STEADY_WINDOW_S) if times else (0, 0.0)
        steady = busiest_60s / STEADY_WINDOW_S
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        per_second: dict[int, int] = {}
        for moment in times:
            per_second[int(moment - times[0])] = per_second.get(int(moment - times[0]), 0) + 1
        at_limit = sum(1 for count in per_second.values() if count >= LIMIT_SHARE * rate)
        mean_per_s = len(calls) / span if span else 0.0
        per_op[describe_key] = {
            "calls": len(calls),
            "throttled": throttled,
            "busiest_1s": busiest_1s,
            "busiest_60s_per_s": steady,
            "mean_per_s": mean_per_s,
            "span_s": span,
            "seconds_at_limit": at_limit,
            "per_second": [per_second.get(second, 0) for second in range(int(span) + 1)],
        }
        section.add(
            f"{describe_key}: most calls in any 1 s / busiest {STEADY_WINDOW_S:g} s, calls/s",
            f"{busiest_1s} / {steady:.2f}",
            f"<= {rate + burst:g} / <= {rate * (1 + RATE_TOLERANCE):g}",
            verdict(busiest_1s <= rate + burst and steady <= rate * (1 + RATE_TOLERANCE)),
        )
        section.add(
            f"  calls, throttled by the emulator, mean calls/s over {span:.0f} s, seconds at the limit",
            f"{len(calls):,}, {throttled / len(calls) if calls else 0:.2%}, {mean_per_s:.1f}, {at_limit}",
            "",
            "",
        )
    share = throttled_total / describe_total if describe_total else 0.0
    section.add(
        "Describe calls throttled by the emulator, all operations",
        f"{throttled_total:,} of {describe_total:,} ({share:.2%})",
        "",
        "",
    )
    polls_total = sum(polls)
    section.add(
        "polls reported by completions / Describe calls in the emulator's log",
        f"{polls_total:,} / {describe_total:,}",
        "",
        "",
    )

    rss = sampled.rss
    values = [mb for _, mb in rss]
    baseline = [mb for at, mb in rss if at <= run.marks.get("plain_before_done", 0)]
    started = [mb for at, mb in rss if at <= run.marks.get("followed_started", 0)]
    following = [mb for at, mb in rss if run.marks.get("followed_published", 0) <= at <= run.marks.get("completed", 0)]
    peak = max(values, default=0.0)
    section.add(
        "worker RSS start / before following / all followed jobs started / peak while following / end, MB",
        f"{values[0] if values else 0:.1f} / {baseline[-1] if baseline else 0:.1f} / "
        f"{started[-1] if started else 0:.1f} / {max(following, default=0):.1f} / {values[-1] if values else 0:.1f}",
        f"peak <= {config.memory_limit_mb:g}",
        verdict(peak <= config.memory_limit_mb),
    )
    before_rate, during_rate = results.start_rate(run.before_ids), results.start_rate(run.during_ids)
    ratio = during_rate / before_rate if before_rate else 0.0
    section.add(f"start throughput, {len(run.before_ids):,} plain jobs before following, jobs/s", before_rate, "", "")
    section.add(f"  the same while {jobs:,} are followed, jobs/s", during_rate, "", "")
    for name, label in (("before", "before"), ("during", "while following")):
        if name in run.cpu:
            share_core, busy, _ = run.cpu[name]
            section.add(f"  {label}: worker share of a core / machine busy", f"{share_core:.0%} / {busy:.0%}", "", "")
    section.add(
        "  while following / before",
        ratio,
        f">= {config.follow_start_ratio:g}",
        verdict(ratio >= config.follow_start_ratio),
    )
    marks = run.marks
    start_s = marks["followed_started"] - marks["followed_published"]
    section.add("followed jobs started in, s (start results read back)", start_s, "", "")
    section.add(
        "from publishing the followed jobs to the last completion, s",
        marks["completed"] - marks["followed_published"],
        "",
        "",
    )

    section.notes.append(
        f"Poll schedule {', '.join(f'{d:g}' for d in delays)} s with jitter {schedule.jitter:g}; a job's poll "
        "interval is the nominal delay of the step before its final poll (the schedule's delay number polls, the "
        "last one for more polls). The delay "
        "is from the emulator's `ended_at` (the AWS job reached its terminal status) to the completion read back "
        "from the results queue; 'the Describe that saw it' is the first Describe call of that job received after "
        "its end (emulator call log)."
    )
    section.notes.append(
        f"Describe limited in the worker (DISPATCHER_DEFAULT_FOLLOW_RATE_LIMIT={rate:g}/{burst}) and at the emulator "
        f"(fault rate_limit_per_s {rate:g}, burst {burst}). A token bucket allows rate + burst calls in a second and "
        f"rate x {window:g} + burst in {window:g} s ({(rate * window + burst) / window:.2f}/s), so the busiest "
        f"{window:g} s is the steady rate. Call log sampled every {CALLS_EVERY_S:g} s by `seq`: "
        f"{sampled.seen_seqs:,} of {sampled.log_total:,} calls seen, {sampled.gaps:,} lost to the log's limit."
    )
    if run.worker_polls:
        text = "; ".join(
            f"{op}: " + ", ".join(f"{outcome} {count:,.0f}" for outcome, count in sorted(outcomes.items()))
            for op, outcomes in sorted(run.worker_polls.items())
        )
        section.notes.append(f"The worker's dispatcher_follow_polls_total at the end: {text}.")
    if run.timed_out:
        missing = [i for i in run.follow_ids if i not in results.completions]
        section.notes.append(
            f"Stopped waiting after {config.follow_timeout_s:g} s (--follow-timeout-s): {len(missing):,} jobs had no "
            f"completion, e.g. {', '.join(missing[:5])}."
        )
    if unmatched:
        section.notes.append(f"{unmatched:,} completions matched no ended emulator job by their aws_job identifiers.")
    section.data = {
        "jobs": jobs,
        "completions": got,
        "duplicate_completions": results.duplicate_completions,
        "outcomes": outcomes,
        "delay_s_median": statistics.median(delays_s) if delays_s else None,
        "delay_s_p90": _pct(delays_s, 0.9),
        "delay_over_interval_median": median_ratio if ratios else None,
        "noticed_s_median": statistics.median(noticed_s) if noticed_s else None,
        "reported_s_median": statistics.median(reported_s) if reported_s else None,
        "polls_mean": statistics.mean(polls) if polls else None,
        "polls_max": max(polls, default=0),
        "describe": per_op,
        "throttled_share": share,
        "rss_mb": [(at - rss[0][0], mb) for at, mb in rss] if rss else [],
        "start_per_s_before": before_rate,
        "start_per_s_during": during_rate,
        "start_ratio": ratio,
        "start_cpu": run.cpu,
        "marks_s": {name: at - marks["ready"] for name, at in marks.items()},
        "worker_follow_polls": run.worker_polls,
        "call_log": {"seen": sampled.seen_seqs, "total": sampled.log_total, "gaps": sampled.gaps},
    }
    return section
