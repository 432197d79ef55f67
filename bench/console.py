"""The console's dead-letter page with 100,000 dead letters (`make bench-console`): response times, p50 and p99.

In a vhost of its own: the topology, then `--letters` stamped dead letters (five operations, four
categories) published with confirms, then the console in this process and an HTTP client asking for
the dead-letter page. The first request builds the index (one scan of the whole queue); the
measured requests are then pages of the whole list, of a category filter, of a job id filter and
of an age filter (never cached), each also checking the queue's count on the broker, as every page
request does. The queue is full circle afterwards: the bench checks its count.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import socket
import statistics
import time
from typing import TYPE_CHECKING

import aio_pika
import aiohttp
import orjson
from aio_pika import DeliveryMode, Message
from aiohttp import web

from bench.harness import bench_vhost
from dispatcher.console.app import build_console, console_app
from dispatcher.errors import InvalidJob, RejectedByAws
from dispatcher.examples import example_job
from dispatcher.operations import OPERATION_SPECS
from dispatcher.registry import default_registry
from dispatcher.settings import Settings
from dispatcher.settle import dead_letter_headers
from dispatcher.stamps import Stamper
from dispatcher.topology import Names, declare_for

if TYPE_CHECKING:
    from collections.abc import Callable

PUBLISH_WINDOW = 2000
ERRORS = (
    RejectedByAws("AccessDeniedException", "User is not authorized", http_status=403),
    RejectedByAws("ResourceNotFoundException", "No such application", http_status=404),
    InvalidJob("InvalidJobMessage", "priority: Extra inputs are not permitted"),
    InvalidJob("InvalidParameters", "params.jobName: String should have at most 100 characters"),
)


async def fill(settings: Settings, letters: int) -> float:
    """Publish the dead letters as workers would have, stamped; seconds taken."""
    stamper = Stamper.from_settings(settings)
    keys = [spec.routing_key for spec in OPERATION_SPECS]
    started = time.monotonic()
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare_for(channel, settings, default_registry())
        exchange = await channel.get_exchange(Names.from_settings(settings).dead_exchange)
        for first in range(0, letters, PUBLISH_WINDOW):
            batch = []
            for number in range(first, min(letters, first + PUBLISH_WINDOW)):
                key, error, job_id = keys[number % len(keys)], ERRORS[number % len(ERRORS)], f"bench-{number:06d}"
                body = orjson.dumps(example_job(key, job_id))
                headers = stamper.sign(dict(dead_letter_headers(error, 1, key)), body, job_id)
                message = Message(body, headers=headers, message_id=job_id, delivery_mode=DeliveryMode.PERSISTENT)
                batch.append(exchange.publish(message, key))
            await asyncio.gather(*batch)
    return time.monotonic() - started


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def measure(settings: Settings, letters: int, requests: int) -> None:
    """Serve the console, time the first page and `requests` more; print the figures."""
    runner = web.AppRunner(console_app(build_console(settings, default_registry())), access_log=None)
    await runner.setup()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    await web.SockSite(runner, listening).start()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(7)  # noqa: S311 - which pages to ask for, not a secret
    pages = letters // 50
    paths: list[Callable[[], str]] = [
        lambda: f"/letters?page={rng.randint(1, pages)}",
        lambda: f"/letters?category=rejected&page={rng.randint(1, pages // 2)}",
        lambda: f"/letters?job_id=bench-{rng.randrange(letters):06d}",
        lambda: "/letters?newer_than=1d&service=m2",
    ]
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            started = time.monotonic()
            text = ""
            while 'id="count"' not in text:  # until the index is built, the page says how far it got
                async with session.get(f"{base}/letters") as response:
                    text = await response.text()
                    assert response.status == 200, text[:500]
            assert f"{letters} of {letters} dead letters match" in text, "the index missed letters"
            first_s = time.monotonic() - started
            rss_after_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            times_ms: dict[int, list[float]] = {kind: [] for kind in range(len(paths))}
            for number in range(requests):
                kind = number % len(paths)
                started = time.monotonic()
                async with session.get(base + paths[kind]()) as response:
                    await response.read()
                    assert response.status == 200
                times_ms[kind].append((time.monotonic() - started) * 1000)
    finally:
        await runner.cleanup()
    every = [t for values in times_ms.values() for t in values]
    print(f"first list (the index of {letters:,} letters built by one scan): {first_s:.1f} s")
    print(f"max RSS of this process: {rss_before_mb:.0f} MB before the index, {rss_after_mb:.0f} MB after")
    print(f"next {requests} page requests: p50 {quantile(every, 0.5):.1f} ms, p99 {quantile(every, 0.99):.1f} ms")
    names = ("whole list, random page", "category filter, random page", "job id filter", "age + service filter")
    for kind, name in enumerate(names):
        print(f"  {name}: p50 {quantile(times_ms[kind], 0.5):.1f} ms, p99 {quantile(times_ms[kind], 0.99):.1f} ms")


async def check_full_circle(settings: Settings, letters: int) -> None:
    """The queue holds every letter again once the console's reads are done."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(Names.from_settings(settings).dead_queue, passive=True)
        count = queue.declaration_result.message_count
    print(f"dead letters in the queue afterwards: {count:,} of {letters:,}")


async def main(letters: int, requests: int) -> None:
    """Fill, measure, check."""
    with bench_vhost() as amqp_url:
        settings = Settings(amqp_url=amqp_url, console_index_max_age_s=3600)
        print(f"publishing {letters:,} dead letters ...")
        print(f"published in {await fill(settings, letters):.1f} s")
        await measure(settings, letters, requests)
        await check_full_circle(settings, letters)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--letters", type=int, default=100_000)
    arguments.add_argument("--requests", type=int, default=400)
    options = arguments.parse_args()
    asyncio.run(main(options.letters, options.requests))
