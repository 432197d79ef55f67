"""Hostile-input fixtures: the integration ones, the run's size, and a session table of what each run found.

The suite runs at two sizes, like the fault suite: `ci` (part of `make test`) and `full` (markers
`hostile` and `soak`: `make hostile`, and `make soak`). `HOSTILE_MESSAGES` sets the number of
hostile messages of whichever runs (defaults 150 and 1,200; valid jobs are a third of that, at
least 50); `HOSTILE_SEED` the seed (the same seed generates the same messages); `HOSTILE_CASES` a
regular expression that keeps only the cases whose "kind / name" it matches, to chase one failure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.hostile.observe import LoggedWorker
from tests.integration.conftest import (  # noqa: F401 - fixtures, found by pytest in this module
    emulator,
    prefix,
    worker_env,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from _pytest.terminal import TerminalReporter

    from tests.hostile.oracle import Report

CI_HOSTILE = 150
FULL_HOSTILE = 1200
DEFAULT_SEED = 20261204
REPORTS = pytest.StashKey[list["Report"]]()


@dataclass(frozen=True)
class Size:
    """How many hostile messages and valid jobs one run publishes, and from which seed."""

    label: str
    hostile: int
    valid: int
    seed: int
    cases: str | None = None

    @property
    def total(self) -> int:
        return self.hostile + self.valid


def size_of(*, full: bool) -> Size:
    """`HOSTILE_MESSAGES` when set, else the CI or the full size; valid jobs a third of that, at least 50."""
    hostile = int(os.environ.get("HOSTILE_MESSAGES") or (FULL_HOSTILE if full else CI_HOSTILE))
    seed = int(os.environ.get("HOSTILE_SEED") or DEFAULT_SEED)
    return Size("full" if full else "ci", hostile, max(50, hostile // 3), seed, os.environ.get("HOSTILE_CASES"))


@pytest.fixture(
    params=[
        pytest.param(False, id="ci", marks=pytest.mark.timeout(900)),
        pytest.param(True, id="full", marks=[pytest.mark.soak, pytest.mark.timeout(3600)]),
    ]
)
def size(request: pytest.FixtureRequest) -> Size:
    """The run's size: bounded in CI, >= 1,000 hostile messages in the full run."""
    return size_of(full=request.param)


@pytest.fixture
async def spawn_logged_worker(
    worker_env: dict[str, str],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[LoggedWorker]]]:
    """Start `dispatcher run` processes logging to files; any still running after the test are killed."""
    workers: list[LoggedWorker] = []

    async def spawn(**env: str) -> LoggedWorker:
        number = len(workers)
        worker = await LoggedWorker.start(
            {**worker_env, **env}, tmp_path / f"worker-{number}.log", tmp_path / f"worker-{number}.lag"
        )
        workers.append(worker)
        return worker

    yield spawn
    for worker in workers:
        worker.kill()
        await worker.process.wait()


@pytest.fixture
def hostile_reports(request: pytest.FixtureRequest) -> list[Report]:
    """The session's hostile-input reports, printed as tables at the end."""
    return request.config.stash.setdefault(REPORTS, [])


def pytest_terminal_summary(terminalreporter: TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """Per run: kind -> published, refused, outcomes, broken; then every problem found."""
    for report in config.stash.get(REPORTS, []):
        terminalreporter.write_sep("=", f"hostile input ({report.label}): every message accounted for?")
        for line in report.render().splitlines()[1:]:
            terminalreporter.write_line(line)
