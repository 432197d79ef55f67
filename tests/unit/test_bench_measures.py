"""The benchmark's own measures: CPU pinning given back, and CPU per job over the jobs it was measured on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cpus import CpuPlan, _pin_threads, _restore_threads, pinned
from bench.harness import Drained


def test_a_pinned_process_gets_every_thread_s_cpus_back() -> None:
    """Each thread is pinned, then restored to the CPUs it had; the broker is treated the same way."""
    available = os.sched_getaffinity(0)
    child = subprocess.Popen(  # a process with a second thread, like RabbitMQ's many
        [sys.executable, "-c", "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start()"],
    )
    try:
        tids = _threads_of(child.pid, at_least=2)
        saved: dict[int, set[int]] = {}
        _pin_threads(child.pid, frozenset({min(available)}), saved)
        assert set(saved) == set(tids)
        assert all(os.sched_getaffinity(tid) == {min(available)} for tid in tids)
        _restore_threads(child.pid, saved)
        assert all(os.sched_getaffinity(tid) == available for tid in tids)
    finally:
        child.kill()
        child.wait()


def test_pin_off_pins_nothing() -> None:
    """`--pin off` leaves every process free, and the report says so."""
    before = os.sched_getaffinity(0)
    with pinned("off") as plan:
        assert not plan.active
        assert os.sched_getaffinity(0) == before
    assert "Nothing is pinned" in plan.describe()


def test_a_plan_names_the_measured_cpu_and_the_others() -> None:
    """The report's conditions say which CPU the figures were measured on."""
    plan = CpuPlan(frozenset({1}), frozenset({0}), broker_pinned=True)
    assert plan.describe().startswith("The process under measurement")
    assert "alone on CPU 1; RabbitMQ, the emulator and the benchmark driver share CPU 0" in plan.describe()


def test_cpu_per_job_counts_only_the_jobs_finished_while_measured() -> None:
    """A process takes jobs before it says it is ready; their CPU is not in `cpu_s`, so they are not counted."""
    drained = Drained(
        jobs=6_000,
        results=6_000,
        succeeded=6_000,
        elapsed_s=8.3,
        publish_per_s=3_800.0,
        timed_out=False,
        handling_ms=7.0,
        delivery_ms=5.0,
        cpu_s=6.3,
        results_measured=4_500,
        wall_s=6.3,
        machine_busy=0.8,
        run_queue_wait_s=None,
    )
    assert drained.cpu_ms_per_job == pytest.approx(1.4)
    assert drained.jobs_per_s == pytest.approx(6_000 / 8.3)


def _threads_of(pid: int, *, at_least: int) -> list[int]:
    """The process's thread ids, once it has started the ones the test needs."""
    for _ in range(200):
        tids = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
        if len(tids) >= at_least:
            return tids
        time.sleep(0.02)
    pytest.fail(f"process {pid} never had {at_least} threads")
