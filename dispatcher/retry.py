"""Retry policy: the schedule of delays, and the retry state a job carries in its headers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from dispatcher import headers as names


@dataclass(frozen=True, slots=True)
class RetryState:
    """What earlier deliveries of a job did: retries spent, AWS calls made, their error codes."""

    retries: int = 0
    attempts: int = 0
    error_codes: tuple[str, ...] = ()

    @classmethod
    def from_headers(cls, headers: dict[str, Any] | None) -> RetryState:
        """Read the state back from a delivery; absent or garbled headers mean a first delivery."""
        headers = headers or {}
        codes = headers.get(names.ERROR_CODES) or ""
        if isinstance(codes, bytes):
            codes = codes.decode("utf-8", "replace")
        return cls(
            retries=_as_count(headers.get(names.RETRIES)),
            attempts=_as_count(headers.get(names.ATTEMPTS)),
            error_codes=tuple(code for code in str(codes).split(",") if code),
        )

    def to_headers(self) -> dict[str, Any]:
        """The headers a retry copy carries."""
        return {
            names.RETRIES: self.retries,
            names.ATTEMPTS: self.attempts,
            names.ERROR_CODES: ",".join(self.error_codes),
        }

    def called(self, error_code: str | None) -> RetryState:
        """The state after one more AWS call, failed with `error_code` if not None."""
        codes = self.error_codes if error_code is None else (*self.error_codes, error_code)
        return RetryState(self.retries, self.attempts + 1, codes)

    def spent(self) -> RetryState:
        """The state after the job spent one retry of its budget."""
        return RetryState(self.retries + 1, self.attempts, self.error_codes)


def _as_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Delays between attempts, each served by the retry queue of that delay."""

    delays_s: tuple[float, ...]

    @property
    def attempts(self) -> int:
        """AWS attempts a job gets: one more than the delays."""
        return len(self.delays_s) + 1

    def delay_for(self, retries_spent: int) -> float | None:
        """The nominal delay before the next attempt, or None when the budget is spent."""
        if retries_spent >= len(self.delays_s):
            return None
        return self.delays_s[retries_spent]


MAX_JITTER_S = 5.0


def jitter_s(delay_s: float, jitter: float, rng: random.Random | None = None) -> float:
    """Extra seconds to hold a retry before publishing it, so a burst of failures spreads out.

    Retry queues have one fixed TTL each (per-message TTLs block behind the queue head), so the
    jitter is added in the worker, kept short because the delivery stays unacked meanwhile.
    """
    return (rng or random).uniform(0, min(delay_s * jitter, MAX_JITTER_S))
