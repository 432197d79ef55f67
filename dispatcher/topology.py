"""Names and declarations of every exchange and queue: one pure naming helper, one declarer.

Broker-side dead letters (an unknown routing key through the alternate exchange, a message over
its delivery limit) first land in the triage queue, which the worker drains into `dispatcher.dead`
with the same `x-dispatcher-*` headers as every other dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aio_pika import ExchangeType
from aio_pika.exceptions import ChannelPreconditionFailed

from dispatcher import metrics
from dispatcher.poll_schedule import PollSchedule

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aio_pika.abc import AbstractChannel, AbstractQueue

    from dispatcher.registry import Registry
    from dispatcher.settings import Settings

QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
# The default bound of the results queue (docs/deployment.md, "The results queue"): whichever comes
# first. Past it the broker drops the OLDEST results (drop-head): a result publish is still confirmed,
# so the worker never requeues a job because nobody reads results. reject-publish would nack it,
# and the job would be requeued and redelivered forever.
RESULTS_MAX_LENGTH = 1_000_000
RESULTS_MAX_LENGTH_BYTES = 1024**3
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Names:
    """Every broker name, derived from the three configured exchange names."""

    jobs_exchange: str
    results_exchange: str
    dead_exchange: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Names:
        """The names a worker with these settings uses."""
        return cls(settings.jobs_exchange, settings.results_exchange, settings.dead_exchange)

    def job_queue(self, routing_key: str) -> str:
        """The work queue of one operation."""
        return f"{self.jobs_exchange}.{routing_key}"

    @property
    def results_queue(self) -> str:
        """Keeps every outcome until someone reads it."""
        return self.results_exchange

    @property
    def dead_queue(self) -> str:
        """The dead-letter queue operators read and replay."""
        return self.dead_exchange

    @property
    def triage(self) -> str:
        """Exchange and queue for dead letters the broker makes; the worker stamps and moves them."""
        return f"{self.dead_exchange}.triage"

    def owns(self, queue: str) -> bool:
        """True for any queue name the dispatcher uses or may use: replies must never go there."""
        return any(
            queue == name or queue.startswith(f"{name}.")
            for name in (self.jobs_exchange, self.results_exchange, self.dead_exchange)
        )

    def retry_exchange(self, delay_s: float) -> str:
        """Fanout exchange in front of the retry queue of one delay."""
        return f"{self.jobs_exchange}.retry.{_delay_label(delay_s)}"

    def retry_queue(self, delay_s: float) -> str:
        """Holds jobs for one fixed delay, then dead-letters them back with their routing key."""
        return self.retry_exchange(delay_s)

    @property
    def follow_exchange(self) -> str:
        """Routes follow messages, by `<service>.<Operation>`, to their operation's follow queue."""
        return f"{self.jobs_exchange}.follow"

    def follow_queue(self, routing_key: str) -> str:
        """The polls of one operation's followed jobs, due now."""
        return f"{self.follow_exchange}.{routing_key}"

    def follow_wait_exchange(self, wait_s: float) -> str:
        """Fanout exchange in front of the wait queue of one poll delay."""
        return f"{self.follow_exchange}.wait.{_delay_label(wait_s)}"

    def follow_wait_queue(self, wait_s: float) -> str:
        """Holds follow messages for one fixed delay, then dead-letters them to the follow exchange."""
        return self.follow_wait_exchange(wait_s)


def _delay_label(delay_s: float) -> str:
    return f"{delay_s:g}s"


