"""The start ledger: what AWS already did for a job, so a redelivery never calls AWS twice.

Before each AWS call a job is claimed (`in-flight`); after it the claim is finished: `started`
with the response, cleared when AWS did not start the job, or kept when nobody can know (a lost
answer of a token-less call). This module holds the decisions and the per-process ledger; the
Redis ledger (`ledger_redis.py`) shares the same entries with every replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from dispatcher.errors import Category, JobError
from dispatcher.results import to_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dispatcher.envelope import Job

DEFAULT_MAX_ENTRIES = 100_000


def fingerprint(job: Job) -> str:
    """A hash of what the job asks AWS to do; the same job_id must always mean the same request."""
    canonical = orjson.dumps([job.operation.routing_key, job.region, job.request], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class LedgerUnavailable(JobError):
    """Raised by `claim` when the shared ledger cannot answer and calling AWS could start a job twice.

    The job waits in the first retry queue, without spending its retry budget, until it can.
    """

    category = Category.EXHAUSTED
    retryable = True


@dataclass(frozen=True, slots=True)
class StartedEntry:
    """AWS started the job: enough to publish its result again without calling AWS."""

    response: dict[str, Any]
    aws_request_id: str | None
    attempts: int


class ClaimState(StrEnum):
    """What the ledger said when a job was about to be sent to AWS."""

    CLAIMED = "claimed"  # go ahead: the job is now in flight under this claim
    STARTED = "started"  # AWS already started it: publish the recorded result again
    MISMATCH = "mismatch"  # the job_id was used before for another request
    BUSY = "busy"  # another call for it is in flight right now: wait and ask again
    STALE = "stale"  # a call for it was in flight when its worker died: the outcome is unknown


class Finish(StrEnum):
    """How a claim ends."""

    STARTED = "started"
    CLEAR = "clear"  # AWS did not start the job: a later attempt may call again
    KEEP = "keep"  # nobody knows whether AWS started it: leave the marker for redeliveries


@dataclass(frozen=True, slots=True)
class Claim:
    """The ledger's answer to `claim`."""

    state: ClaimState
    started: StartedEntry | None = None
    claim_id: str = ""
    age_s: float = 0.0


class Ledger(Protocol):
    """Where claims live: this process, or Redis for the fleet."""

    async def claim(self, job: Job) -> Claim:
        """Mark the job in flight, unless the ledger already knows something about it."""
        ...

    async def finish(self, job: Job, claim: Claim, how: Finish, started: StartedEntry | None = None) -> None:
        """End a claim."""
        ...


@dataclass(slots=True)
class _Flight:
    print_: str
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _Remembered:
    """A started job as this process keeps it: the response as the JSON its result will carry.

    As text it takes a fraction of the memory of the parsed response (a worker keeps up to
    100,000), and reading it back gives what the Redis ledger gives: the same result body. Text,
    not orjson's bytes: each of those keeps the 4 KiB buffer it was written in.
    """

    expires_at: float
    job_print: str
    response: str
    aws_request_id: str | None
    attempts: int

    @classmethod
    def of(cls, expires_at: float, job_print: str, started: StartedEntry) -> _Remembered:
        """Kept until `expires_at` (monotonic)."""
        response = to_json(started.response).decode()
        return cls(expires_at, job_print, response, started.aws_request_id, started.attempts)

    def started(self) -> StartedEntry:
        """The start, as the pipeline reads it."""
        return StartedEntry(orjson.loads(self.response), self.aws_request_id, self.attempts)


class LocalLedger:
    """In-process ledger; a second delivery of a job whose call is in flight here waits for it.

    Bounded by entries as well as by time: a busy worker would otherwise hold a week of jobs.
    """

    def __init__(self, ttl_s: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._started: OrderedDict[str, _Remembered] = OrderedDict()
        self._unknown: OrderedDict[str, str] = OrderedDict()
        self._in_flight: dict[str, _Flight] = {}

    async def claim(self, job: Job) -> Claim:
        """Claim the job, after any call for it in flight in this process has ended."""
        job_print = fingerprint(job)
        recalled = await self.recall(job, job_print)
        if recalled is not None:
            return recalled
        self.begin(job, job_print)
        return Claim(ClaimState.CLAIMED)

    async def recall(self, job: Job, job_print: str) -> Claim | None:
        """What this process knows that decides the job without a call, once no call for it is in flight here."""
        while (flight := self._in_flight.get(job.job_id)) is not None:
            if flight.print_ != job_print:
                return Claim(ClaimState.MISMATCH)
            await flight.done.wait()
        known = self._known(job.job_id)
        if known is None:
            return None
        recorded_print, started = known
        if recorded_print != job_print:
            return Claim(ClaimState.MISMATCH)
        if started is not None:
            return Claim(ClaimState.STARTED, started)
        if job.operation.idempotency_token_member is None:
            return Claim(ClaimState.STALE)
        return None

    def begin(self, job: Job, job_print: str) -> None:
        """Mark a call for the job in flight here: other deliveries of it in this process wait for it."""
        self._in_flight[job.job_id] = _Flight(job_print)

    def end(self, job: Job) -> None:
        """The call for the job in flight here is over: wake whoever waits for it."""
        flight = self._in_flight.pop(job.job_id, None)
        if flight is not None:
            flight.done.set()

    async def finish(self, job: Job, claim: Claim, how: Finish, started: StartedEntry | None = None) -> None:
        """Record the outcome and wake any delivery of the same job waiting here."""
        del claim
        self.record(job, how, started)

    def record(self, job: Job, how: Finish, started: StartedEntry | None) -> str:
        """Keep what a call for the job came to and wake whoever waits for it; the job's fingerprint."""
        flight = self._in_flight.get(job.job_id)
        job_print = flight.print_ if flight else fingerprint(job)
        if how is Finish.STARTED and started is not None:
            self._remember(
                self._started, job.job_id, _Remembered.of(time.monotonic() + self._ttl_s, job_print, started)
            )
        elif how is Finish.KEEP:
            self._remember(self._unknown, job.job_id, job_print)
        self.end(job)
        return job_print

    def entries(self) -> Iterator[tuple[str, str, StartedEntry | None, float]]:
        """What this process remembers: job_id, fingerprint, the start (None: unknown), seconds to keep it."""
        now = time.monotonic()
        for job_id, kept in list(self._started.items()):
            if kept.expires_at > now:
                yield job_id, kept.job_print, kept.started(), kept.expires_at - now
        for job_id, job_print in list(self._unknown.items()):
            yield job_id, job_print, None, self._ttl_s

    def _known(self, job_id: str) -> tuple[str, StartedEntry | None] | None:
        kept = self._started.get(job_id)
        if kept is not None:
            if kept.expires_at >= time.monotonic():
                return kept.job_print, kept.started()
            del self._started[job_id]
        unknown = self._unknown.get(job_id)
        return (unknown, None) if unknown is not None else None

    def _remember(self, table: OrderedDict[str, Any], job_id: str, value: object) -> None:
        table[job_id] = value
        table.move_to_end(job_id)
        while len(table) > self._max_entries:
            table.popitem(last=False)
