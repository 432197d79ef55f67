"""The benchmark's sizes: full defaults, a `--quick` set, and the flags that override either."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path

from bench.cpus import MODES

BENCHMARKS = ("throughput", "halfload", "latency", "redis", "ratelimit", "adaptation", "memory", "follow")
RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True)
class BenchConfig:
    """Every size and target of one run; the defaults are the full run of `make bench`."""

    jobs: int = 20_000
    rounds: int = 3
    concurrency: int = 64
    latencies_ms: tuple[float, ...] = (20.0, 200.0)
    latency_jobs: int = 10_000
    half_load_jobs: int = 6_000
    max_added_p99_ms: float = 5.0
    redis_jobs: int = 10_000
    redis_url: str = "redis://127.0.0.1:6379/0"
    target_ratio: float = 0.9
    profile: str = "auto"
    profile_jobs: int = 5_000
    rate_jobs: int = 1_000
    rate_per_s: float = 20.0
    rate_burst: int = 20
    adapt_jobs: int = 600
    adapt_cap_per_s: float = 20.0
    adapt_configured_per_s: float = 100.0
    adapt_burst: int = 20
    adapt_warmup_s: float = 5.0
    max_throttled_share: float = 0.03
    memory_jobs: int = 100_000
    memory_sample_s: float = 20.0
    memory_latency_ms: float = 2_000.0
    memory_limit_mb: float = 150.0
    follow_jobs: int = 10_000
    follow_start_jobs: int = 2_000
    follow_min_s: float = 1.0
    follow_max_s: float = 120.0
    follow_rate_per_s: float = 50.0
    follow_burst: int = 50
    follow_timeout_s: float = 900.0
    follow_start_ratio: float = 0.9
    pin: str = "auto"
    only: tuple[str, ...] = BENCHMARKS
    out_dir: Path = RESULTS_DIR


HELP = {
    "jobs": "jobs drained by each throughput run, spread evenly over the five operations",
    "rounds": "interleaved rounds of the throughput comparison (b, worker, a each); the table is the median round",
    "concurrency": "the worker's prefetch per operation queue, and the bare loops' calls in flight per operation",
    "latencies_ms": "emulator latencies of the concurrency-bound runs, comma-separated",
    "latency_jobs": "jobs drained by each latency run",
    "half_load_jobs": "jobs published at half the worker's maximum rate, to the worker and to a naive loop",
    "max_added_p99_ms": "the most the worker may add to the p99 publish -> result latency at half load that passes",
    "redis_jobs": "jobs drained by each run of the redis benchmark (without, then with the shared limiter and ledger)",
    "redis_url": "the Redis of the redis benchmark's shared run (keys in a namespace of its own, deleted afterwards)",
    "target_ratio": "worker throughput over the combined bound that passes",
    "profile": "auto (profile the worker when it misses the target ratio), always or never",
    "profile_jobs": "jobs drained by the profiled worker run",
    "rate_jobs": "jobs of the rate-limit accuracy run",
    "rate_per_s": "the configured rate of the accuracy run",
    "rate_burst": "the configured burst of the accuracy run",
    "adapt_jobs": "jobs of the adaptation run",
    "adapt_cap_per_s": "the rate the emulator allows in the adaptation run",
    "adapt_configured_per_s": "the rate the worker is configured for in the adaptation run",
    "adapt_burst": "the configured burst of the adaptation run",
    "adapt_warmup_s": "seconds after the first call that the throttled-share target leaves out",
    "max_throttled_share": "throttled share of calls that passes after the warm-up",
    "memory_jobs": "jobs waiting in the queues while the worker's memory is sampled",
    "memory_sample_s": "how long the worker's RSS is sampled",
    "memory_latency_ms": "emulator latency of the memory run, so the worker holds its prefetch and little else",
    "memory_limit_mb": "the most RSS that passes (also the follow run's worker)",
    "follow_jobs": "jobs started with follow: true and followed to their end by one worker",
    "follow_start_jobs": "plain jobs started before the follow load and again while it runs (start throughput)",
    "follow_min_s": "shortest emulated duration of a followed job, s",
    "follow_max_s": "longest emulated duration of a followed job, s (uniform between the two)",
    "follow_rate_per_s": "Describe calls per second per operation, in the worker and at the emulator",
    "follow_burst": "burst of that Describe limit, in the worker and at the emulator",
    "follow_timeout_s": "how long after publishing the followed jobs to wait for their completions",
    "follow_start_ratio": "start throughput while following over before that passes",
    "pin": "auto (with 2 CPUs or more), on or off: the measured process alone on the last CPU, "
    "the broker, the emulator and the driver on the others (bench/cpus.py)",
    "only": f"benchmarks to run, comma-separated: {','.join(BENCHMARKS)}",
    "out_dir": "where the Markdown and JSON results go",
}

QUICK = {
    "jobs": 3_000,
    "rounds": 1,
    "latency_jobs": 2_000,
    "half_load_jobs": 1_500,
    "redis_jobs": 2_000,
    "profile_jobs": 2_000,
    "rate_jobs": 300,
    "adapt_jobs": 300,
    "memory_jobs": 20_000,
    "memory_sample_s": 10.0,
    "follow_jobs": 2_000,
    "follow_start_jobs": 500,
    "follow_max_s": 40.0,
}


def parser() -> argparse.ArgumentParser:
    """The command line: `--quick`, and one flag per size (which wins over `--quick`)."""
    cli = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the dispatcher worker.")
    cli.add_argument("--quick", action="store_true", help="small sizes: the whole run in about two minutes")
    for item in fields(BenchConfig):
        default = getattr(BenchConfig, item.name)
        kind = str if isinstance(default, tuple) else type(default)
        if isinstance(default, Path):
            kind = Path
        text = f"{HELP[item.name]} (default: {_default_text(item.name)})"
        cli.add_argument("--" + item.name.replace("_", "-"), type=kind, default=None, help=text)
    return cli


def _default_text(name: str) -> str:
    value = getattr(BenchConfig, name)
    if isinstance(value, tuple):
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, Path):
        text = "bench/results"
    else:
        text = str(value)
    return f"{text}; --quick: {QUICK[name]}" if name in QUICK else text


def from_args(args: argparse.Namespace) -> BenchConfig:
    """Defaults, then `--quick`, then every flag given."""
    values: dict[str, object] = dict(QUICK) if args.quick else {}
    for item in fields(BenchConfig):
        given = getattr(args, item.name)
        if given is None:
            continue
        if item.name == "latencies_ms":
            given = tuple(float(v) for v in str(given).split(",") if v)
        elif item.name == "only":
            given = tuple(v for v in str(given).split(",") if v)
            unknown = set(given) - set(BENCHMARKS)
            if unknown:
                raise SystemExit(f"unknown benchmark(s) {', '.join(sorted(unknown))}: use {', '.join(BENCHMARKS)}")
        values[item.name] = given
    if values.get("profile", "auto") not in {"auto", "always", "never"}:
        raise SystemExit("--profile takes auto, always or never")
    if values.get("pin", "auto") not in MODES:
        raise SystemExit(f"--pin takes {', '.join(MODES)}")
    return BenchConfig(**values)  # type: ignore[arg-type]
