"""The dead-letter index: one summary per letter, built by one scan and reused until the queue changes.

Reading a quorum queue means rotating it (`dispatcher.dlq`): with 100,000 letters that takes
seconds, far too long per page. The index keeps, per letter, only what the list shows and filters
on (no body, no headers), built by one `dlq.visit`; a page filters and slices it in memory. It is
rebuilt when the queue's ready count differs from the count it was built at, when it is older than
`console_index_max_age_s`, or after the console changed the queue itself. A letter's details are
read again from the queue on demand (`find_letter`). The trade-off: a replay by the CLI that is
balanced by as many new letters leaves the count alone, so the list can be up to the maximum age
behind; every action re-reads the queue itself, so it acts on what is there, never on the index.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dispatcher.dlq import visit

if TYPE_CHECKING:
    from dispatcher.console.broker import BrokerProbe
    from dispatcher.dead_letters import LetterFilter, StoredLetter
    from dispatcher.stamps import Stamper

MESSAGE_CHARS = 300  # of the error message kept per letter
FILTER_CACHE_SIZE = 16
BUSY_REUSE_S = 10.0  # another command held letters during the build: reuse it this long at least
# Just after a scan the broker's count can lag the letters given back; a count read this soon is not compared.
SETTLE_S = 5.0
WAIT_S = 3.0  # a page waits this long for a build, then shows how far it got and reloads


@dataclass(frozen=True, slots=True)
class LetterSummary:
    """What the list shows of one dead letter, and what names it again for its details."""

    position: int
    job_id: str | None
    original_routing_key: str
    category: str
    error_code: str
    error_message: str
    attempts: int
    dead_lettered_at: datetime | None
    message_id: str | None
    body_sha256: str

    @classmethod
    def of(cls, position: int, letter: StoredLetter) -> LetterSummary:
        """The summary of a letter read at this place in the queue."""
        message_id, digest = letter.identity
        return cls(
            position,
            letter.job_id,
            letter.original_routing_key,
            letter.category,
            letter.error_code,
            letter.error_message[:MESSAGE_CHARS],
            letter.attempts,
            letter.dead_lettered_at,
            message_id,
            digest,
        )

    @property
    def service(self) -> str:
        """The routing key's service part."""
        return self.original_routing_key.partition(".")[0]

    @property
    def operation(self) -> str:
        """The routing key's operation part."""
        return self.original_routing_key.partition(".")[2]

    def age_s(self, now: datetime, /) -> float | None:
        """Seconds since it was dead-lettered."""
        return None if self.dead_lettered_at is None else (now - self.dead_lettered_at).total_seconds()


@dataclass
class Snapshot:
    """The index as one scan found it."""

    letters: list[LetterSummary]
    count: int  # the queue's ready count the index stands for
    built_at: datetime
    built_monotonic: float
    build_s: float
    busy: str | None
    _filtered: OrderedDict[LetterFilter, list[LetterSummary]] = field(default_factory=OrderedDict)

    def matching(self, letter_filter: LetterFilter, now: datetime) -> list[LetterSummary]:
        """The letters a filter matches, in queue order (the last few filters' answers are kept).

        Age filters depend on the time, so their answers are not kept.
        """
        timed = letter_filter.older_than_s is not None or letter_filter.newer_than_s is not None
        if not timed and letter_filter in self._filtered:
            self._filtered.move_to_end(letter_filter)
            return self._filtered[letter_filter]
        found = [letter for letter in self.letters if letter_filter.matches(letter, now)]
        if not timed:
            self._filtered[letter_filter] = found
            if len(self._filtered) > FILTER_CACHE_SIZE:
                self._filtered.popitem(last=False)
        return found


class DeadLetterIndex:
    """Builds the index when it is missing or stale; one build at a time, shared by the requests waiting."""

    def __init__(
        self,
        amqp_url: str,
        queue_name: str,
        *,
        stamper: Stamper,
        probe: BrokerProbe,
        queue_lock: asyncio.Lock,
        max_age_s: float,
    ) -> None:
        self._url = amqp_url
        self._queue = queue_name
        self._stamper = stamper
        self._probe = probe
        self._queue_lock = queue_lock  # held by the console's own actions and builds
        self._max_age_s = max_age_s
        self._snapshot: Snapshot | None = None
        self._building: asyncio.Task[Snapshot] | None = None
        self._read = (0, 0)

    def invalidate(self) -> None:
        """Forget the index: the console changed the queue."""
        self._snapshot = None

    @property
    def reading(self) -> tuple[int, int] | None:
        """(letters read, letters in the queue) while the index is being built, else None."""
        return self._read if self._building is not None else None

    async def current(self, wait_s: float = WAIT_S) -> Snapshot | None:
        """The index, rebuilt first if stale.

        None while one of the console's actions holds the queue and nothing was read before it, or
        while a build takes longer than `wait_s` (see `reading`): the page says so and reloads.
        """
        snapshot = self._snapshot
        if snapshot is not None and await self._fresh(snapshot):
            return snapshot
        if self._queue_lock.locked() and self._building is None:
            return snapshot  # an action is running: what was known before it, if anything
        if self._building is None:
            self._read = (0, 0)
            self._building = asyncio.create_task(self._build())
            self._building.add_done_callback(self._built)
        try:
            return await asyncio.wait_for(asyncio.shield(self._building), wait_s)
        except TimeoutError:
            return None

    async def _fresh(self, snapshot: Snapshot) -> bool:
        age_s = time.monotonic() - snapshot.built_monotonic
        if age_s > self._max_age_s:
            return False
        if age_s < SETTLE_S or (snapshot.busy is not None and age_s < BUSY_REUSE_S):
            return True
        depth = (await self._probe.depths([self._queue]))[self._queue]
        return depth is not None and depth.messages == snapshot.count

    def _built(self, task: asyncio.Task[Snapshot]) -> None:
        """Forget the finished build; its failure was raised to whoever waited (retrieved here if none did)."""
        self._building = None
        if not task.cancelled():
            task.exception()

    def _progress(self, read: int, total: int) -> None:
        self._read = (read, total)

    async def _build(self) -> Snapshot:
        letters: list[LetterSummary] = []
        started = time.monotonic()
        async with self._queue_lock:
            seen = await visit(
                self._url,
                self._queue,
                lambda letter: letters.append(LetterSummary.of(len(letters), letter)),
                stamper=self._stamper,
                progress=self._progress,
            )
        done = time.monotonic()
        self._snapshot = Snapshot(letters, seen.examined, datetime.now(UTC), done, done - started, seen.busy)
        return self._snapshot


async def find_letter(
    amqp_url: str, queue_name: str, digest: str, *, stamper: Stamper, queue_lock: asyncio.Lock
) -> tuple[StoredLetter | None, str | None]:
    """The first letter whose body has this SHA-256, read again from the queue, and the busy warning if any."""
    found: list[StoredLetter] = []

    def keep(letter: StoredLetter) -> None:
        if not found and letter.identity[1] == digest:
            found.append(letter)

    async with queue_lock:
        seen = await visit(amqp_url, queue_name, keep, stamper=stamper)
    return (found[0] if found else None), seen.busy
