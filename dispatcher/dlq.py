"""The dead-letter queue, for operators: browse it without disturbing it, replay, purge, export.

A quorum queue puts a returned (nacked) message at its tail, so every command reads each message
the queue held when it began, a chunk at a time, and gives back what it did not act on to the
tail, in order: once all were read, the queue has come full circle and is as it was. Each chunk is
taken by a consumer whose prefetch is the chunk's size, cancelled before the chunk is given back
with one `basic.nack(multiple=True, requeue=True)`: RabbitMQ 3.10 returns a consumer's messages
in order that way, but not those of basic.get beyond a few dozen. A command killed half-way loses
nothing (the broker requeues what it held), only that order.

Messages one command holds are invisible to another (a passive queue.declare counts only ready
messages), so every command first takes the queue's lock, an exclusive queue named
`<queue>.dlq-lock` that the broker deletes with the command's connection, and checks the queue's
consumer count. A command that finds either taken knows letters may be held elsewhere: the
destructive ones refuse (`QueueBusy`), the others say that what they show is incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

import aio_pika
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, ChannelNotFoundEntity
from aiormq.exceptions import ChannelLockedResource

from dispatcher.dead_letters import StoredLetter, append_records, replay_blocker
from dispatcher.publisher import PublishFailed, publish_confirmed

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from aio_pika.abc import (
        AbstractConnection,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
    )

    from dispatcher.dead_letters import Identity, LetterFilter
    from dispatcher.envelope import Decoder
    from dispatcher.stamps import Stamper

    Progress: TypeAlias = Callable[[int, int], None]  # (examined, total), for a progress bar
    Chunk: TypeAlias = "list[tuple[AbstractIncomingMessage, StoredLetter]]"

CHUNK_SIZE = 1000
# A chunk is held unacked while it is processed; RabbitMQ closes the channel after consumer_timeout (30 min).
MAX_CHUNK_HOLD_S = 20 * 60
IDLE_S = 5.0  # no delivery for this long: the queue's message count was stale


LOCK_SUFFIX = ".dlq-lock"


class BrokerProblem(Exception):
    """Raised when the broker cannot be reached or lacks the queue or exchange a command needs."""


class QueueBusy(BrokerProblem):
    """Raised by a command that would change the queue while another command or consumer holds letters."""


class Pacer:
    """Spaces actions to at most `rate_per_s` a second, evenly (no bursts); None means no limit."""

    def __init__(self, rate_per_s: float | None) -> None:
        self._interval_s = 1 / rate_per_s if rate_per_s else 0.0
        self._next_at = time.monotonic()

    async def wait(self) -> None:
        """Return when the next action may go."""
        now = time.monotonic()
        if self._next_at > now:
            await asyncio.sleep(self._next_at - now)
        self._next_at = max(now, self._next_at) + self._interval_s


class _Scan:
    """Takes the messages the queue held at the start, chunk by chunk, giving back each chunk's rest."""

    def __init__(
        self, queue: AbstractQueue, total: int, chunk_size: int, progress: Progress | None, stamper: Stamper
    ) -> None:
        self._queue = queue
        self._stamper = stamper
        self.total = total
        self._chunk_size = chunk_size
        self.examined = 0
        self.busy: str | None = None  # why letters may be held elsewhere (then this command sees fewer)
        self._handled = 0
        self._progress = progress

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        while self.examined < self.total:
            chunk = await self._take(min(self._chunk_size, self.total - self.examined))
            if not chunk:
                return  # the count was stale: the queue held fewer
            yield chunk
            await self.give_back()

    async def _take(self, size: int) -> Chunk:
        """Exactly `size` messages (fewer if the queue has fewer): the prefetch stops the broker there."""
        await self._queue.channel.set_qos(prefetch_count=size)
        deliveries: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        consumer_tag = await self._queue.consume(deliveries.put, no_ack=False)
        messages: list[AbstractIncomingMessage] = []
        try:
            while len(messages) < size:
                messages.append(await asyncio.wait_for(deliveries.get(), IDLE_S))
        except TimeoutError:
            pass
        finally:
            await self._queue.cancel(consumer_tag)
        self.examined += len(messages)
        return [(message, StoredLetter.from_message(message, self._stamper)) for message in messages]

    def each(self, chunk: Chunk) -> Iterator[tuple[AbstractIncomingMessage, StoredLetter]]:
        """The chunk's messages, each counted on the progress bar once it was handled."""
        for item in chunk:
            yield item
            self._handled += 1
            if self._progress is not None:
                self._progress(self._handled, self.total)

    async def give_back(self) -> None:
        """Requeue every delivery not acked, in delivery order (tag 0 with `multiple`: all outstanding)."""
        underlay = await self._queue.channel.get_underlay_channel()
        await underlay.basic_nack(delivery_tag=0, multiple=True, requeue=True)


