"""The statuses an emulated job passes through, from its start to each way it can end.

The terminal statuses come from the registry (`Companion.terminal`): the first status of each
outcome is where a job with that fate ends. Only the order of the statuses before the end is
operation knowledge the model lacks (QuickSight's enum lists RUNNING before QUEUED), so it is
written down in `PROGRESS` for the operations we know; any other operation moves through its
model's other statuses in the model's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from dispatcher.operations import JobOutcome

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.emulator.catalog import CompanionOperation


class Fate(StrEnum):
    """How an emulated job ends, decided when it starts."""

    SUCCEEDED = "succeeded"
    WARNING = "succeeded_with_warning"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEVER_ENDS = "never_ends"
    """It stays in its last running status forever."""


@dataclass(frozen=True, slots=True)
class Progress:
    """The statuses before the end, in order, and those between them and a cancellation."""

    running: tuple[str, ...]
    cancelling: tuple[str, ...] = ()


PROGRESS: Mapping[str, Progress] = {
    "quicksight.DescribeAutomationJob": Progress(("QUEUED", "RUNNING")),
    "lookoutequipment.DescribeDataIngestionJob": Progress(("IN_PROGRESS", "IMPORT_IN_PROGRESS")),
    "datazone.GetDataSourceRun": Progress(("REQUESTED", "RUNNING")),
    "m2.GetBatchJobExecution": Progress(("Submitting", "Holding", "Dispatching", "Running"), ("Cancelling",)),
    "cleanrooms.GetProtectedJob": Progress(("SUBMITTED", "STARTED"), ("CANCELLING",)),
}
"""By companion routing key. The first running status is the one the start call answers."""
_CANCELLING_WORDS = ("CANCEL", "STOP")


@dataclass(frozen=True, slots=True)
class StatusPaths:
    """Every status sequence one operation's jobs can follow, by fate."""

    progress: Progress
    ends: Mapping[Fate, str]
    """The terminal status each possible fate but `NEVER_ENDS` ends in."""

    @property
    def fates(self) -> frozenset[Fate]:
        """The fates this operation's jobs can have."""
        return frozenset({*self.ends, Fate.NEVER_ENDS})

    def path(self, fate: Fate) -> tuple[str, ...]:
        """The statuses a job of `fate` passes through, its terminal one last (none if it never ends)."""
        if fate is Fate.NEVER_ENDS:
            return self.progress.running
        if fate is Fate.CANCELLED:
            return (*self.progress.running, *self.progress.cancelling, self.ends[fate])
        return (*self.progress.running, self.ends[fate])


def status_paths(operation: CompanionOperation) -> StatusPaths:
    """The paths of `operation`'s jobs: `PROGRESS` or the model's order, then the registry's ends."""
    companion = operation.companion
    progress = PROGRESS.get(operation.routing_key) or _progress_from_model(operation)
    ends: dict[Fate, str] = {}
    for status, outcome in companion.terminal.items():
        if outcome is JobOutcome.SUCCEEDED:
            fate = Fate.WARNING if status in companion.warnings else Fate.SUCCEEDED
        elif outcome is JobOutcome.FAILED:
            fate = Fate.FAILED
        elif outcome is JobOutcome.CANCELLED:
            fate = Fate.CANCELLED
        else:
            continue
        ends.setdefault(fate, status)
    return StatusPaths(progress, ends)


def _progress_from_model(operation: CompanionOperation) -> Progress:
    """The model's statuses that are not terminal, in its order; cancelling ones set apart."""
    going = [status for status in operation.statuses if status not in operation.companion.terminal]
    cancelling = tuple(status for status in going if any(word in status.upper() for word in _CANCELLING_WORDS))
    running = tuple(status for status in going if status not in cancelling)
    return Progress(running, cancelling)
