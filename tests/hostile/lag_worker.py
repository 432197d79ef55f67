"""`dispatcher run`, unchanged, with a lag probe on its event loop: `python -m tests.hostile.lag_worker LAG_FILE`.

A task on the worker's own loop sleeps 50 ms at a time and writes, as a JSON line, how late each
wake-up came (`late_ms`) and how long of that the loop's thread sat runnable but unscheduled
(`wait_ms`, the kernel's run-queue wait from `/proc/self/task/TID/schedstat`, sampled every 5 ms by a
helper thread). The rest, `late_ms - wait_ms`, is the lag the worker caused itself (its own
callbacks, a blocking call), whatever else runs on the machine. `cpu_ms` is the loop thread's CPU
time meanwhile. Garbage collections of 10 ms or more are written too (`gc_ms`): they stop the loop.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import uvloop

from dispatcher import cli

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import TextIO

INTERVAL_S = 0.05
SCHED_SAMPLE_S = 0.005
SCHED_SAMPLES_KEPT = 400
GC_REPORTED_MS = 10.0


def thread_schedstat(native_id: int) -> tuple[float, float]:
    """(CPU time, run-queue wait) of one thread of this process so far, in milliseconds."""
    cpu_ns, wait_ns, _ = Path(f"/proc/self/task/{native_id}/schedstat").read_text().split()
    return int(cpu_ns) / 1e6, int(wait_ns) / 1e6


class LoopLag:
    """Writes one line per heartbeat of the loop it runs on, and one per long garbage collection."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._loop_thread = threading.get_native_id()
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=SCHED_SAMPLES_KEPT)
        self._stop = threading.Event()
        self._gc_started_at = 0.0

    def _write(self, line: dict[str, Any]) -> None:
        self._out.write(orjson.dumps(line).decode() + "\n")

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started_at = time.monotonic()
            return
        pause_ms = (time.monotonic() - self._gc_started_at) * 1000
        if pause_ms >= GC_REPORTED_MS:
            self._write({"at": self._gc_started_at, "gc_ms": round(pause_ms, 2), "generation": info["generation"]})

    def _sample(self) -> None:
        while not self._stop.wait(SCHED_SAMPLE_S):
            self._samples.append((time.monotonic(), *thread_schedstat(self._loop_thread)))

    def _sampled_at(self, moment: float) -> tuple[float, float] | None:
        samples = list(self._samples)
        index = bisect.bisect_right([at for at, _, _ in samples], moment)
        return samples[index - 1][1:] if index else None

    def heartbeat(self, due: float) -> dict[str, Any]:
        """The line for a wake-up due at `due`, taken now (on the loop's thread)."""
        woke = time.monotonic()
        cpu_now, wait_now = thread_schedstat(self._loop_thread)
        then = self._sampled_at(due)
        line: dict[str, Any] = {"at": due, "late_ms": round((woke - due) * 1000, 2), "cpu_ms": None, "wait_ms": None}
        if then is not None:
            line["cpu_ms"], line["wait_ms"] = round(cpu_now - then[0], 2), round(wait_now - then[1], 2)
        return line

    async def run(self) -> None:
        sampler = threading.Thread(target=self._sample, name="lag-sched-sampler", daemon=True)
        sampler.start()
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                due = time.monotonic() + INTERVAL_S
                await asyncio.sleep(INTERVAL_S)
                self._write(self.heartbeat(due))
        finally:
            gc.callbacks.remove(self._on_gc)
            self._stop.set()


def main(argv: list[str]) -> None:
    """Run `dispatcher run` with the lag probe writing to the file named first."""
    original_run = uvloop.run  # the worker's own loop

    def run_with_probe(main: Coroutine[Any, Any, Any], **options: Any) -> Any:
        async def probed() -> Any:
            with Path(argv[1]).open("a", buffering=1) as out:
                probe = asyncio.ensure_future(LoopLag(out).run())
                try:
                    return await main
                finally:
                    probe.cancel()

        return original_run(probed(), **options)

    uvloop.run = run_with_probe
    sys.argv = ["dispatcher", "run"]
    cli.main()


if __name__ == "__main__":
    main(sys.argv)
