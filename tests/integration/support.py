"""Test-side broker helpers: publish jobs with confirms, collect results and dead letters by job id."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import orjson
import pytest
from aio_pika import DeliveryMode, Message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator

    from aio_pika.abc import AbstractChannel, AbstractConnection


REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Received:
    """A message read back from a queue."""

    body: bytes
    headers: dict[str, Any]
    routing_key: str
    properties: dict[str, Any]

    def json(self) -> Any:
        return orjson.loads(self.body)


class Broker:
    """The test's own connection: publishes like a publisher, reads like an operator."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel, prefix: str, url: str) -> None:
        self.url = url
        self.connection = connection
        self.channel = channel
        self.prefix = prefix

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, prefix: str) -> AsyncIterator[Broker]:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            yield cls(connection, channel, prefix, url)

    @property
    def jobs_exchange(self) -> str:
        return f"{self.prefix}.jobs"

    @property
    def results_queue(self) -> str:
        return f"{self.prefix}.results"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    async def publish(self, body: bytes | dict[str, Any], routing_key: str, **properties: Any) -> None:
        """Publish to the jobs exchange, confirmed; dict bodies are JSON-encoded."""
        raw = orjson.dumps(body) if isinstance(body, dict) else body
        properties.setdefault("content_type", "application/json")
        message = Message(raw, delivery_mode=DeliveryMode.PERSISTENT, **properties)
        exchange = await self.channel.get_exchange(self.jobs_exchange)
        await exchange.publish(message, routing_key, mandatory=False)

    async def collect(self, queue_name: str, count: int, timeout_s: float = 20.0) -> list[Received]:
        """Consume and ack `count` messages from a queue (fails the test if they do not come)."""
        return await self.collect_until(queue_name, lambda got: len(got) >= count, timeout_s)

    async def collect_ids(
        self, queue_name: str, job_ids: Iterable[str], timeout_s: float = 30.0
    ) -> dict[str, list[Received]]:
        """Consume until every job id has a message; returns every message by job id (duplicates kept)."""
        wanted = set(job_ids)
        got: dict[str, list[Received]] = {}

        def done(messages: list[Received]) -> bool:
            got.clear()
            for message in messages:
                got.setdefault(job_id_of(message), []).append(message)
            return wanted <= set(got)

        await self.collect_until(queue_name, done, timeout_s)
        return got

    async def collect_until(self, queue_name: str, done: Any, timeout_s: float) -> list[Received]:
        channel = await self.connection.channel()
        try:
            queue = await channel.get_queue(queue_name)
            messages: list[Received] = []
            async with asyncio.timeout(timeout_s):
                while not done(messages):
                    incoming = await queue.get(fail=False)
                    if incoming is None:
                        await asyncio.sleep(0.05)
                        continue
                    messages.append(
                        Received(
                            body=incoming.body,
                            headers=dict(incoming.headers or {}),
                            routing_key=incoming.routing_key or "",
                            properties=incoming.info(),
                        )
                    )
                    await incoming.ack()
            return messages
        finally:
            await channel.close()


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Wait for `condition` to hold (checked every 20 ms); fail naming `what` if it never does."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        msg = f"waited {timeout_s:g} s for {what}"
        raise AssertionError(msg) from None


def job_id_of(message: Received) -> str:
    """The job id of a result (its message_id) or of a dead letter (body's job_id, else message_id)."""
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        body = orjson.loads(message.body)
        if isinstance(body, dict) and isinstance(body.get("job_id"), str):
            return body["job_id"]
    return str(message.properties.get("message_id"))


def _default_sigint() -> None:
    """In the child: Ctrl-C as at a terminal, even when the suite runs as a background job (which ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def start_cli(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """Start `python -m dispatcher ARGS` with piped output."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        *args,
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_default_sigint,
    )


class WorkerProcess:
    """A `dispatcher run` process whose JSON log lines are collected, for kill and signal tests."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], *, wait_ready: bool = True) -> WorkerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dispatcher",
            "run",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = cls(process)
        if wait_ready:
            await worker.wait_for_event("consuming")
        return worker

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.raw.append(line)
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if isinstance(event, dict):
                    self.lines.append(event)

    async def wait_for_event(self, event: str, count: int = 1, timeout_s: float = 30.0) -> None:
        """Wait until the worker logged `event` `count` times (fails if it exits first)."""
        async with asyncio.timeout(timeout_s):
            while sum(1 for line in self.lines if line.get("event") == event) < count:
                if self.process.returncode is not None:
                    raise AssertionError(b"".join(self.raw[-20:]).decode(errors="replace"))
                await asyncio.sleep(0.05)

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    def send(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        self.send(signal.SIGKILL)

    async def wait(self, timeout_s: float = 60.0) -> int:
        async with asyncio.timeout(timeout_s):
            code = await self.process.wait()
            await self._reader
        return code


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A Redis of a test's own, without persistence: it can be killed and started again empty."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH: install redis-server (see .ci/run)")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not listen on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: whatever it held is gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


@contextlib.contextmanager
def redis_server(port: int) -> Iterator[RedisServer]:
    """A running `RedisServer` on `port`, killed after."""
    server = RedisServer(port)
    server.start()
    try:
        yield server
    finally:
        server.kill()
