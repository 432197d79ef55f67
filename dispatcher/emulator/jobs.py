"""The emulator's memory: started jobs by idempotency token, and the log of every call.

Both are bounded, so an emulator left running for a long demo does not grow without end; the
control API's reset empties both.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from dispatcher.redact import redact_paths

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from datetime import datetime

    from dispatcher.emulator.responses import NewJob


REDACTED = "<redacted>"


class IdempotencyConflictError(Exception):
    """Raised when an idempotency token comes back with other parameters than its first call."""


@dataclass(frozen=True, slots=True)
class StartedJob:
    """A job the emulator started, with the output every replay of its token answers again."""

    job_id: str
    output: dict[str, Any]
    params: dict[str, Any]


class JobStore:
    """Starts jobs, deduplicating by idempotency token the way AWS does.

    The same token with the same parameters returns the job it started first; with other
    parameters it is a conflict. Only the newest `max_tokens` tokens are remembered (AWS forgets
    them after some hours too).
    """

    def __init__(self, max_tokens: int) -> None:
        """Remember at most `max_tokens` tokens."""
        self._max_tokens = max_tokens
        self._by_token: OrderedDict[tuple[str, str], StartedJob] = OrderedDict()

    def start(
        self,
        routing_key: str,
        params: dict[str, Any],
        token: str | None,
        make_job: Callable[[], NewJob],
    ) -> tuple[StartedJob, bool]:
        """The job for this call and whether it is new; raises `IdempotencyConflictError`."""
        key = (routing_key, token) if token is not None else None
        if key is not None and key in self._by_token:
            known = self._by_token[key]
            if known.params != params:
                msg = f"The client token {token} was already used with other parameters."
                raise IdempotencyConflictError(msg)
            return known, False
        made = make_job()
        job = StartedJob(job_id=made.job_id, output=made.output, params=params)
        if key is not None:
            self._by_token[key] = job
            if len(self._by_token) > self._max_tokens:
                self._by_token.popitem(last=False)
        return job, True

    def clear(self) -> None:
        """Forget every job."""
        self._by_token.clear()


class CallOutcome(StrEnum):
    """How a call ended, as the call log reports it."""

    STARTED = "started"
    """A new job was started and answered."""
    REPLAYED = "replayed"
    """The idempotency token named a job started before; that job was answered again."""
    ERROR = "error"
    """An AWS error was answered; no job was started."""
    DROPPED = "dropped"
    """The connection was closed without an answer (a job may have been started: see `job_id`)."""
    DESCRIBED = "described"
    """A Describe/Get call answered the status of the job `job_id`."""


@dataclass(frozen=True, slots=True)
class Call:
    """One call as it ended."""

    time: datetime
    received_at: datetime
    routing_key: str
    request_id: str
    params: dict[str, Any] | None
    """The parameters as received, sensitive ones redacted; `None` when the body could not be read."""
    idempotency_token: str | None
    outcome: CallOutcome
    job_id: str | None = None
    new_job: bool = False
    """Whether this call started a job that did not exist before."""
    error_code: str | None = None
    http_status: int | None = None


class CallLog:
    """The newest `limit` calls, numbered from 1 since the last reset."""

    def __init__(self, limit: int) -> None:
        """Keep at most `limit` calls."""
        self._calls: deque[tuple[int, Call]] = deque(maxlen=limit)
        self.total = 0

    def record(self, call: Call) -> None:
        """Append a call, evicting the oldest beyond the limit."""
        self.total += 1
        self._calls.append((self.total, call))

    def to_json(self, routing_key: str | None = None) -> list[Mapping[str, Any]]:
        """The kept calls, oldest first, optionally of one operation, as JSON-ready dicts."""
        return [
            {
                "seq": seq,
                **asdict(call),
                "time": call.time.isoformat().replace("+00:00", "Z"),
                "received_at": call.received_at.isoformat().replace("+00:00", "Z"),
            }
            for seq, call in self._calls
            if routing_key is None or call.routing_key == routing_key
        ]

    def clear(self) -> None:
        """Forget every call and restart the numbering."""
        self._calls.clear()
        self.total = 0


def redact(params: dict[str, Any], sensitive_paths: Iterable[str]) -> dict[str, Any]:
    """A copy of `params` with the values at `sensitive_paths` (dotted, `*` for any item) redacted."""
    return redact_paths(params, sensitive_paths, REDACTED)
