"""Sizing a fleet from its configuration: replicas, prefetch, pod resources and `expected_replicas`.

With the shared limiter (Redis) the fleet calls AWS at the sum of the configured rates whatever
its size, so a pod beyond what that call rate costs in CPU adds no throughput: only prefetched
jobs waiting on the limiter and reserved CPU. The formula, in the order it is computed:

    calls/s   = sum of start rates + sum of Describe/Get rates (every operation, every enabled region)
    cores     = calls/s x CPU_S_PER_CALL
    replicas  = min MIN_REPLICAS, max max(min, ceil(cores / CORE_SHARE_PER_POD) + 1)
    expected_replicas = max replicas (a Redis outage then keeps the fleet within the rates)
    prefetch  = max over operations of max(burst, ceil(rate x HOLD_S))   (starts; polls alike)
    cpu       = max(CPU_REQUEST_FLOOR, cores / min replicas), no limit
    memory    = BASELINE_MIB + (messages x HELD_PER_BODY_BYTE + DECODE_PEAK_PER_BODY_BYTE)
                x max_message_bytes   (request = limit)

where messages = concurrency x (operation queues + triage) + follow_concurrency x follow queues.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from dispatcher.registry import Registry
    from dispatcher.settings import RateLimit, Settings

# Worker CPU per job with DISPATCHER_REDIS_URL set: 1.63 ms (docs/benchmarks.md, "Results on this
# machine", 2026-12-05). A Describe/Get poll is counted at the same cost.
CPU_S_PER_CALL = 1.63e-3
# Half of the one core an event loop can use: the rest absorbs bursts, start-up and reconnects.
CORE_SHARE_PER_POD = 0.5
# One pod draining or evicted (the PDB allows one) leaves another consuming every queue.
MIN_REPLICAS = 2
# A job holds its prefetch slot for its AWS call (~0.2 s) and its result's publish confirm (a
# median ~0.5 s under load, docs/benchmarks.md), doubled.
HOLD_S = 2.0
# Start-up loads five service models (CPU bound) and a burst spends `burst` tokens at once.
CPU_REQUEST_FLOOR = 0.25
# Worker RSS without large messages: 152.5 MB at the peak of the follow benchmark (docs/benchmarks.md).
BASELINE_MIB = 160
# A message in flight holds its body and its decoded job: 1 + 10.1 times the body for the costliest
# shape measured, 0.9 MB of empty metadata entries with 3-character keys (a Python str and a dict
# slot per 9 bytes of JSON); a large string costs 1 + 1. tests/unit/test_capacity.py measures it.
HELD_PER_BODY_BYTE = 12
# One decode (synchronous, so one at a time) peaks at 26.8 times the body for that shape.
DECODE_PEAK_PER_BODY_BYTE = 28
MIB = 1024 * 1024
MEMORY_STEP_MIB = 64
CPU_STEP = 0.05


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a fleet with these settings needs; the prod overlay is checked against it."""

    start_calls_per_s: float
    follow_calls_per_s: float
    cores: float
    min_replicas: int
    max_replicas: int
    expected_replicas: int
    concurrency: int
    follow_concurrency: int
    messages_in_flight: int
    cpu_request: str
    memory_request: str
    memory_limit: str

    def as_dict(self) -> dict[str, Any]:
        """The figures, for `--json`."""
        return asdict(self)


def in_flight_messages(concurrency: int, follow_concurrency: int, operations: int, followed: int) -> int:
    """Deliveries a worker may hold at once: each consumer's prefetch (the triage queue's included)."""
    return concurrency * (operations + 1) + follow_concurrency * followed


def worst_case_mib(messages: int, max_message_bytes: int) -> float:
    """Memory a worker may need with every held message at the size limit."""
    held = messages * max_message_bytes * HELD_PER_BODY_BYTE
    return BASELINE_MIB + (held + max_message_bytes * DECODE_PEAK_PER_BODY_BYTE) / MIB


def prefetch_for(limits: Iterable[tuple[float, int]]) -> int:
    """The prefetch that keeps the busiest limit busy: its burst, or `rate x HOLD_S` jobs."""
    return max((max(burst, math.ceil(rate * HOLD_S)) for rate, burst in limits), default=1)


def recommend(settings: Settings, registry: Registry) -> Capacity:
    """The recommended replicas, prefetch and pod resources for these settings."""
    regions = settings.enabled_regions or (settings.region,)
    starts = [_per_queue(settings.rate_limit_for(op.routing_key), len(regions)) for op in registry]
    companions = [op.spec.companion_routing_key for op in registry if op.spec.companion_routing_key]
    polls = [_per_queue(settings.follow_rate_limit_for(key), len(regions)) for key in companions]
    start_rate, follow_rate = sum(rate for rate, _ in starts), sum(rate for rate, _ in polls)
    cores = (start_rate + follow_rate) * CPU_S_PER_CALL
    max_replicas = max(MIN_REPLICAS, math.ceil(cores / CORE_SHARE_PER_POD) + 1)
    concurrency, follow_concurrency = prefetch_for(starts), prefetch_for(polls)
    messages = in_flight_messages(concurrency, follow_concurrency, len(registry), len(companions))
    memory = _round_up(worst_case_mib(messages, settings.max_message_bytes), MEMORY_STEP_MIB)
    cpu = _round_up(max(CPU_REQUEST_FLOOR, cores / MIN_REPLICAS), CPU_STEP)
    return Capacity(
        start_calls_per_s=round(start_rate, 3),
        follow_calls_per_s=round(follow_rate, 3),
        cores=round(cores, 3),
        min_replicas=MIN_REPLICAS,
        max_replicas=max_replicas,
        expected_replicas=max_replicas,
        concurrency=concurrency,
        follow_concurrency=follow_concurrency,
        messages_in_flight=messages,
        cpu_request=f"{round(cpu * 1000)}m",
        memory_request=f"{int(memory)}Mi",
        memory_limit=f"{int(memory)}Mi",
    )


def _per_queue(limit: RateLimit, regions: int) -> tuple[float, int]:
    """An operation's queue serves every region: its rate and burst summed over them."""
    return limit.rate * regions, limit.burst * regions


def _round_up(value: float, step: float) -> float:
    return math.ceil(round(value / step, 9)) * step
