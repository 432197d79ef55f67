"""Bound (a): a bare aiobotocore loop making the worker's calls, with no broker.

Run as its own process (`python -m bench.bare_aws`), like the worker: the same clients and
client config as `dispatcher.aws`, the same request parameters (decoded by the worker's own
decoder, idempotency tokens included), and the same concurrency (`--concurrency` calls in
flight per operation). Writes `{"jobs", "elapsed_s", "cpu_s", "errors"}` as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import xform_name

from bench.harness import ROUTING_KEYS, job_ids
from dispatcher.envelope import Decoder, Job
from dispatcher.examples import example_job
from dispatcher.registry import default_registry

REGION = "us-east-1"


def decoded_jobs(count: int, prefix: str = "bare") -> dict[str, list[Job]]:
    """The jobs the worker would call AWS with (ids `prefix-NNNNNN`), by routing key."""
    decoder = Decoder(default_registry(), REGION, (REGION,), 8 * 1024 * 1024)
    jobs: dict[str, list[Job]] = {rk: [] for rk in ROUTING_KEYS}
    for routing_key, job_id in job_ids(prefix, ROUTING_KEYS, count):
        body = orjson.dumps(example_job(routing_key, job_id))
        jobs[routing_key].append(decoder.decode(body, routing_key, job_id))
    return jobs


def client_config(pool_connections: int) -> AioConfig:
    """The worker's client config (`dispatcher.aws.AwsClients`): botocore's retries off, its timeouts."""
    return AioConfig(
        retries={"total_max_attempts": 1},
        max_pool_connections=pool_connections,
        connect_timeout=5,
        read_timeout=30,
    )


async def run(count: int, concurrency: int) -> dict[str, Any]:
    """Make every call, `concurrency` at once per operation; returns the figures."""
    jobs = decoded_jobs(count)
    config = client_config(concurrency * len(ROUTING_KEYS))
    errors = 0
    async with AsyncExitStack() as stack:
        session = get_session()
        clients = {}
        for service in {job.operation.service for batch in jobs.values() for job in batch}:
            clients[service] = await stack.enter_async_context(
                session.create_client(service, region_name=REGION, config=config)
            )

        async def call_all(queue: list[Job]) -> None:
            nonlocal errors
            while queue:
                job = queue.pop()
                method = getattr(clients[job.operation.service], xform_name(job.operation.name))
                try:
                    async with asyncio.timeout(30):
                        await method(**job.request)
                except Exception:  # noqa: BLE001 - counted, the figure is what matters
                    errors += 1

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(call_all(queue) for queue in jobs.values() for _ in range(concurrency)))
        elapsed_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    return {"jobs": count, "elapsed_s": elapsed_s, "cpu_s": cpu_s, "errors": errors}


def main() -> None:
    """Parse the flags, run, write the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # The worker's own event loop, so the bound it is held to is a fair one.
    figures = uvloop.run(run(args.jobs, args.concurrency))
    args.out.write_bytes(orjson.dumps(figures))


if __name__ == "__main__":
    main()
