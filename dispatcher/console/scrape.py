"""The workers' own Prometheus metrics, scraped by the console: current values and increases over a window.

Counters are cumulative per process, so "in the last hour" is the sum of the increases the console
saw between its scrapes (a drop is a restarted worker: its new value is all increase), as
Prometheus' `increase()` reads them. Before the console has watched for a whole hour the window is
shorter, and the page says how long.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from collections.abc import Iterable

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)
WINDOW_S = 3600.0
SCRAPE_TIMEOUT_S = 3.0


@dataclass
class _Target:
    """One worker's endpoint: its latest values and the history of each counter."""

    latest: dict[SeriesKey, float] = field(default_factory=dict)
    history: dict[SeriesKey, deque[tuple[float, float]]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """What the last scrape of every worker said."""

    targets: int
    failures: tuple[str, ...]
    window_s: float  # how far back the increases reach (less than WINDOW_S after a start)
    latest: tuple[dict[SeriesKey, float], ...]
    increases: dict[SeriesKey, float]

    def values(self, name: str, **labels: str) -> list[float]:
        """Every worker's value of a series whose labels include `labels`."""
        wanted = set(labels.items())
        return [
            value
            for target in self.latest
            for (sample, series_labels), value in target.items()
            if sample == name and wanted <= set(series_labels)
        ]

    def increase(self, name: str, **labels: str) -> float:
        """The summed increase of a counter over the window, across workers and other labels."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, series_labels), value in self.increases.items()
            if sample == name and wanted <= set(series_labels)
        )


class MetricsWatcher:
    """Scrapes the configured URLs; a host name is resolved and every address is one worker."""

    def __init__(self, urls: Iterable[str]) -> None:
        self._urls = tuple(urls)
        self._targets: dict[str, _Target] = {}
        self._started = time.monotonic()
        self._session: aiohttp.ClientSession | None = None

    @property
    def configured(self) -> bool:
        """True when there is at least one URL to scrape."""
        return bool(self._urls)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def read(self) -> Reading:
        """Scrape every worker now and return the values and the increases over the window."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
        endpoints = [endpoint for url in self._urls for endpoint in await _endpoints(url)]
        now = time.monotonic()
        await asyncio.gather(*(self._scrape(endpoint, now) for endpoint in endpoints))
        live = [self._targets[endpoint] for endpoint in endpoints]
        increases: dict[SeriesKey, float] = {}
        for target in live:
            for key, points in target.history.items():
                increases[key] = increases.get(key, 0.0) + _increase(points)
        failures = tuple(
            f"{endpoint}: {target.error}" for endpoint, target in zip(endpoints, live, strict=True) if target.error
        )
        return Reading(
            targets=len(endpoints),
            failures=failures,
            window_s=min(WINDOW_S, now - self._started),
            latest=tuple(target.latest for target in live if target.error is None),
            increases=increases,
        )

    async def _scrape(self, endpoint: str, now: float) -> None:
        known = endpoint in self._targets
        target = self._targets.setdefault(endpoint, _Target())
        assert self._session is not None
        try:
            async with self._session.get(endpoint) as response:
                response.raise_for_status()
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            target.error = type(exc).__name__ if not str(exc) else str(exc).split("\n")[0]
            return
        target.error = None
        target.latest = _parse(text)
        for key, value in target.latest.items():
            if not key[0].endswith("_total"):
                continue
            points = target.history.get(key)
            if points is None:
                # A series that appears on a worker already watched started from zero meanwhile.
                points = target.history[key] = deque([(now, 0.0)] if known else [])
            points.append((now, value))
            while len(points) > 2 and points[1][0] < now - WINDOW_S:
                points.popleft()


def _parse(text: str) -> dict[SeriesKey, float]:
    values: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _increase(points: deque[tuple[float, float]]) -> float:
    total = 0.0
    for (_, before), (_, after) in zip(points, list(points)[1:], strict=False):
        total += after - before if after >= before else after  # a drop: the worker restarted
    return total


async def _endpoints(url: str) -> list[str]:
    """The URL once per address its host resolves to (a headless Service: one per pod)."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return [url]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port, family=socket.AF_INET, type=socket.SOCK_STREAM
        )
    except OSError:
        return [url]  # the scrape will say why
    addresses = sorted({str(info[4][0]) for info in infos})
    if len(addresses) <= 1:
        return [url]
    port = f":{parts.port}" if parts.port else ""
    return [
        urlunsplit((parts.scheme, f"[{a}]{port}" if ":" in a else f"{a}{port}", parts.path, parts.query, ""))
        for a in addresses
    ]
