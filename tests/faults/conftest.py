"""Fault-suite fixtures: the integration ones, a run factory, and a session table of what each run measured.

Each fault test runs twice over: `ci` (bounded, part of `make test`) and `soak` (marker `soak`,
`make soak`). `FAULTS_JOBS` sets the number of jobs of whichever runs (defaults: 2,000 and 20,000).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from dispatcher.emulator.jobs import CallLog
from tests.faults.harness import FaultReport, FaultRun, jobs_per_run
from tests.integration.conftest import (  # noqa: F401 - fixtures, found by pytest in this module
    broker,
    declare,
    emulator,
    prefix,
    settings_for,
    spawn_worker,
    start_worker,
    worker_env,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from _pytest.terminal import TerminalReporter

    from dispatcher.emulator import RunningEmulator

SUMMARY = pytest.StashKey[list[FaultReport]]()
CALLS_KEPT = 10_000_000


@pytest.fixture(
    params=[
        pytest.param(False, id="ci", marks=pytest.mark.timeout(900)),
        pytest.param(True, id="soak", marks=[pytest.mark.soak, pytest.mark.timeout(3600)]),
    ]
)
def jobs(request: pytest.FixtureRequest) -> int:
    """How many jobs a fault run publishes: bounded in CI, 20,000+ in the soak run."""
    return jobs_per_run(soak=request.param)


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (CI starts it); keys are namespaced by each test's exchange names."""
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> list[FaultReport]:
    """The session's fault reports, printed as a table at the end."""
    return request.config.stash.setdefault(SUMMARY, [])


@pytest.fixture
def fault_run(
    amqp_url: str,
    prefix: str,  # noqa: F811 - the imported fixture
    emulator: RunningEmulator,  # noqa: F811 - the imported fixture
    summary: list[FaultReport],
) -> Callable[[str, int], FaultRun]:
    """Make the test's fault run; the emulator keeps every call, so each start is accounted for."""
    emulator.state.calls = CallLog(CALLS_KEPT)

    def make(fault: str, size: int) -> FaultRun:
        return FaultRun(fault, size, amqp_url=amqp_url, prefix=prefix, emulator=emulator, summary=summary)

    return make


def pytest_terminal_summary(terminalreporter: TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """One line per fault run: what was injected, published, lost, duplicated and dead-lettered."""
    reports = config.stash.get(SUMMARY, [])
    if not reports:
        return
    header = (
        "fault",
        "published",
        "indeterminate",
        "lost",
        "unexpected",
        "dup results",
        "dup dead letters",
        "token-less started twice",
        "token jobs started twice",
        "dead letters by category",
        "AWS calls",
        "time",
    )
    rows = [header]
    for report in reports:
        twice: Counter[str] = Counter({key.split(".")[0]: n for key, n in report.duplicate_starts.items() if n})
        rows.append(
            (
                report.fault,
                str(report.published),
                str(report.indeterminate),
                str(len(report.lost)),
                str(len(report.unexpected)),
                str(report.duplicated_results),
                str(report.duplicated_dead_letters),
                ", ".join(f"{key} {n}" for key, n in twice.items()) or "0",
                str(len(report.token_jobs_started_twice)),
                ", ".join(f"{key} {n}" for key, n in sorted(report.dead_by_category.items())) or "-",
                str(report.aws_calls),
                f"{report.elapsed_s:.0f}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    terminalreporter.write_sep("=", "fault suite: nothing lost?")
    for number, row in enumerate(rows):
        terminalreporter.write_line(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            terminalreporter.write_line("-+-".join("-" * width for width in widths))
