"""What the suite watches besides outcomes: the worker's event-loop lag, its broker connections, its queues.

* Lag: the worker runs as a subprocess (`dispatcher run`, as deployed, through
  `tests.hostile.lag_worker`, which adds a heartbeat task to its loop), so that its loop carries
  only its own work: a lag task in the test process would also count the test's publisher, reader
  and emulator. A heartbeat's lateness counts against the worker less the time the kernel kept the
  loop's thread waiting for a CPU (`lag_ms`): CI shares two CPUs with everything else, and a worker
  the machine starved has not blocked its loop.
* Liveness: `tests.hostile.livez_probe`, in a process of its own, asks `/livez` every 50 ms, as a
  kubelet would; every probe must be answered. Its response times are reported, not asserted: an
  answer takes several loop iterations, so under a burst it overstates the loop's lag.
* Connections: `rabbitmqctl list_connections` about every second, the worker's connections
  (aiormq clients in the test's vhost) by name: one and the same all the way through.
* Queues: `rabbitmqctl list_queues` at the end, polled because counts lag behind for seconds.
* The worker's log goes to a file, not to a pipe: a pipe that the busy test process drains late
  blocks the worker's log writes, which shows up as event-loop lag of the test's making.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from tests.integration.support import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

PROBE_INTERVAL_S = 0.05
RECONNECTS_METRIC = "dispatcher_broker_reconnects_total"
READY_TIMEOUT_S = 30.0
FULL_COLLECTION = 2


class LoggedWorker:
    """A `dispatcher run` subprocess writing its JSON log lines to a file, read back on demand."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path, lag_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.lag_path = lag_path
        self._lines: list[dict[str, Any]] = []
        self._offset = 0

    @classmethod
    async def start(cls, env: dict[str, str], log_path: Path, lag_path: Path) -> LoggedWorker:
        """Start the worker and wait until it consumes (fails with its log's tail if it exits first)."""
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.hostile.lag_worker",
                str(lag_path),
                env=env,
                cwd=REPO_ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        worker = cls(process, log_path, lag_path)
        async with asyncio.timeout(READY_TIMEOUT_S):
            while not worker.events("consuming"):
                assert process.returncode is None, worker.tail()
                await asyncio.sleep(0.05)
        return worker

    def events(self, event: str) -> list[dict[str, Any]]:
        """The log lines of one event so far."""
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(line)
                if isinstance(parsed, dict):
                    self._lines.append(parsed)
        return [line for line in self._lines if line.get("event") == event]

    def loop_lag(self) -> LoopLag:
        """The heartbeats its loop logged so far."""
        samples = []
        if self.lag_path.exists():
            for line in self.lag_path.read_bytes().splitlines():
                with contextlib.suppress(orjson.JSONDecodeError):
                    samples.append(orjson.loads(line))
        return LoopLag(samples)  # heartbeats and garbage collections

    def tail(self, count: int = 5) -> str:
        """The last lines of the log, as text."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)


def free_port() -> int:
    """A TCP port nobody listens on now (the worker binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rabbitmqctl_json(*args: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """`rabbitmqctl ARGS --formatter json`, parsed (blocking: call it through `asyncio.to_thread`)."""
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None, "rabbitmqctl is not on PATH"
    done = subprocess.run(
        [ctl, *args, "--formatter", "json"], check=True, capture_output=True, timeout=timeout_s, text=True
    )
    return list(orjson.loads(done.stdout or "[]"))


@dataclass
class LoopLag:
    """The worker loop's heartbeats: how late each came, and how much of that the loop was busy."""

    lines: list[dict[str, Any]]

    @property
    def samples(self) -> list[dict[str, Any]]:
        """The heartbeats."""
        return [line for line in self.lines if "late_ms" in line]

    def full_collections(self) -> int:
        """Generation-2 garbage collections of 10 ms or more so far."""
        return sum(1 for line in self.lines if line.get("generation") == FULL_COLLECTION)

    def _gc_around(self, sample: dict[str, Any]) -> float:
        """Garbage-collection pauses that began while this heartbeat was due or late."""
        start, end = sample["at"] - PROBE_INTERVAL_S, sample["at"] + sample["late_ms"] / 1000
        return sum(line["gc_ms"] for line in self.lines if "gc_ms" in line and start <= line["at"] <= end)

    def findings(self, max_lag_ms: float, origin: float, since: float) -> list[str]:
        """Heartbeats from `since` on that the worker's own work delayed by more than `max_lag_ms`."""
        measured = [sample for sample in self.samples if sample["at"] >= since]
        if not measured:
            return ["[lag] the worker's loop logged no heartbeat"]
        slow = sorted((sample for sample in measured if lag_ms(sample) > max_lag_ms), key=lag_ms, reverse=True)
        if not slow:
            return []
        shown = ", ".join(
            f"{lag_ms(sample):.0f} ms (late {sample['late_ms']:.0f} ms, on CPU {sample['cpu_ms']} ms, garbage "
            f"collection {self._gc_around(sample):.0f} ms) at {sample['at'] - origin:.1f}s"
            for sample in slow[:8]
        )
        finding = (
            f"[lag] the worker's event loop was blocked over {max_lag_ms:.0f} ms {len(slow)} times in "
            f"{len(measured)} heartbeats: {shown}"
        )
        return [finding]

    def summary(self, since: float) -> str:
        """The worst lag the worker caused from `since` on, and before it (the warm-up)."""
        during = [lag_ms(sample) for sample in self.samples if sample["at"] >= since]
        before = [lag_ms(sample) for sample in self.samples if sample["at"] < since]
        raw = [float(sample["late_ms"]) for sample in self.samples if sample["at"] >= since]
        return (
            f"loop lag: worst {max(during, default=0):.0f} ms caused by the worker "
            f"(raw lateness up to {max(raw, default=0):.0f} ms; warm-up, not counted: {max(before, default=0):.0f} ms)"
        )


def lag_ms(sample: dict[str, Any]) -> float:
    """A heartbeat's lateness less the time its thread waited for a CPU: the lag the worker caused."""
    return float(sample["late_ms"]) - float(sample.get("wait_ms") or 0)


@dataclass
class LagProbe:
    """The `/livez` probe process and every response time it measured."""

    samples: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, port: int) -> AsyncIterator[LagProbe]:
        probe = cls()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.hostile.livez_probe",
            "127.0.0.1",
            str(port),
            str(PROBE_INTERVAL_S),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        reading = asyncio.ensure_future(probe._read(process))
        try:
            yield probe
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 10)
            await asyncio.wait_for(reading, 10)

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            with contextlib.suppress(orjson.JSONDecodeError):
                self.samples.append(orjson.loads(line))

    def findings(self, origin: float) -> list[str]:
        """Probes the worker did not answer (200) within the probe's timeout."""
        if not self.samples:
            return ["[livez] the /livez probe took no sample"]
        unanswered = [sample for sample in self.samples if sample["status"] != 200]
        if not unanswered:
            return []
        shown = ", ".join(f"{sample['status']} at {sample['at'] - origin:.1f}s" for sample in unanswered[:8])
        return [f"[livez] {len(unanswered)} of {len(self.samples)} /livez probes unanswered: {shown}"]

    def summary(self) -> str:
        """Count, median, 99th percentile and maximum of the response times."""
        if not self.samples:
            return "no /livez samples"
        times = sorted(sample["ms"] for sample in self.samples)
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        return (
            f"/livez: {len(times)} probes, median {times[len(times) // 2]:.1f} ms, p99 {p99:.1f} ms, "
            f"max {times[-1]:.1f} ms"
        )


