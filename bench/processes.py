"""The processes a benchmark runs: the emulator and the worker, started, awaited and stopped.

Each runs as `python -m dispatcher ...` with its output in a log file under `bench/results/logs/`,
so the figures are what a deployment sees: no in-process shortcut, no loop shared with the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from bench.cpus import pin_measured

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from pathlib import Path

    from bench.harness import Scenario


def free_port() -> int:
    """A port the kernel says is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process with its output in a log file; stopped with SIGTERM, killed if it hangs."""

    def __init__(
        self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path, *, measured: bool = False
    ) -> None:
        """`measured`: a worker or bare loop whose CPU and rate are the figures; it gets the measured CPU."""
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                [sys.executable, *args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        if measured:
            pin_measured(self._popen.pid)  # before the interpreter has started any thread of its own

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._popen.pid

    def exited(self) -> bool:
        """True once the child has exited."""
        return self._popen.poll() is not None

    async def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, wait, and SIGKILL if it does not exit in time; returns the exit code."""
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self._popen.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            return self._popen.wait()

    async def wait(self, timeout_s: float) -> int:
        """Wait for the child to exit on its own."""
        try:
            return await asyncio.to_thread(self._popen.wait, timeout_s)
        except subprocess.TimeoutExpired:
            await self.stop()
            msg = f"{self.name} did not finish within {timeout_s:.0f}s (see {self.log_path.name})"
            raise TimeoutError(msg) from None

    def tail(self, lines: int = 20) -> str:
        """The end of the child's log, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def wait_file(path: Path, process: Process, timeout_s: float = 60) -> None:
    """Wait until `path` exists (a child's sign that it is ready); fail early if it died."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():  # noqa: ASYNC240 - a stat of a local file
        if process.exited():
            msg = f"{process.name} exited before it was ready:\n{process.tail()}"
            raise RuntimeError(msg)
        if time.monotonic() > deadline:
            msg = f"{process.name} was not ready within {timeout_s:.0f}s"
            raise TimeoutError(msg)
        await asyncio.sleep(0.02)


async def wait_http(url: str, process: Process, timeout_s: float = 60) -> None:
    """Poll `url` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.exited():
                msg = f"{process.name} exited before it was ready:\n{process.tail()}"
                raise RuntimeError(msg)
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    msg = f"{process.name} was not ready within {timeout_s:.0f}s"
    raise TimeoutError(msg)


class Emulator:
    """`python -m dispatcher emulator` in its own process, driven through its control API."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process("emulator", ["-m", "dispatcher", "emulator", "--port", str(self.port)], {}, log_dir)

    async def ready(self) -> None:
        """Wait until the emulator answers its health check."""
        await wait_http(f"{self.url}/_emulator/health", self.process)

    async def configure(self, faults: Mapping[str, Any]) -> None:
        """Forget jobs and calls, then put `faults` in force (`{}`: none)."""
        async with aiohttp.ClientSession(raise_for_status=True) as session:
            await (await session.post(f"{self.url}/_emulator/reset")).release()
            await (await session.put(f"{self.url}/_emulator/faults", data=orjson.dumps(dict(faults)))).release()

    async def calls(self, routing_key: str) -> tuple[int, list[dict[str, Any]]]:
        """The call log of one operation, oldest first, and the total number of calls logged."""
        url = f"{self.url}/_emulator/calls"
        async with (
            aiohttp.ClientSession(raise_for_status=True) as session,
            session.get(url, params={"routing_key": routing_key}) as response,
        ):
            document = orjson.loads(await response.read())
        return int(document["total"]), list(document["calls"])

    async def stop(self) -> None:
        """Stop the process."""
        await self.process.stop(timeout_s=10)


@contextlib.asynccontextmanager
async def running_emulator(log_dir: Path) -> AsyncIterator[Emulator]:
    """The emulator for the block's duration."""
    emulator = Emulator(log_dir)
    try:
        await emulator.ready()
        yield emulator
    finally:
        await emulator.stop()


@contextlib.asynccontextmanager
async def running_worker(
    scenario: Scenario,
    emulator: Emulator,
    log_dir: Path,
    *,
    name: str,
    profile_path: Path | None = None,
) -> AsyncIterator[Process]:
    """`python -m dispatcher run` for the scenario, ready to consume; drained and stopped afterwards."""
    http_port = free_port()
    command = ["-m", "bench.profiled", str(profile_path)] if profile_path is not None else ["-m", "dispatcher"]
    worker = Process(name, [*command, "run"], scenario.worker_env(emulator.url, http_port), log_dir, measured=True)
    try:
        await wait_http(f"http://127.0.0.1:{http_port}/readyz", worker)
        if profile_path is not None:
            os.kill(worker.pid, signal.SIGUSR1)
        yield worker
    finally:
        code = await worker.stop()
        if code != 0:
            print(f"warning: {name} exited with {code} (see {worker.log_path.name})", file=sys.stderr)
