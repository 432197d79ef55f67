"""Confirmed publishing with a deadline: a publish either is confirmed or raises `PublishFailed`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError, PublishError

if TYPE_CHECKING:
    from aio_pika.abc import AbstractExchange, AbstractMessage


class PublishFailed(Exception):
    """Raised when the broker did not confirm a publish: nacked, returned, timed out or disconnected."""


async def publish_confirmed(
    exchange: AbstractExchange,
    message: AbstractMessage,
    routing_key: str,
    *,
    timeout_s: float,
    mandatory: bool = True,
) -> None:
    """Publish and wait for the confirm; an unroutable mandatory publish raises instead of vanishing.

    After a forced connection close a publish can be handed a dead channel and wait forever,
    so the deadline turns that into "not confirmed".
    """
    try:
        async with asyncio.timeout(timeout_s):
            await exchange.publish(message, routing_key, mandatory=mandatory)
    except TimeoutError:
        msg = f"publish to {exchange.name or 'the default exchange'} ({routing_key}) not confirmed in {timeout_s}s"
        raise PublishFailed(msg) from None
    except PublishError as exc:
        msg = f"publish to {exchange.name or 'the default exchange'} ({routing_key}) was returned unroutable"
        raise PublishFailed(msg) from exc
    except (DeliveryError, ChannelInvalidStateError, AMQPError, ConnectionError) as exc:
        msg = f"publish to {exchange.name or 'the default exchange'} ({routing_key}) failed: {exc!r}"
        raise PublishFailed(msg) from exc
