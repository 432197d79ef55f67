"""`python -m bench.profiled OUT ARGS...`: the `dispatcher` command under cProfile, written to OUT at exit.

Profiling starts on SIGUSR1 rather than at start-up, so imports and client creation stay out of
the figures: the benchmark sends it once the worker is ready. It is cProfile all the same, as
`python -m cProfile -o OUT -m dispatcher ARGS...` would run it.

cProfile shows where the CPU goes, not what jobs wait for, so a probe also samples, every
`PROBE_EVERY_S`, the event loop's lag and each publishing channel of aiormq: publishes waiting
for its lock, and publishes sent but not yet confirmed by the broker. The samples go to
`OUT.probe.json`. The probe only reads; it changes nothing the worker does.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiormq.channel
import orjson

PROBE_EVERY_S = 0.1


class Probe:
    """Samples what the worker's jobs are waiting for while the profiler runs."""

    def __init__(self) -> None:
        self.channels: set[Any] = set()
        self.samples: list[dict[str, float]] = []
        self.enabled = False
        self._task: asyncio.Task[None] | None = None

    def watch_publishes(self) -> None:
        """Note every channel that publishes (results, retries, dead letters)."""
        publish = aiormq.channel.Channel.basic_publish

        @functools.wraps(publish)
        async def noted(channel: Any, *args: Any, **kwargs: Any) -> Any:
            if self.enabled:
                self.channels.add(channel)
                if self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self._sample())
            return await publish(channel, *args, **kwargs)

        aiormq.channel.Channel.basic_publish = noted  # type: ignore[method-assign,assignment]

    async def _sample(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(PROBE_EVERY_S)
            lag_s = time.perf_counter() - started - PROBE_EVERY_S
            for channel in self.channels:
                lock = getattr(channel, "_Channel__lock", None)
                self.samples.append(
                    {
                        "loop_lag_ms": lag_s * 1000,
                        "lock_waiters": len(getattr(lock, "_waiters", None) or ()),
                        "unconfirmed": len(channel.confirmations),
                    }
                )

    def write(self, path: Path) -> None:
        """Write the samples as JSON."""
        path.write_bytes(orjson.dumps({"every_s": PROBE_EVERY_S, "samples": self.samples}))


def main() -> None:
    """Run the dispatcher CLI with ARGS; profile and probe from SIGUSR1 until it exits."""
    out, args = Path(sys.argv[1]), sys.argv[2:]
    sys.argv = ["dispatcher", *args]
    profiler = cProfile.Profile()
    probe = Probe()
    probe.watch_publishes()

    def start(*_: object) -> None:
        probe.enabled = True
        profiler.enable()

    signal.signal(signal.SIGUSR1, start)
    from dispatcher.cli import main as dispatcher_main  # noqa: PLC0415 - after the handler, before any job

    try:
        dispatcher_main()
    finally:
        profiler.disable()
        profiler.dump_stats(out)
        probe.write(out.with_suffix(".probe.json"))


if __name__ == "__main__":
    main()
