"""Names and declarations of every exchange and queue: one pure naming helper, one declarer.

Broker-side dead letters (an unknown routing key through the alternate exchange, a message over
its delivery limit) first land in the triage queue, which the worker drains into `dispatcher.dead`
with the same `x-dispatcher-*` headers as every other dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aio_pika import ExchangeType

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aio_pika.abc import AbstractChannel

    from dispatcher.settings import Settings

QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


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


async def declare_topology(
    channel: AbstractChannel,
    names: Names,
    routing_keys: Iterable[str],
    *,
    retry_delays_s: Iterable[float],
    delivery_limit: int,
    results_queue_enabled: bool = True,
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

    results = await channel.declare_exchange(names.results_exchange, ExchangeType.TOPIC, durable=True)
    if results_queue_enabled:
        results_queue = await channel.declare_queue(names.results_queue, durable=True, arguments=QUORUM)
        await results_queue.bind(results, "#")
