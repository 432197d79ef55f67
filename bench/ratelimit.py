"""Rate limits, measured where AWS would see them: the emulator's call log timestamps.

Accuracy: one operation limited to `rate` (with `burst`), everything else unlimited; after the
initial burst the calls must come at the configured rate, and no one-second window may hold more
than rate + burst calls. Adaptation: the emulator allows the operation less than the worker is
configured for; the worker must learn the real limit from throttles, and every job must succeed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bench.harness import Scenario, drain, job_ids
from bench.processes import Process, running_worker
from bench.report import Section, verdict

if TYPE_CHECKING:
    import contextlib
    from pathlib import Path

    from bench.config import BenchConfig
    from bench.harness import Drained
    from bench.processes import Emulator

OPERATION = "m2.StartBatchJob"
ACCURACY_TOLERANCE = 0.02


def arrived_at(call: dict[str, Any]) -> float:
    """Epoch seconds when the emulator received the call (when it answered, from an older emulator)."""
    return datetime.fromisoformat(call.get("received_at") or call["time"]).timestamp()


def call_times(calls: list[dict[str, Any]]) -> list[float]:
    """Epoch seconds of each call's arrival, in order."""
    return sorted(arrived_at(call) for call in calls)


def max_in_window(times: list[float], window_s: float = 1.0) -> tuple[int, float]:
    """The most calls in any sliding window of `window_s` (start inclusive, end exclusive), and its start."""
    most, most_at, start = 0, times[0] if times else 0.0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window_s:
            start += 1
        if end - start + 1 > most:
            most, most_at = end - start + 1, times[start]
    return most, most_at


def steady_rate(times: list[float], burst: int) -> float:
    """Calls per second after the first `burst` calls (the bucket starts full)."""
    steady = times[burst:]
    if len(steady) < 2 or steady[-1] <= steady[0]:
        return 0.0
    return (len(steady) - 1) / (steady[-1] - steady[0])


async def _drain_one_operation(
    config: BenchConfig,
    amqp_url: str,
    emulator: Emulator,
    log_dir: Path,
    *,
    prefix: str,
    jobs: int,
    limit: dict[str, float],
    rate: float,
) -> Drained:
    scenario = Scenario(amqp_url, prefix, config.concurrency, rate_limits={OPERATION: limit})

    def subject() -> contextlib.AbstractAsyncContextManager[Process]:
        return running_worker(scenario, emulator, log_dir, name=f"worker-{prefix}")

    return await drain(scenario, job_ids(prefix, [OPERATION], jobs), subject, timeout_s=90 + 3 * jobs / rate)


async def accuracy(config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path) -> Section:
    """The configured limit, measured at the emulator."""
    rate, burst = config.rate_per_s, config.rate_burst
    await emulator.configure({})
    limit = {"rate": rate, "burst": burst}
    drained = await _drain_one_operation(
        config, amqp_url, emulator, log_dir, prefix="rate", jobs=config.rate_jobs, limit=limit, rate=rate
    )
    total, calls = await emulator.calls(OPERATION)
    times = call_times(calls)
    measured = steady_rate(times, burst)
    error = measured / rate - 1
    window_max, window_at = max_in_window(times)
    steady_max, _ = max_in_window(times[burst:])
    first_burst_s = times[burst - 1] - times[0] if len(times) >= burst else 0.0
    section = Section(
        f"Rate-limit accuracy: {OPERATION} limited to {rate:g}/s (burst {burst}), {config.rate_jobs:,} jobs",
        ["measure", "value", "target", "verdict"],
    )
    section.add("calls seen by the emulator", total, config.rate_jobs, verdict(total == config.rate_jobs))
    section.add("results succeeded", drained.succeeded, config.rate_jobs, verdict(drained.succeeded == drained.jobs))
    section.add(
        "steady-state rate after the burst, calls/s",
        measured,
        f"{rate:g} ± {ACCURACY_TOLERANCE:.0%}",
        verdict(abs(error) <= ACCURACY_TOLERANCE),
    )
    section.add("deviation from the configured rate", f"{error:+.2%}", "", "")
    section.add(
        "most calls in any sliding 1 s window", window_max, f"<= {rate + burst:g}", verdict(window_max <= rate + burst)
    )
    section.add("  that window starts, s after the first call", window_at - times[0], "", "")
    section.add("  the first burst calls reached the emulator over, s", first_burst_s, "", "")
    section.add("most calls in any 1 s window after the first burst", steady_max, f"~ {rate:g}", "")
    section.notes.append(
        "Timestamps are the emulator's call log (`received_at`, when each request arrived), so the emulator's own "
        "scheduling delays (CPU contention on this machine) can still bunch calls a little; the row 'after the first "
        f"burst' shows that jitter at the steady {rate:g}/s, where a perfect schedule puts at most {rate:g} calls "
        "(+1 on a boundary) in any second."
    )
    section.data = {
        "calls": total,
        "succeeded": drained.succeeded,
        "steady_rate_per_s": measured,
        "deviation": error,
        "max_calls_in_1s": window_max,
        "max_window_starts_s": window_at - times[0],
        "max_calls_in_1s_after_burst": steady_max,
        "first_burst_spread_s": first_burst_s,
        "call_times_s": [t - times[0] for t in times],
        "span_s": times[-1] - times[0] if times else 0.0,
    }
    return section


