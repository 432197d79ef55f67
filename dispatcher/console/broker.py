"""Queue depths and consumers from the broker itself (AMQP passive declares), for the overview and the index."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity

from dispatcher.logs import mask_urls

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aio_pika.abc import AbstractRobustConnection


@dataclass(frozen=True, slots=True)
class Depth:
    """A queue's ready messages and attached consumers (unacknowledged ones are not counted by AMQP)."""

    messages: int
    consumers: int


class BrokerProbe:
    """One robust connection, a channel per look (a missing queue closes the channel it was asked on)."""

    def __init__(self, amqp_url: str) -> None:
        self._url = amqp_url
        self._connection: AbstractRobustConnection | None = None

    async def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            await self._connection.close()

    async def depths(self, queues: Iterable[str]) -> dict[str, Depth | None]:
        """Each queue's depth, None for a queue that does not exist; BrokerUnavailable without a broker."""
        connection = await self._connect()
        found: dict[str, Depth | None] = {}
        try:
            channel = await connection.channel()
            try:
                for name in queues:
                    try:
                        queue = await channel.declare_queue(name, passive=True)
                    except ChannelNotFoundEntity:
                        found[name] = None
                        channel = await connection.channel()
                        continue
                    result = queue.declaration_result
                    found[name] = Depth(result.message_count or 0, result.consumer_count or 0)
            finally:
                with contextlib.suppress(AMQPError, RuntimeError, ConnectionError):
                    await channel.close()
        except (AMQPError, ConnectionError, RuntimeError) as exc:
            # The robust connection reconnects by itself; until then the pages say so.
            raise BrokerUnavailable(f"the broker does not answer: {type(exc).__name__}") from None
        return found

    async def _connect(self) -> AbstractRobustConnection:
        if self._connection is None:
            try:
                self._connection = await aio_pika.connect_robust(self._url, timeout=10)
            except (AMQPError, ConnectionError, OSError, TimeoutError) as exc:
                raise BrokerUnavailable(mask_urls(f"cannot connect to the broker: {exc}")) from None
        return self._connection


class BrokerUnavailable(Exception):
    """Raised when the broker cannot be reached; the message has no credentials."""
