"""The cost of the fleet-wide limiter and ledger: the same drain without and with `DISPATCHER_REDIS_URL`.

With Redis, every job takes its token from a Lua script (`ratelimit_redis.py`), and is claimed
(a Lua script) and finished (a SET) in the start ledger (`ledger_redis.py`): three round trips
to Redis per job that the local limiter and ledger do not make. Both runs drain the same number
of pre-published jobs over the five operations, one after the other in one benchmark run, with
rate limits that never bind, so what differs is the Redis work alone.

The worker names its Redis keys after its jobs exchange (`<exchange>:rate:...`,
`<exchange>:ledger:<job_id>`). The bench vhost is unique per run but Redis does not see vhosts,
and a `started` ledger entry left by an earlier run would answer a job without any AWS call; so
the exchange (and the job ids) carry a random token, and the keys are deleted afterwards.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from bench.harness import ROUTING_KEYS, Scenario
from bench.report import Section, verdict
from bench.throughput import run_worker

if TYPE_CHECKING:
    from pathlib import Path

    from bench.config import BenchConfig
    from bench.harness import Drained
    from bench.processes import Emulator

LEDGER_TTL_S = 3600.0
"""The ledger entries' TTL in the shared run: they are deleted at the end, this is for an interrupted run."""
SCAN_BATCH = 1000


@dataclass(frozen=True)
class Side:
    """One of the two drains: what the worker did and what the emulator and Redis saw."""

    drained: Drained
    aws_calls: int
    ledger_entries: int
    redis_cpu_s: float
    redis_fallbacks: int

    @property
    def ok(self) -> bool:
        """Every job has a successful result from exactly one AWS call."""
        d = self.drained
        return not d.timed_out and d.results == d.jobs and d.succeeded == d.jobs and self.aws_calls == d.jobs

    @property
    def shared_ok(self) -> bool:
        """As `ok`, and every job went through Redis: one ledger entry each, no fallback to the local ones."""
        return self.ok and self.ledger_entries == self.drained.jobs and self.redis_fallbacks == 0


async def redis_cost(config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path) -> Section:
    """Drain `redis_jobs` jobs with the local limiter and ledger, then with the shared ones in Redis."""
    redis = Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        await redis.ping()
        token = secrets.token_hex(4)
        local = Scenario(amqp_url, f"rdl{token}", config.concurrency)
        shared = Scenario(
            amqp_url,
            f"rds{token}",
            config.concurrency,
            extra_settings={"redis_url": config.redis_url, "ledger_ttl_s": LEDGER_TTL_S},
        )
        namespace = shared.names.jobs_exchange
        try:
            jobs = config.redis_jobs
            without = await _side(local, jobs, emulator, log_dir, redis, namespace, name="worker-redis-off")
            with_redis = await _side(shared, jobs, emulator, log_dir, redis, namespace, name="worker-redis-on")
        finally:
            await _delete_keys(redis, f"{namespace}:*")
    finally:
        await redis.aclose()
    return redis_section(config, without, with_redis, namespace)


async def _side(
    scenario: Scenario, jobs: int, emulator: Emulator, log_dir: Path, redis: Redis, namespace: str, *, name: str
) -> Side:
    """One drain, then what the emulator, Redis and the worker's log say about it."""
    await emulator.configure({})
    redis_cpu = await _redis_cpu_s(redis)
    drained = await run_worker(scenario, emulator, jobs, log_dir, name=name)
    redis_cpu = await _redis_cpu_s(redis) - redis_cpu
    total, _ = await emulator.calls(ROUTING_KEYS[0])
    entries = await _count_keys(redis, f"{namespace}:ledger:*")
    log = (log_dir / f"{name}.log").read_text(errors="replace")
    return Side(drained, total, entries, redis_cpu, log.count("redis_unreachable"))


async def _redis_cpu_s(redis: Redis) -> float:
    """CPU seconds the Redis server has used (all its clients, not only this benchmark's)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _count_keys(redis: Redis, pattern: str) -> int:
    return sum([1 async for _ in redis.scan_iter(match=pattern, count=SCAN_BATCH)])


async def _delete_keys(redis: Redis, pattern: str) -> None:
    """Delete this run's keys (a namespace no one else uses)."""
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=SCAN_BATCH):
        batch.append(key)
        if len(batch) >= SCAN_BATCH:
            await redis.unlink(*batch)
            batch = []
    if batch:
        await redis.unlink(*batch)