def job_queue_arguments(names: Names, delivery_limit: int) -> dict[str, Any]:
    """A work queue: quorum, with at-least-once dead-lettering of messages that keep crashing workers."""
    return {
        **QUORUM,
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": names.triage,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def triage_queue_arguments(names: Names) -> dict[str, Any]:
    """The triage queue: what expires here goes to the DLQ unstamped rather than nowhere.

    A message sent to an unknown routing key keeps its AMQP `expiration` through the alternate
    exchange, so with no worker running it would expire in triage and be dropped.
    """
    return {
        **QUORUM,
        "x-dead-letter-exchange": names.dead_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(names: Names, delay_s: float) -> dict[str, Any]:
    """A retry queue: one TTL for all its messages, so none waits behind a longer one."""
    return {
        **QUORUM,
        "x-message-ttl": int(delay_s * 1000),
        "x-dead-letter-exchange": names.jobs_exchange,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def follow_wait_queue_arguments(names: Names, wait_s: float) -> dict[str, Any]:
    """A wait queue: like a retry queue, but its messages come back through the follow exchange."""
    return {**retry_queue_arguments(names, wait_s), "x-dead-letter-exchange": names.follow_exchange}


def results_queue_arguments(
    max_length: int = RESULTS_MAX_LENGTH, max_length_bytes: int = RESULTS_MAX_LENGTH_BYTES
) -> dict[str, Any]:
    """The results queue: quorum, bounded, dropping its oldest results rather than refusing new ones."""
    return {
        **QUORUM,
        "x-max-length": max_length,
        "x-max-length-bytes": max_length_bytes,
        "x-overflow": "drop-head",
    }


async def declare_topology(
    channel: AbstractChannel,
    names: Names,
    routing_keys: Iterable[str],
    *,
    retry_delays_s: Iterable[float],
    delivery_limit: int,
    results_queue_enabled: bool = True,
    results_arguments: dict[str, Any] | None = None,
    follow_routing_keys: Iterable[str] = (),
    follow_waits_s: Iterable[float] = (),
) -> None:
    """Declare everything, idempotently: safe to run at every start and from `dispatcher topology`."""
    dead = await channel.declare_exchange(names.dead_exchange, ExchangeType.FANOUT, durable=True)
    dead_queue = await channel.declare_queue(names.dead_queue, durable=True, arguments=QUORUM)
    await dead_queue.bind(dead)

    triage = await channel.declare_exchange(names.triage, ExchangeType.FANOUT, durable=True)
    triage_queue = await channel.declare_queue(names.triage, durable=True, arguments=triage_queue_arguments(names))
    await triage_queue.bind(triage)

    jobs = await channel.declare_exchange(
        names.jobs_exchange,
        ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": names.triage},
    )
    for routing_key in routing_keys:
        queue = await channel.declare_queue(
            names.job_queue(routing_key),
            durable=True,
            arguments=job_queue_arguments(names, delivery_limit),
        )
        await queue.bind(jobs, routing_key)

    for delay_s in sorted(set(retry_delays_s)):
        retry = await channel.declare_exchange(names.retry_exchange(delay_s), ExchangeType.FANOUT, durable=True)
        retry_queue = await channel.declare_queue(
            names.retry_queue(delay_s), durable=True, arguments=retry_queue_arguments(names, delay_s)
        )
        await retry_queue.bind(retry)

    follow = await channel.declare_exchange(names.follow_exchange, ExchangeType.DIRECT, durable=True)
    for routing_key in follow_routing_keys:
        queue = await channel.declare_queue(
            names.follow_queue(routing_key), durable=True, arguments=job_queue_arguments(names, delivery_limit)
        )
        await queue.bind(follow, routing_key)
    for wait_s in sorted(set(follow_waits_s)):
        wait = await channel.declare_exchange(names.follow_wait_exchange(wait_s), ExchangeType.FANOUT, durable=True)
        wait_queue = await channel.declare_queue(
            names.follow_wait_queue(wait_s), durable=True, arguments=follow_wait_queue_arguments(names, wait_s)
        )
        await wait_queue.bind(wait)

    results = await channel.declare_exchange(names.results_exchange, ExchangeType.TOPIC, durable=True)
    if results_queue_enabled:
        results_queue = await _declare_results_queue(channel, names, results_arguments or results_queue_arguments())
        await results_queue.bind(results, "#")


def poll_schedule(settings: Settings) -> PollSchedule:
    """The waits between polls of followed jobs that these settings ask for."""
    return PollSchedule(tuple(settings.follow_poll_delays), settings.follow_poll_jitter)


async def declare_for(channel: AbstractChannel, settings: Settings, registry: Registry) -> None:
    """Declare everything a worker with these settings and operations uses."""
    await declare_topology(
        channel,
        Names.from_settings(settings),
        registry.routing_keys,
        retry_delays_s=settings.retry_delays,
        delivery_limit=settings.delivery_limit,
        results_queue_enabled=settings.results_queue_enabled,
        follow_routing_keys=[operation.routing_key for operation in registry if operation.companion is not None],
        follow_waits_s=poll_schedule(settings).waits_s,
    )


async def _declare_results_queue(channel: AbstractChannel, names: Names, arguments: dict[str, Any]) -> AbstractQueue:
    """Declare the bounded results queue; one declared before it was bounded is used as it is.

    A queue's arguments cannot change: redeclaring an existing queue with others fails with
    PRECONDITION_FAILED (406) and closes the channel. Then the channel is reopened, the queue used
    as it is, and a warning says how to bound it with a policy (docs/deployment.md).
    """
    try:
        queue = await channel.declare_queue(names.results_queue, durable=True, arguments=arguments)
    except ChannelPreconditionFailed:
        await channel.reopen()
        queue = await channel.declare_queue(names.results_queue, passive=True)
        metrics.RESULTS_QUEUE_BOUNDED.set(0)
        log.warning(
            "results_queue_declared_without_bound",
            queue=names.results_queue,
            advice="bound it with a RabbitMQ policy: docs/deployment.md, 'The results queue'",
        )
    else:
        metrics.RESULTS_QUEUE_BOUNDED.set(1)
    metrics.RESULTS_QUEUE_MESSAGES.set(queue.declaration_result.message_count or 0)
    return queue
