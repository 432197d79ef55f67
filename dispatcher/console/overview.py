"""The overview: per operation, what the broker holds and what the workers' metrics say.

Nothing here is a second source of truth: depths and consumers are the broker's (passive
declares), rates, in-flight jobs, throttles and dead letters the workers' own metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dispatcher.topology import RESULTS_MAX_LENGTH, Names, poll_schedule

if TYPE_CHECKING:
    from dispatcher.console.broker import BrokerProbe, Depth
    from dispatcher.console.scrape import MetricsWatcher, Reading
    from dispatcher.registry import Registry
    from dispatcher.settings import Settings

# The current-rate gauge, by its new name first (per operation and region), then its old one.
CURRENT_RATE = ("dispatcher_rate_limit_calls_per_second", "dispatcher_rate_limit_rate")
CONFIGURED_RATE = "dispatcher_rate_limit_configured_calls_per_second"


@dataclass(frozen=True, slots=True)
class OperationRow:
    """One operation's line of the overview."""

    routing_key: str
    depth: Depth | None
    in_flight: float | None
    configured_rate: float
    current_rate: float | None
    settled_last_window: float | None
    throttles_last_window: float | None
    dead_letters_last_window: float | None


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the overview page shows."""

    operations: tuple[OperationRow, ...]
    results: Depth | None
    results_bound: int
    results_bounded: bool | None  # from the workers' gauge; None when no worker answered
    dead: Depth | None
    triage: Depth | None
    followed_in_flight: int | None  # None when no operation can be followed
    shared_limits: bool | None
    metrics: Reading | None


class OverviewReader:
    """Reads the overview from the broker and the workers' metrics, fresh on each call."""

    def __init__(self, settings: Settings, registry: Registry, probe: BrokerProbe, watcher: MetricsWatcher) -> None:
        self._settings = settings
        self._registry = registry
        self._names = Names.from_settings(settings)
        self._probe = probe
        self._watcher = watcher

    async def read(self) -> Overview:
        """Ask the broker and every worker now."""
        names = self._names
        follow_queues = [names.follow_queue(op.routing_key) for op in self._registry if op.companion is not None] + [
            names.follow_wait_queue(wait) for wait in poll_schedule(self._settings).waits_s
        ]
        job_queues = {key: names.job_queue(key) for key in self._registry.routing_keys}
        depths = await self._probe.depths(
            [*job_queues.values(), names.results_queue, names.dead_queue, names.triage, *follow_queues]
        )
        reading = await self._watcher.read() if self._watcher.configured else None
        rows = tuple(self._row(key, depths[queue], reading) for key, queue in job_queues.items())
        followed = [depths[queue] for queue in follow_queues]
        bounded = reading.values("dispatcher_results_queue_bounded") if reading else []
        shared = reading.values("dispatcher_rate_limit_shared") if reading else []
        return Overview(
            operations=rows,
            results=depths[names.results_queue],
            results_bound=RESULTS_MAX_LENGTH,
            results_bounded=all(value == 1 for value in bounded) if bounded else None,
            dead=depths[names.dead_queue],
            triage=depths[names.triage],
            followed_in_flight=sum(d.messages for d in followed if d is not None) if follow_queues else None,
            shared_limits=any(value == 1 for value in shared) if shared else None,
            metrics=reading,
        )

    def _row(self, key: str, depth: Depth | None, reading: Reading | None) -> OperationRow:
        configured = self._settings.rate_limit_for(key).rate
        if reading is None:
            return OperationRow(key, depth, None, configured, None, None, None, None)
        configured_seen = reading.values(CONFIGURED_RATE, operation=key)
        current = next((values for name in CURRENT_RATE if (values := reading.values(name, operation=key))), [])
        in_flight = reading.values("dispatcher_jobs_in_flight", operation=key)
        return OperationRow(
            routing_key=key,
            depth=depth,
            in_flight=sum(in_flight) if reading.latest else None,
            configured_rate=max(configured_seen) if configured_seen else configured,
            current_rate=min(current) if current else None,
            settled_last_window=reading.increase("dispatcher_jobs_total", operation=key),
            throttles_last_window=reading.increase("dispatcher_throttles_total", operation=key),
            dead_letters_last_window=reading.increase("dispatcher_dead_letters_total", operation=key),
        )
