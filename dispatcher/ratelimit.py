"""Per-operation rate limits: a token bucket whose rate adapts to AWS throttling.

The algorithm is kept apart from where its state lives: this is the per-process limiter. The
rate adjustment is botocore's own CUBIC calculator (`botocore/retries/throttling.py`), fed the
way botocore's adaptive mode feeds it: on each throttle, with the rate actually being sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from botocore.retries.throttling import CubicCalculator

if TYPE_CHECKING:
    from collections.abc import Callable

MIN_RATE = 0.5
SEND_RATE_WINDOW_S = 1.0
MAX_POLL_S = 0.25
TOKEN_EPSILON = 1e-9  # refills are sums of float products: 0.9999999999 is a whole token


@dataclass(frozen=True, slots=True)
class Grant:
    """A token handed out: when (in the clock of whoever granted it) and by whom."""

    at: float
    shared: bool = False


class Limiter(Protocol):
    """What the pipeline needs of a rate limit, wherever its state lives."""

    @property
    def rate(self) -> float:
        """The rate currently allowed, in calls per second."""
        ...

    async def acquire(self) -> Grant:
        """Wait for a token."""
        ...

    def on_success(self) -> None:
        """A call went through."""
        ...

    async def on_throttle(self, grant: Grant, retry_after_s: float | None = None) -> None:
        """AWS throttled the call made with `grant`."""
        ...


@dataclass(slots=True)
class TokenBucket:
    """A token bucket: `take` gives a token now, or says how long until the next one."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _updated: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._updated = self.clock()

    def take(self) -> float:
        """Take a token and return 0, or take none and return the seconds until one is due."""
        self._refill()
        if self._tokens >= 1.0 - TOKEN_EPSILON:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate + max(0.0, self._updated - self.clock())

    def set_rate(self, rate: float) -> None:
        """Change the refill rate from now on."""
        self._refill()
        self.rate = rate

    def empty(self, until: float) -> None:
        """No token before `until` and no burst after it (the server's bucket is empty)."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)
        self._updated = max(self._updated, until)

    def _refill(self) -> None:
        now = self.clock()
        if now > self._updated:
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
            self._updated = now


class AdaptiveLimiter:
    """One operation's limit: the configured rate is a ceiling; throttles lower it, successes restore it."""

    def __init__(self, ceiling: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = ceiling
        self._clock = clock
        self._bucket = TokenBucket(ceiling, burst, clock)
        self._cubic: CubicCalculator | None = None
        self._sends: deque[float] = deque()
        self._last_decrease = float("-inf")

    @property
    def rate(self) -> float:
        """The rate currently allowed, in calls per second."""
        return self._bucket.rate

    def try_acquire(self) -> float:
        """Take a token and return 0, or return the seconds until one may be free."""
        wait_s = self._bucket.take()
        if wait_s == 0.0:
            self._sends.append(self._clock())
        return wait_s

    async def acquire(self) -> Grant:
        """Wait for a token without holding up any other operation; returns when it was granted.

        Waiters poll rather than reserve ahead: a reservation made at a throttled rate would
        keep its long wait after the rate has recovered.
        """
        while (wait_s := self.try_acquire()) > 0:  # noqa: ASYNC110 - tokens come with time, not events
            await asyncio.sleep(min(wait_s, MAX_POLL_S))
        return Grant(self._clock())

    def on_success(self) -> None:
        """A call went through: climb back toward the ceiling along the CUBIC curve."""
        if self._cubic is None:
            return
        rate = min(self.ceiling, self._cubic.success_received(self._clock()))
        if rate >= self.ceiling:
            self._cubic = None
        self._bucket.set_rate(max(MIN_RATE, rate))

    async def on_throttle(self, grant: Grant, retry_after_s: float | None = None) -> None:
        """AWS said slow down: cut the rate at once, and pause the whole operation for Retry-After.

        Only a call sent after the last cut says the new rate is still too high (one decrease per
        round trip, as TCP does): the other calls of the same burst were sent at the old rate.
        """
        now = self._clock()
        self._bucket.empty(until=now + (retry_after_s or 0.0))
        if grant.at < self._last_decrease:
            return
        self._last_decrease = now
        if self._cubic is None:
            self._cubic = CubicCalculator(starting_max_rate=self.rate, start_time=now)
        sending = min(self.rate, max(MIN_RATE, self.measured_send_rate(now)))
        self._bucket.set_rate(max(MIN_RATE, self._cubic.error_received(sending, now)))

    def measured_send_rate(self, now: float) -> float:
        """Calls per second sent over the last second."""
        while self._sends and self._sends[0] < now - SEND_RATE_WINDOW_S:
            self._sends.popleft()
        return len(self._sends) / SEND_RATE_WINDOW_S


class Limiters(dict[tuple[str, str], Limiter]):
    """One limiter per (operation, region), as AWS limits them, made when a job first names the pair."""

    def __init__(self, make: Callable[[str, str], Limiter]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: tuple[str, str]) -> Limiter:
        limiter = self[key] = self._make(*key)
        return limiter
