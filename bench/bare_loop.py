"""A naive hand-written dispatcher: consume a job, call AWS, publish the result with confirm, ack.

What a team would write instead of using the dispatcher: aio-pika and aiobotocore with the
worker's client config, broker shape and event loop, and nothing else (no validation, limits,
ledger, retries, metrics or logs). The requests are decoded before it consumes, by the worker's
own decoder, so the loop itself spends nothing on them. It serves until SIGTERM and creates the
`--ready` file once its consumers are attached. The half-load benchmark holds the worker's added
latency to it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import uvloop
from aiobotocore.session import get_session
from botocore import xform_name

from bench.bare_amqp import publish_result_and_ack
from bench.bare_aws import REGION, client_config, decoded_jobs
from bench.harness import ROUTING_KEYS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

    from dispatcher.envelope import Job

CALL_TIMEOUT_S = 30


async def serve(url: str, prefix: str, concurrency: int, jobs: dict[str, Job], ready: Path) -> None:
    """Consume every operation queue of `prefix` until SIGTERM; create `ready` once consuming."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    config = client_config(concurrency * len(ROUTING_KEYS))
    async with AsyncExitStack() as stack:
        session = get_session()
        clients = {
            service: await stack.enter_async_context(session.create_client(service, region_name=REGION, config=config))
            for service in {job.operation.service for job in jobs.values()}
        }
        connection = await stack.enter_async_context(await aio_pika.connect(url))
        publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        results = await publish_channel.get_exchange(f"{prefix}.results")
        consume_channel = await connection.channel(publisher_confirms=False)
        await consume_channel.set_qos(prefetch_count=concurrency)
        for routing_key in ROUTING_KEYS:
            queue = await consume_channel.get_queue(f"{prefix}.jobs.{routing_key}", ensure=False)
            await queue.consume(_handler(clients, jobs, results))
        ready.touch()  # noqa: ASYNC240 - one local file, once
        await stop.wait()


def _handler(
    clients: dict[str, Any], jobs: dict[str, Job], results: AbstractExchange
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    async def on_message(message: AbstractIncomingMessage) -> None:
        started_at = datetime.now(UTC)
        job = jobs[message.message_id or ""]
        method = getattr(clients[job.operation.service], xform_name(job.operation.name))
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await method(**job.request)
        await publish_result_and_ack(results, message, started_at)

    return on_message


def main() -> None:
    """Parse the flags, decode the jobs it will be sent, and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True, help="how many jobs of `--prefix` it will be sent")
    parser.add_argument("--ready", type=Path, required=True, help="A file to create once consuming.")
    args = parser.parse_args()
    jobs = {job.job_id: job for batch in decoded_jobs(args.jobs, args.prefix).values() for job in batch}
    uvloop.run(serve(args.url, args.prefix, args.concurrency, jobs, args.ready))


if __name__ == "__main__":
    main()
