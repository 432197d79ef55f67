"""`make demo`: the emulator and a worker on local defaults, one job per operation plus a bad one.

Starts `dispatcher emulator` and `dispatcher run` as real processes against the local RabbitMQ,
submits the jobs through the Python client, prints each result and the dead letter, follows one
job to its end (the emulator's jobs run for 5 s; the demo polls every second or two instead of the
default 5 s and more), then stops both processes with SIGTERM (the worker drains and exits 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import aio_pika
import orjson
from rich.console import Console
from rich.table import Table

from dispatcher.client import DispatcherClient, JobRequest
from dispatcher.dead_letters import LetterFilter
from dispatcher.dlq import browse
from dispatcher.examples import EXAMPLE_PARAMS
from dispatcher.settings import Settings
from dispatcher.stamps import Stamper

AMQP_URL = os.environ.get("DISPATCHER_AMQP_URL", "amqp://guest:guest@localhost:5672/")
console = Console()


def free_port() -> int:
    """A port the kernel says is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def broker_reachable() -> bool:
    """True if RabbitMQ answers at AMQP_URL."""
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except (OSError, aio_pika.exceptions.AMQPError, TimeoutError):
        return False
    await connection.close()
    return True


def wait_http(url: str, timeout_s: float = 30) -> None:
    """Poll until the URL answers 200."""
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout_s}s")


async def submit_all() -> tuple[list[dict[str, object]], dict[str, object]]:
    """One job per operation and one with a bad parameter; returns their results."""
    results = []
    async with DispatcherClient(AMQP_URL) as client:
        for routing_key, params in EXAMPLE_PARAMS.items():
            service, _, operation = routing_key.partition(".")
            job = JobRequest(service=service, operation=operation, params=params, job_id=f"demo-{uuid.uuid4().hex[:8]}")
            results.append(await client.submit_and_wait(job, timeout_s=30))
    bad_params = {**EXAMPLE_PARAMS["m2.StartBatchJob"], "jobParams": {"9-not-a-key": "x"}}
    bad = JobRequest(
        service="m2", operation="StartBatchJob", params=bad_params, job_id=f"demo-bad-{uuid.uuid4().hex[:8]}"
    )
    async with DispatcherClient(AMQP_URL, validate=False) as unchecked:
        bad_result = await unchecked.submit_and_wait(bad, timeout_s=30)
    return results, bad_result


async def follow_one() -> tuple[list[str], dict[str, object] | None]:
    """One M2 job followed to its end: the statuses it went through, and its completion result."""
    statuses: list[str] = []

    def show(progress: dict[str, object]) -> None:
        statuses.append(str(progress["job_status"]))
        console.print(f"followed job: AWS status {progress['job_status']}")

    job = JobRequest(
        service="m2",
        operation="StartBatchJob",
        params=EXAMPLE_PARAMS["m2.StartBatchJob"],
        job_id=f"demo-followed-{uuid.uuid4().hex[:8]}",
    )
    async with DispatcherClient(AMQP_URL) as client:
        followed = await client.submit_and_follow(job, timeout_s=60, on_status=show)
    return statuses, followed.completion


async def dead_letter_of(job_id: str) -> dict[str, object] | None:
    """The demo's dead letter, read the way `dispatcher dlq show` reads it (the queue is left as it was)."""
    stamper = Stamper.from_settings(Settings(amqp_url=AMQP_URL))
    found = await browse(AMQP_URL, "dispatcher.dead", LetterFilter(job_ids=frozenset({job_id})), stamper=stamper)
    return found.letters[-1].to_record() if found.letters else None


def main() -> int:
    """Run the demo; exit 1 if anything did not go as shown."""
    if not asyncio.run(broker_reachable()):
        console.print(
            f"RabbitMQ is not reachable at {AMQP_URL}: start one (`rabbitmq-server -detached`, or "
            "`docker compose -f deploy/compose.yaml up rabbitmq`) and run `make demo` again."
        )
        return 1
    emulator_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{emulator_port}",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_REGION": "us-east-1",
        "DISPATCHER_HTTP_PORT": str(http_port),
        "DISPATCHER_LOG_FORMAT": "console",
        "DISPATCHER_FOLLOW_POLL_DELAYS": "1,2",
    }
    dispatcher = [sys.executable, "-m", "dispatcher"]
    emulator = subprocess.Popen([*dispatcher, "emulator", "--port", str(emulator_port)], env=env)
    worker = None
    try:
        wait_http(f"http://127.0.0.1:{emulator_port}/_emulator/health")
        worker = subprocess.Popen([*dispatcher, "run"], env=env)
        wait_http(f"http://127.0.0.1:{http_port}/readyz")
        results, bad_result = asyncio.run(submit_all())
        dead = asyncio.run(dead_letter_of(str(bad_result["job_id"])))
        statuses, completion = asyncio.run(follow_one())
    finally:
        for process in (worker, emulator):
            if process is not None:
                process.send_signal(signal.SIGTERM)
        worker_code = worker.wait(timeout=60) if worker else 0
        emulator.wait(timeout=30)

    table = Table(title="results")
    for column in ("job_id", "operation", "outcome", "attempts", "AWS response / error"):
        table.add_column(column)
    for result in [*results, bad_result]:
        detail = result.get("response") or result.get("error")
        table.add_row(
            str(result["job_id"]),
            f"{result['service']}.{result['operation']}",
            str(result["outcome"]),
            str(result["attempts"]),
            orjson.dumps(detail).decode()[:90],
        )
    console.print(table)
    console.print("[bold]dead letter[/bold] (in dispatcher.dead, see `dispatcher dlq list`):")
    console.print_json(data=dead)
    console.print(f"[bold]followed job[/bold]: went through {' -> '.join(statuses)}; its completion result:")
    console.print_json(data=completion)
    ok = all(r["outcome"] == "succeeded" for r in results) and bad_result["outcome"] == "failed" and dead is not None
    ok = ok and completion is not None and completion["job_outcome"] == "succeeded"
    console.print(f"worker exited with {worker_code} after draining")
    return 0 if ok and worker_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