@dataclass
class ConnectionWatch:
    """The worker's broker connections in the test's vhost, sampled about every second."""

    vhost: str
    samples: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, vhost: str) -> AsyncIterator[ConnectionWatch]:
        watch = cls(vhost)
        task = asyncio.ensure_future(watch._sample_forever())
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await watch.sample()

    async def _sample_forever(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(1.0)

    async def sample(self) -> None:
        """Record the names of the worker's connections now."""
        try:
            rows = await asyncio.to_thread(rabbitmqctl_json, "list_connections", "vhost", "name", "client_properties")
        except (subprocess.SubprocessError, OSError, orjson.JSONDecodeError) as exc:
            self.errors.append(repr(exc))
            return
        names = tuple(sorted(row["name"] for row in rows if row.get("vhost") == self.vhost and _is_worker(row)))
        self.samples.append((time.monotonic(), names))

    def findings(self) -> list[str]:
        """Any sample without exactly one worker connection, or more than one connection over the run."""
        if not self.samples:
            return [f"[connection] no rabbitmqctl sample of the worker's connections: {self.errors[:3]}"]
        seen = sorted({name for _, names in self.samples for name in names})
        counts = [len(names) for _, names in self.samples]
        if len(seen) == 1 and set(counts) == {1}:
            return []
        finding = (
            f"[connection] the worker's broker connection did not stay one: {len(seen)} distinct connections "
            f"over the run ({seen[:6]}), per-sample counts {counts[:40]}"
        )
        return [finding]


def _is_worker(row: dict[str, Any]) -> bool:
    properties = {entry[0]: entry[2] for entry in row.get("client_properties") or [] if len(entry) == 3}
    return properties.get("connection_name") == "dispatcher" or properties.get("product") == "aiormq"


def scrape_metric(port: int, name: str) -> float | None:
    """One unlabelled metric from the worker's `/metrics` (None when absent; blocking)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        page = connection.getresponse().read().decode()
    finally:
        connection.close()
    for line in page.splitlines():
        metric, _, value = line.partition(" ")
        if metric == name:
            return float(value)
    return None


async def queue_leftovers(vhost: str, prefix: str, timeout_s: float = 20.0) -> list[str]:
    """The test's queues still holding messages (ready or unacked), polled until none do or time is up."""
    leftovers: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await asyncio.to_thread(
            rabbitmqctl_json, "list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged"
        )
        leftovers = [
            f"{row['name']}: ready {row['messages_ready']}, unacked {row['messages_unacknowledged']}"
            for row in rows
            if str(row["name"]).startswith(f"{prefix}.") and (row["messages_ready"] or row["messages_unacknowledged"])
        ]
        if not leftovers or time.monotonic() > deadline:
            return leftovers
        await asyncio.sleep(1.0)