@contextlib.asynccontextmanager
async def _connect(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    try:
        connection = await aio_pika.connect(amqp_url, timeout=10)
    except (AMQPError, ConnectionError, TimeoutError) as exc:
        msg = f"cannot connect to the broker: {exc}"
        raise BrokerProblem(msg) from None
    async with connection:
        yield connection


async def _lock(connection: AbstractConnection, queue_name: str) -> bool:
    """Take the queue's lock for as long as the connection lives; False when another command holds it."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(f"{queue_name}{LOCK_SUFFIX}", durable=False, exclusive=True, auto_delete=True)
    except ChannelLockedResource:
        return False
    return True


def _busy_reason(queue_name: str, *, locked: bool, consumers: int) -> str | None:
    if not locked:
        return f"another `dispatcher dlq` command is running on {queue_name} and holds dead letters this one cannot see"
    if consumers:
        return (
            f"{consumers} other consumer(s) are attached to {queue_name} and may hold dead letters this one cannot see"
        )
    return None


@contextlib.asynccontextmanager
async def _scan(
    connection: AbstractConnection,
    queue_name: str,
    stamper: Stamper,
    progress: Progress | None,
    chunk_size: int = CHUNK_SIZE,
    *,
    changes: bool = False,
) -> AsyncIterator[_Scan]:
    """Read the queue once round; `changes`: the command deletes letters, so it refuses a busy queue."""
    locked = await _lock(connection, queue_name)
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
    except ChannelNotFoundEntity:
        msg = f"queue {queue_name} does not exist (run `dispatcher topology`, or check DISPATCHER_DEAD_EXCHANGE)"
        raise BrokerProblem(msg) from None
    declared = queue.declaration_result
    busy = _busy_reason(queue_name, locked=locked, consumers=declared.consumer_count or 0)
    if busy is not None and changes:
        msg = f"{busy}; nothing was changed: wait for it to finish and run this again"
        raise QueueBusy(msg)
    scan = _Scan(queue, declared.message_count or 0, chunk_size, progress, stamper)
    scan.busy = busy
    try:
        yield scan
    except BaseException:
        # The broker requeues whatever a dead channel held; only the order is lost then.
        with contextlib.suppress(AMQPError, ChannelInvalidStateError, ConnectionError):
            await scan.give_back()
        raise
    await scan.give_back()


@dataclass
class Browse:
    """The dead letters that matched (for a purge: deleted), in queue order, and how many were read."""

    letters: list[StoredLetter] = field(default_factory=list)
    examined: int = 0
    busy: str | None = None  # set when letters may be held elsewhere: what was read is incomplete


async def browse(
    amqp_url: str,
    queue_name: str,
    letter_filter: LetterFilter,
    *,
    stamper: Stamper,
    limit: int | None = None,
    progress: Progress | None = None,
) -> Browse:
    """Read the matching dead letters (the first `limit` of them) and leave the queue as it was."""
    now = datetime.now(UTC)
    found = Browse()

    def keep(letter: StoredLetter) -> None:
        if (limit is None or len(found.letters) < limit) and letter_filter.matches(letter, now):
            found.letters.append(letter)

    seen = await visit(amqp_url, queue_name, keep, stamper=stamper, progress=progress)
    found.examined, found.busy = seen.examined, seen.busy
    return found


async def visit(
    amqp_url: str,
    queue_name: str,
    visitor: Callable[[StoredLetter], None],
    *,
    stamper: Stamper,
    progress: Progress | None = None,
) -> Browse:
    """Hand every dead letter to `visitor` in queue order and leave the queue as it was.

    Nothing is kept here: a caller that needs only a summary of each letter (the console's index of
    100,000 of them) need not hold their bodies. The returned `Browse` has no letters.
    """
    seen = Browse()
    async with _connect(amqp_url) as connection, _scan(connection, queue_name, stamper, progress) as scan:
        async for chunk in scan:
            for _, letter in scan.each(chunk):
                visitor(letter)
        seen.examined, seen.busy = scan.examined, scan.busy
    return seen


WOULD_MOVE, KEPT, FAILED = "would move", "kept", "failed"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a replay did with one matching dead letter it did not move, and why."""

    letter: StoredLetter
    action: str
    reason: str = ""


@dataclass
class ReplayReport:
    """What a replay did: how many moved, and each other matching dead letter in queue order."""

    examined: int = 0
    moved: int = 0
    total: int = 0  # dead letters in the queue when the replay began
    busy: str | None = None
    decisions: list[Decision] = field(default_factory=list)

    def count(self, action: str) -> int:
        """How many matching dead letters ended with this action."""
        return sum(decision.action == action for decision in self.decisions)


async def replay(
    amqp_url: str,
    *,
    dead_queue: str,
    jobs_exchange: str,
    letter_filter: LetterFilter,
    decoder: Decoder,
    stamper: Stamper,
    publish_timeout_s: float,
    force: bool = False,
    dry_run: bool = False,
    limit: int | None = None,
    rate_per_s: float | None = None,
    progress: Progress | None = None,
    report: ReplayReport | None = None,
) -> ReplayReport:
    """Publish matching dead letters back to the jobs exchange, confirmed, then delete them.

    A replay killed at any instant loses nothing: a dead letter is acked only after its copy was
    confirmed, so at most the one in hand exists twice. After a failed publish nothing more moves,
    but the queue is still read to the end, to give the rest back in order. `report` is filled as
    the replay goes, so a caller that interrupts it can still say what it did.
    """
    now = datetime.now(UTC)
    report = ReplayReport() if report is None else report
    pacer = Pacer(rate_per_s)
    decided = 0
    stopped = False  # after a failed publish: nothing more moves
    async with _connect(amqp_url) as connection:
        jobs = await _jobs_exchange(connection, jobs_exchange)
        chunk_size = CHUNK_SIZE if rate_per_s is None else max(1, min(CHUNK_SIZE, int(rate_per_s * MAX_CHUNK_HOLD_S)))
        async with _scan(connection, dead_queue, stamper, progress, chunk_size, changes=not dry_run) as scan:
            report.total, report.busy = scan.total, scan.busy
            async for chunk in scan:
                for message, letter in scan.each(chunk):
                    if stopped or (limit is not None and decided >= limit) or not letter_filter.matches(letter, now):
                        continue
                    decided += 1
                    blocker = replay_blocker(letter, decoder, letter_filter, force=force)
                    if blocker is not None:
                        report.decisions.append(Decision(letter, KEPT, blocker))
                    elif dry_run:
                        report.decisions.append(Decision(letter, WOULD_MOVE))
                    elif await _publish(jobs, letter, pacer, publish_timeout_s, report):
                        await message.ack()
                        report.moved += 1
                    else:
                        stopped = True
            report.examined = scan.examined
    return report


async def _publish(
    jobs: AbstractExchange, letter: StoredLetter, pacer: Pacer, timeout_s: float, report: ReplayReport
) -> bool:
    """Publish the replay copy, confirmed; a failure is recorded in the report."""
    await pacer.wait()
    try:
        await publish_confirmed(jobs, letter.replay_copy(), letter.original_routing_key, timeout_s=timeout_s)
    except PublishFailed as exc:
        report.decisions.append(Decision(letter, FAILED, str(exc)))
        return False
    return True


async def _jobs_exchange(connection: AbstractConnection, name: str) -> AbstractExchange:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        return await channel.get_exchange(name)
    except ChannelNotFoundEntity:
        msg = f"exchange {name} does not exist (run `dispatcher topology`, or check DISPATCHER_JOBS_EXCHANGE)"
        raise BrokerProblem(msg) from None


async def purge(
    amqp_url: str,
    queue_name: str,
    letter_filter: LetterFilter,
    *,
    stamper: Stamper,
    backup: Path | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    progress: Progress | None = None,
    only: Counter[Identity] | None = None,
) -> Browse:
    """Delete the matching dead letters, after appending them to `backup` (fsynced) when given.

    Each chunk's letters are written and synced before any of them is deleted, so a letter that
    arrives meanwhile is never deleted unseen. `only` (from `read_identities`): delete no letter
    but those an export file names, each at most as often as the file does.
    """
    now = datetime.now(UTC)
    report = Browse()
    wanted = None if only is None else only.copy()
    async with (
        _connect(amqp_url) as connection,
        _scan(connection, queue_name, stamper, progress, changes=not dry_run) as scan,
    ):
        report.busy = scan.busy
        async for chunk in scan:
            doomed: Chunk = []
            for message, letter in scan.each(chunk):
                if limit is not None and len(report.letters) >= limit:
                    continue
                if not letter_filter.matches(letter, now):
                    continue
                if wanted is not None:
                    if wanted[letter.identity] <= 0:
                        continue
                    wanted[letter.identity] -= 1
                doomed.append((message, letter))
                report.letters.append(letter)
            if dry_run or not doomed:
                continue
            if backup is not None:
                append_records(backup, [letter for _, letter in doomed])
            for message, _ in doomed:
                await message.ack()
        report.examined = scan.examined
    return report
