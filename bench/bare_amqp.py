"""Bound (b): a bare aio-pika loop, consume -> publish a result with confirm -> ack, no AWS call.

Run as its own process (`python -m bench.bare_amqp`) with the worker's broker shape: one
channel with publisher confirms for results, one consuming channel with the same prefetch per
operation queue, persistent results published mandatory to the results exchange with a
deadline, then the ack. It serves until SIGTERM, like the worker, and creates the `--ready` file
once its consumers are attached.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import orjson
import uvloop
from aio_pika import DeliveryMode, Message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bench.harness import ROUTING_KEYS

PUBLISH_TIMEOUT_S = 10


def result_body(message: AbstractIncomingMessage, started_at: datetime) -> bytes:
    """A result of the same shape the worker publishes (job id, outcome, times)."""
    service, _, operation = (message.routing_key or "").partition(".")
    return orjson.dumps(
        {
            "job_id": message.message_id,
            "service": service,
            "operation": operation,
            "outcome": "succeeded",
            "metadata": {},
            "attempts": 1,
            "started_at": started_at,
            "finished_at": datetime.now(UTC),
        },
        option=orjson.OPT_UTC_Z,
    )


async def serve(url: str, prefix: str, concurrency: int, ready: Path) -> None:
    """Consume every operation queue of `prefix` until SIGTERM; create `ready` once consuming."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    connection = await aio_pika.connect(url)
    async with connection:
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        results = await publish_channel.get_exchange(f"{prefix}.results")
        consume_channel = await connection.channel(publisher_confirms=False)
        await consume_channel.set_qos(prefetch_count=concurrency)
        for routing_key in ROUTING_KEYS:
            queue = await consume_channel.get_queue(f"{prefix}.jobs.{routing_key}", ensure=False)
            await queue.consume(_handler(results))
        ready.touch()  # noqa: ASYNC240 - one local file, once
        await stop.wait()


def _handler(results: AbstractExchange) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    async def on_message(message: AbstractIncomingMessage) -> None:
        started_at = datetime.now(UTC)
        await publish_result_and_ack(results, message, started_at)

    return on_message


async def publish_result_and_ack(
    results: AbstractExchange, message: AbstractIncomingMessage, started_at: datetime
) -> None:
    """What a hand-written loop does with a job it handled: a persistent result with confirm, then the ack."""
    result = Message(
        result_body(message, started_at),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.message_id,
        timestamp=started_at,
    )
    async with asyncio.timeout(PUBLISH_TIMEOUT_S):
        await results.publish(result, f"{message.routing_key}.succeeded", mandatory=True)
    await message.ack()


def main() -> None:
    """Parse the flags and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True, help="A file to create once consuming.")
    args = parser.parse_args()
    # The worker's own event loop, so the bound it is held to is a fair one.
    uvloop.run(serve(args.url, args.prefix, args.concurrency, args.ready))


if __name__ == "__main__":
    main()
