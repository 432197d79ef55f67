"""When a followed job is polled next: a growing schedule, jittered in steps, kept inside its deadline.

A wait happens in a broker queue with one TTL for all its messages (per-message TTLs would block
behind the queue's head), so jitter cannot be a continuous random delay: each delay of the schedule
has `BUCKETS` queues between the delay and `delay * (1 + jitter)`, and a follow message picks one at
random. Jobs started in the same second leave in `BUCKETS` waves per step, and the Describe rate
limit spreads each wave further, since polls wait in the follow queue for their tokens.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BUCKETS = 4


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """The waits between polls: `delays_s[step]` for each step, the last one repeating."""

    delays_s: tuple[float, ...]
    jitter: float

    def choices(self, step: int) -> tuple[float, ...]:
        """The waits a poll of `step` may take: the step's delay and up to `jitter` more."""
        delay = self.delays_s[min(step, len(self.delays_s) - 1)]
        if self.jitter == 0:
            return (_rounded(delay),)
        return tuple(dict.fromkeys(_rounded(delay * (1 + self.jitter * k / (BUCKETS - 1))) for k in range(BUCKETS)))

    @property
    def waits_s(self) -> tuple[float, ...]:
        """Every wait any step may take, shortest first: one wait queue each."""
        return tuple(sorted({wait for step in range(len(self.delays_s)) for wait in self.choices(step)}))

    def wait_for(self, step: int, remaining_s: float, rng: random.Random | None = None) -> float:
        """The wait before the poll of `step`, no longer than needed to reach a deadline `remaining_s` away.

        Past the deadline the shortest wait is taken, so a timed-out follow ends soon after it.
        """
        wait = (rng or random).choice(self.choices(step))
        if wait <= remaining_s:
            return wait
        shorter = [candidate for candidate in self.waits_s if candidate <= remaining_s]
        return shorter[-1] if shorter else self.waits_s[0]


def _rounded(delay_s: float) -> float:
    """Tenths of a second: queue names stay short and nearby delays share a queue."""
    return round(delay_s, 1)
