"""CPU per AWS call: the worker's clients against plain aiobotocore ones, in one process, interleaved.

`uv run python -m bench.aws_call [--calls N] [--rounds R]` starts the emulator and makes the same
calls (the worker's requests, decoded by its own decoder, spread over the five operations) through:

- `plain`: aiobotocore clients with the worker's client config, as bench.bare_aws makes them;
- `dispatcher`: `dispatcher.aws.AwsClients`, the worker's own (User-Agent and timestamp changes);
- `dispatcher, no botocore validation`: the same with `parameter_validation=False`;
- `dispatcher, no retry handler`: the same with botocore's `needs-retry` handler unregistered.

Each round runs every variant once, in turn, so the machine's drift falls on all of them alike;
the table gives each variant's median and range of CPU ms per call over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import xform_name

from bench.bare_aws import REGION, client_config, decoded_jobs
from bench.harness import AWS_ENV
from bench.processes import running_emulator
from bench.report import Section
from dispatcher.aws import AwsClients
from dispatcher.registry import default_registry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from dispatcher.envelope import Job

IN_FLIGHT = 32
WARM_UP_CALLS = 20  # per operation: connections opened and models loaded before the clock starts

if TYPE_CHECKING:
    Call = Callable[[Job], Awaitable[object]]


async def _plain(stack: AsyncExitStack) -> Call:
    session, clients = get_session(), {}

    async def call(job: Job) -> object:
        service = job.operation.service
        if service not in clients:
            client = session.create_client(service, region_name=REGION, config=client_config(IN_FLIGHT))
            clients[service] = await stack.enter_async_context(client)
        return await getattr(clients[service], xform_name(job.operation.name))(**job.request)

    return call


def _dispatcher(*, validate: bool = True, retry_handler: bool = True) -> Callable[[AsyncExitStack], Awaitable[Call]]:
    async def make(stack: AsyncExitStack) -> Call:
        clients = AwsClients(pool_size=IN_FLIGHT, connect_timeout_s=5, call_timeout_s=30)
        stack.push_async_callback(clients.close)
        if not validate:
            clients._config = clients._config.merge(AioConfig(parameter_validation=False))  # noqa: SLF001 - the experiment
        await clients.open(default_registry().services, (REGION,))
        if not retry_handler:
            for client in clients._clients.values():  # noqa: SLF001 - the experiment
                name = client.meta.service_model.service_id.hyphenize()
                client.meta.events.unregister(f"needs-retry.{name}", unique_id=f"retry-config-{name}")
        return clients.start

    return make


VARIANTS: dict[str, Callable[[AsyncExitStack], Awaitable[Call]]] = {
    "plain aiobotocore": _plain,
    "dispatcher (AwsClients)": _dispatcher(),
    "dispatcher, no botocore validation": _dispatcher(validate=False),
    "dispatcher, no retry handler": _dispatcher(retry_handler=False),
}


async def _cpu_ms_per_call(make: Callable[[AsyncExitStack], Awaitable[Call]], batches: dict[str, list[Job]]) -> float:
    """CPU per call over every job; each operation's first calls are made once before, unmeasured."""
    jobs = [job for batch in batches.values() for job in batch]
    async with AsyncExitStack() as stack:
        call = await make(stack)
        for batch in batches.values():
            for job in batch[:WARM_UP_CALLS]:
                await call(job)
        measured = iter(jobs)

        async def caller() -> None:
            for job in measured:
                await call(job)

        started = time.process_time()
        await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
        return (time.process_time() - started) / len(jobs) * 1000


async def run(calls: int, rounds: int) -> Section:
    """Every variant once per round; the table of medians and ranges."""
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for number in range(rounds):
        for index, (name, make) in enumerate(VARIANTS.items()):
            cpu[name].append(await _cpu_ms_per_call(make, decoded_jobs(calls, f"awscall{number}v{index}")))
    section = Section(
        f"CPU per AWS call: {calls:,} calls over 5 operations, {IN_FLIGHT} in flight, {rounds} interleaved rounds",
        ["client", "CPU ms per call, median", "range", "over plain"],
        [],
    )
    plain = statistics.median(cpu["plain aiobotocore"])
    for name, values in cpu.items():
        median = statistics.median(values)
        section.add(name, f"{median:.3f}", f"{min(values):.3f}-{max(values):.3f}", f"{median / plain:.2f}")
    return section


async def main_async(calls: int, rounds: int) -> None:
    """Start the emulator, point the clients at it, run, print."""
    log_dir = Path(__file__).parent / "results" / "logs"
    async with running_emulator(log_dir) as emulator:
        os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": emulator.url})
        section = await run(calls, rounds)
    section.print()


def main() -> None:
    """Parse the flags and run."""
    cli = argparse.ArgumentParser(prog="python -m bench.aws_call", description=__doc__)
    cli.add_argument("--calls", type=int, default=2_000, help="calls per variant and round (default 2,000)")
    cli.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = cli.parse_args()
    uvloop.run(main_async(args.calls, args.rounds))


if __name__ == "__main__":
    main()
