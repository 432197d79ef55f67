"""CPU pinning: the process under measurement gets a CPU of its own, as a deployed worker does.

On a small machine the worker, the emulator, RabbitMQ and this driver would otherwise share every
CPU, and how much of a core the worker gets (and how warm its caches stay) changes from run to run:
two runs of the same code measured the naive loop at 1.41 and 1.88 ms of CPU per job. Pinned, the
worker and the bare loops (a), (b) and (c) run alone on the last CPU, and the broker, the emulator
and the driver share the others, so the bound 1/(1/a + 1/b) is one that a single process can reach.

The broker is the machine's own: its threads are pinned for the run and given back their own CPUs
at the end (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the measured processes get and which everything else gets; empty: nothing pinned."""

    measured: frozenset[int] = frozenset()
    rest: frozenset[int] = frozenset()
    broker_pinned: bool = False
    notes: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """True when processes are pinned."""
        return bool(self.measured)

    def describe(self) -> str:
        """One sentence for the report."""
        if not self.active:
            return "Nothing is pinned: every process may run on every CPU (--pin off, or a single CPU)."
        broker = "RabbitMQ, " if self.broker_pinned else ""
        text = (
            f"The process under measurement (the worker, or loop a, b or c) runs alone on CPU "
            f"{_cpu_list(self.measured)}; {broker}the emulator and the benchmark driver share CPU "
            f"{_cpu_list(self.rest)} (--pin off to let them share every CPU)."
        )
        return " ".join((text, *self.notes))


_plan = CpuPlan()


def pin_measured(pid: int) -> None:
    """Give a process under measurement its own CPU (every thread it has so far; later ones inherit it)."""
    if _plan.active:
        _pin_threads(pid, _plan.measured, {})


@contextlib.contextmanager
def pinned(mode: str) -> Iterator[CpuPlan]:
    """Pin this driver and the broker for the block (`mode`: auto, on or off), then give the broker back its CPUs."""
    global _plan  # noqa: PLW0603 - one plan per run, read where processes are started
    available = frozenset(os.sched_getaffinity(0))
    if mode == "off" or (mode == "auto" and len(available) < 2):  # one CPU for each side
        yield _plan
        return
    if len(available) < 2:
        raise SystemExit(f"--pin on needs 2 CPUs; this process may use {len(available)}")
    measured = frozenset({max(available)})
    rest = available - measured
    os.sched_setaffinity(0, rest)  # the driver; children it starts inherit it
    broker_pid = _broker_pid()
    saved: dict[int, set[int]] = {}
    notes: list[str] = []
    if broker_pid is None:
        notes.append("RabbitMQ's process was not found (rabbitmqctl eval), so it is not pinned.")
    else:
        try:
            _pin_threads(broker_pid, rest, saved)
        except PermissionError:
            notes.append("RabbitMQ could not be pinned (no permission), so it may share the measured CPU.")
    _plan = CpuPlan(measured, rest, broker_pinned=bool(saved), notes=tuple(notes))
    try:
        yield _plan
    finally:
        _plan = CpuPlan()
        os.sched_setaffinity(0, available)
        if broker_pid is not None and saved:
            _restore_threads(broker_pid, saved)


def _broker_pid() -> int | None:
    """The OS process id of the local RabbitMQ node, or None when it cannot be asked."""
    try:
        answer = subprocess.run(
            ["rabbitmqctl", "-q", "eval", "os:getpid()."], check=True, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = answer.stdout.strip().strip('"')
    return int(text) if text.isdigit() else None


def _threads(pid: int) -> list[int]:
    with contextlib.suppress(FileNotFoundError):
        return [int(task.name) for task in (Path("/proc") / str(pid) / "task").iterdir()]
    return []


def _pin_threads(pid: int, cpus: frozenset[int], before: dict[int, set[int]]) -> None:
    """Pin every thread of `pid`, noting in `before` each one's CPUs before it was pinned."""
    for tid in _threads(pid):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)


def _restore_threads(pid: int, saved: dict[int, set[int]]) -> None:
    """Give every thread its CPUs back; a thread started while pinned gets the process's (its main thread's)."""
    default = saved.get(pid, set(os.sched_getaffinity(0)))
    for tid in _threads(pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, saved.get(tid, default))


def _cpu_list(cpus: frozenset[int]) -> str:
    return ", ".join(str(cpu) for cpu in sorted(cpus))
