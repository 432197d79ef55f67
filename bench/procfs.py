"""Readings from `/proc` (Linux): a process's RSS, CPU time and run-queue wait, and the whole machine's CPU time."""

from __future__ import annotations

import os


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from `/proc/<pid>/status` (`VmRSS`, in kB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:  # noqa: PTH123 - procfs, not a project path
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    msg = f"process {pid} reports no VmRSS"
    raise RuntimeError(msg)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123 - procfs, not a project path
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_wait_s(pid: int) -> float | None:
    """Seconds a process's main thread (the event loop's) was runnable but waiting for a CPU.

    From `/proc/<pid>/schedstat` (its second field, in ns); None where the kernel keeps no
    scheduler statistics or the process is gone.
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as stat:  # noqa: PTH123 - procfs, not a project path
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from `/proc/stat`."""
    with open("/proc/stat", encoding="ascii") as stat:  # noqa: PTH123 - procfs, not a project path
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