@dataclass(frozen=True)
class Adaptation:
    """Throttling seen in one-second windows from the first call."""

    windows: list[tuple[int, int]]
    """(calls, throttled) per second."""
    converged_s: float | None
    """Start of the first window after which every window's throttled share stays under the target."""
    throttled_at_s: list[float]
    """When each throttled call was answered, in seconds from the first call."""

    @classmethod
    def of(cls, calls: list[dict[str, Any]], max_share: float) -> Adaptation:
        """Bucket the calls by second and find when throttling settled."""
        times = call_times(calls)
        start = times[0]
        seconds = math.floor(times[-1] - start) + 1
        windows = [[0, 0] for _ in range(seconds)]
        throttled_at = []
        for call in calls:
            at = arrived_at(call) - start
            throttled = call.get("error_code") == "ThrottlingException"
            windows[int(at)][0] += 1
            windows[int(at)][1] += throttled
            if throttled:
                throttled_at.append(at)
        converged = None
        for index in range(seconds - 1, -1, -1):
            total, throttled = windows[index]
            if total and throttled / total >= max_share:
                break
            converged = float(index)
        return cls([(total, throttled) for total, throttled in windows], converged, sorted(throttled_at))

    def throttled_share(self, after_s: float = 0.0) -> float:
        """Throttled calls over all calls, from `after_s` on."""
        kept = self.windows[math.ceil(after_s) :]
        total = sum(calls for calls, _ in kept)
        return sum(throttled for _, throttled in kept) / total if total else 0.0

    def accepted_rate(self, after_s: float) -> float:
        """Calls that were not throttled per second, from `after_s` on (the last, partial second left out)."""
        kept = self.windows[math.ceil(after_s) : -1]
        return sum(calls - throttled for calls, throttled in kept) / len(kept) if kept else 0.0


async def adaptation(config: BenchConfig, amqp_url: str, emulator: Emulator, log_dir: Path) -> Section:
    """The emulator caps the operation below the configured rate: throttles must stop soon."""
    cap, configured = config.adapt_cap_per_s, config.adapt_configured_per_s
    await emulator.configure({OPERATION: {"rate_limit_per_s": cap}})
    limit = {"rate": configured, "burst": config.adapt_burst}
    drained = await _drain_one_operation(
        config, amqp_url, emulator, log_dir, prefix="adapt", jobs=config.adapt_jobs, limit=limit, rate=cap
    )
    total, calls = await emulator.calls(OPERATION)
    result = Adaptation.of(calls, config.max_throttled_share)
    warmup = config.adapt_warmup_s
    share = result.throttled_share(warmup)
    target = config.max_throttled_share
    section = Section(
        f"Adaptation: emulator allows {cap:g}/s, worker configured at {configured:g}/s "
        f"(burst {config.adapt_burst}), {config.adapt_jobs:,} jobs",
        ["measure", "value", "target", "verdict"],
    )
    section.add("results succeeded", drained.succeeded, config.adapt_jobs, verdict(drained.succeeded == drained.jobs))
    section.add("calls (throttled ones included)", total, "", "")
    section.add("throttled share, whole run", f"{result.throttled_share():.1%}", "", "")
    section.add(
        f"throttled share after the first {warmup:g} s", f"{share:.1%}", f"<= {target:.0%}", verdict(share <= target)
    )
    converged = "never" if result.converged_s is None else f"{result.converged_s:g} s"
    section.add(f"converged (every later 1 s window under {target:.0%} throttled)", converged, "", "")
    later = [f"{at:.1f}" for at in result.throttled_at_s if at >= warmup]
    shown = ", ".join(later[:12]) + (" …" if len(later) > 12 else "")
    section.add(f"throttled calls after {warmup:g} s (s from the first call)", f"{len(later)}: {shown}", "", "")
    section.add(f"accepted calls/s after {warmup:g} s", result.accepted_rate(warmup), f"~ {cap:g}", "")
    section.add("drain time, s", drained.elapsed_s, "", "")
    section.notes.append(
        f"With about {cap:g} calls a second, one throttled call makes its 1 s window "
        f"{1 / (cap + 1):.0%} throttled: 'converged' is the start of the first window after which no window "
        f"reaches {target:.0%}."
    )
    if total > len(calls):
        section.notes.append(f"the emulator's call log kept only the newest {len(calls):,} of {total:,} calls")
    section.data = {
        "succeeded": drained.succeeded,
        "calls": total,
        "throttled_share": result.throttled_share(),
        "throttled_share_after_warmup": share,
        "converged_s": result.converged_s,
        "windows": result.windows,
        "throttled_at_s": result.throttled_at_s,
        "elapsed_s": drained.elapsed_s,
    }
    return section