def redis_section(config: BenchConfig, without: Side, with_redis: Side, namespace: str) -> Section:
    """Both drains side by side, their ratio and the extra CPU per job."""
    off, on = without.drained, with_redis.drained
    section = Section(
        f"Shared rate limit and ledger in Redis: {config.redis_jobs:,} jobs over {len(ROUTING_KEYS)} operations, "
        f"concurrency {config.concurrency}, no emulator latency",
        ["measure", "jobs/s", "worker CPU ms per job", "share of a core", "median ms in worker", "checks"],
    )
    section.add(
        "without Redis (local limiter and ledger)",
        off.jobs_per_s,
        off.cpu_ms_per_job,
        f"{off.cpu_share:.0%}",
        off.handling_ms,
        verdict(without.ok),
    )
    section.add(
        "with DISPATCHER_REDIS_URL (shared limiter and ledger)",
        on.jobs_per_s,
        on.cpu_ms_per_job,
        f"{on.cpu_share:.0%}",
        on.handling_ms,
        verdict(with_redis.shared_ok),
    )
    section.add(
        "with / without",
        _ratio(on.jobs_per_s, off.jobs_per_s),
        _ratio(on.cpu_ms_per_job, off.cpu_ms_per_job),
        "",
        _ratio(on.handling_ms, off.handling_ms),
        "",
    )
    extra_ms = on.cpu_ms_per_job - off.cpu_ms_per_job
    section.add("extra with Redis, per job", "", f"{extra_ms:+.2f}", "", f"{on.handling_ms - off.handling_ms:+.1f}", "")
    redis_ms = with_redis.redis_cpu_s / on.results * 1000 if on.results else 0.0
    section.notes.append(
        "checks: every job succeeded after exactly one AWS call; with Redis also one ledger entry per job in "
        "Redis and no fallback to the local limiter or ledger."
    )
    section.notes.append(
        f"AWS calls seen by the emulator: {without.aws_calls:,} without, {with_redis.aws_calls:,} with Redis; "
        f"ledger entries written to Redis: {with_redis.ledger_entries:,} (one per job); warnings of Redis "
        f"unreachable (fallback to the local limiter or ledger) in the worker's log: {with_redis.redis_fallbacks}."
    )
    section.notes.append(
        f"The Redis server used {redis_ms:.2f} ms of CPU per job during the shared run "
        f"({without.redis_cpu_s / off.results * 1000 if off.results else 0.0:.2f} ms during the local one): "
        "INFO's used_cpu_user + used_cpu_sys, so any other client of that Redis is counted too."
    )
    section.notes.append(
        f"While the workers drained, the machine's CPUs were {off.machine_busy:.0%} (without) and "
        f"{on.machine_busy:.0%} (with Redis) busy. Keys were namespaced `{namespace}:*` and deleted afterwards."
    )
    section.data = {
        "jobs": config.redis_jobs,
        "concurrency": config.concurrency,
        "namespace": namespace,
        "without": _side_data(without),
        "with_redis": _side_data(with_redis),
        "jobs_per_s_ratio": _ratio(on.jobs_per_s, off.jobs_per_s),
        "cpu_ms_per_job_ratio": _ratio(on.cpu_ms_per_job, off.cpu_ms_per_job),
        "extra_cpu_ms_per_job": extra_ms,
        "redis_server_cpu_ms_per_job": redis_ms,
    }
    return section


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _side_data(side: Side) -> dict[str, object]:
    d = side.drained
    return {
        "jobs_per_s": d.jobs_per_s,
        "elapsed_s": d.elapsed_s,
        "results": d.results,
        "succeeded": d.succeeded,
        "timed_out": d.timed_out,
        "cpu_ms_per_job": d.cpu_ms_per_job,
        "cpu_share": d.cpu_share,
        "handling_ms_median": d.handling_ms,
        "delivery_ms_median": d.delivery_ms,
        "machine_busy": d.machine_busy,
        "aws_calls": side.aws_calls,
        "ledger_entries_in_redis": side.ledger_entries,
        "redis_server_cpu_s": side.redis_cpu_s,
        "redis_unreachable_warnings": side.redis_fallbacks,
    }
