"""Readings from `/proc` (Linux): a process's RSS and CPU time, and the whole machine's CPU time."""

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


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from `/proc/stat`."""
    with open("/proc/stat", encoding="ascii") as stat:  # noqa: PTH123 - procfs, not a project path
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
