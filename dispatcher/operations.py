"""The registry of AWS "start a job" operations the dispatcher knows.

Adding an operation is one `OperationSpec` in `OPERATION_SPECS` followed by `make generate`,
which writes its parameter model from botocore's service model into `params_generated.py`.
Everything else (queues, routing keys, validation, the emulator's routes, the IAM policy test)
is derived from this registry. Its `Companion` is the Describe/Get call that follows a started job
to its end (contract section 8): botocore's model gives its shapes and statuses; the spec says only
where its parameters come from and what its terminal statuses mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel


class JobOutcome(StrEnum):
    """How a followed AWS job ended (`job_outcome` of a completion result)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed-out"  # the follow timeout passed; the AWS job was left alone
    UNKNOWN = "unknown"  # the Describe call kept failing


@dataclass(frozen=True, slots=True)
class Companion:
    """The call that reads a started job's status, and what its statuses mean.

    `parameters` maps each member of the Describe request to where its value comes from:
    `request.<member>` of the start request or `response.<path>` of the start response (a dotted
    path). `status` is the dotted path of the status in the Describe response. `terminal` maps every
    status after which the job never changes to its outcome; `warnings` are the successes that
    carry a warning. Statuses not in `terminal` mean the job is still going.
    """

    operation: str
    parameters: tuple[tuple[str, str], ...]
    status: str
    terminal: Mapping[str, JobOutcome]
    warnings: frozenset[str] = frozenset()

    def identifiers(self, request: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, str] | None:
        """The Describe request for a job started with `request` that AWS answered `response`.

        None when an identifier is missing (an answer not shaped as the model says).
        """
        sources = {"request": request, "response": response}
        identifiers = {}
        for member, source in self.parameters:
            root, _, path = source.partition(".")
            value = dig(sources[root], path)
            if not isinstance(value, str) or not value:
                return None
            identifiers[member] = value
        return identifiers

    def status_of(self, describe: Mapping[str, Any]) -> str | None:
        """AWS's status in a Describe response, verbatim; None if it has none."""
        status = dig(describe, self.status)
        return status if isinstance(status, str) else None


def dig(document: Mapping[str, Any], path: str) -> object:
    """The value at a dotted `path` of nested mappings, or None."""
    value: object = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What a person writes to add an operation: the botocore names and any extra IAM actions."""

    service: str
    operation: str
    companion: Companion | None = None  # None: the operation cannot be followed
    extra_iam_actions: tuple[str, ...] = ()

    @property
    def routing_key(self) -> str:
        """The routing key and queue suffix, `<service>.<Operation>`."""
        return f"{self.service}.{self.operation}"

    @property
    def companion_routing_key(self) -> str | None:
        """`<service>.<Describe operation>`: the key of its limits and the emulator's faults."""
        return None if self.companion is None else f"{self.service}.{self.companion.operation}"


_S, _F, _C = JobOutcome.SUCCEEDED, JobOutcome.FAILED, JobOutcome.CANCELLED

OPERATION_SPECS: tuple[OperationSpec, ...] = (
    OperationSpec(
        "quicksight",
        "StartAutomationJob",
        Companion(
            "DescribeAutomationJob",
            parameters=(
                ("AwsAccountId", "request.AwsAccountId"),
                ("AutomationGroupId", "request.AutomationGroupId"),
                ("AutomationId", "request.AutomationId"),
                ("JobId", "response.JobId"),
            ),
            status="JobStatus",
            terminal={"SUCCEEDED": _S, "FAILED": _F, "STOPPED": _C},
        ),
    ),
    # Lookout for Equipment assumes RoleArn to read the dataset, so the caller must pass it.
    OperationSpec(
        "lookoutequipment",
        "StartDataIngestionJob",
        Companion(
            "DescribeDataIngestionJob",
            parameters=(("JobId", "response.JobId"),),
            status="Status",
            terminal={"SUCCESS": _S, "FAILED": _F},
        ),
        extra_iam_actions=("iam:PassRole",),
    ),
    OperationSpec(
        "datazone",
        "StartDataSourceRun",
        Companion(
            "GetDataSourceRun",
            parameters=(("domainIdentifier", "request.domainIdentifier"), ("identifier", "response.id")),
            status="status",
            # Some assets were imported and some were not: a success whose result needs reading.
            terminal={"SUCCESS": _S, "PARTIALLY_SUCCEEDED": _S, "FAILED": _F},
            warnings=frozenset({"PARTIALLY_SUCCEEDED"}),
        ),
    ),
    OperationSpec(
        "m2",
        "StartBatchJob",
        Companion(
            "GetBatchJobExecution",
            parameters=(("applicationId", "request.applicationId"), ("executionId", "response.executionId")),
            status="status",
            # Purged: removed from the spool before it ran, which nobody but an operator does.
            terminal={
                "Succeeded": _S,
                "Succeeded With Warning": _S,
                "Failed": _F,
                "Cancelled": _C,
                "Purged": _C,
            },
            warnings=frozenset({"Succeeded With Warning"}),
        ),
    ),
    OperationSpec(
        "cleanrooms",
        "StartProtectedJob",
        Companion(
            "GetProtectedJob",
            parameters=(
                ("membershipIdentifier", "request.membershipIdentifier"),
                ("protectedJobIdentifier", "response.protectedJob.id"),
            ),
            status="protectedJob.status",
            terminal={"SUCCESS": _S, "FAILED": _F, "CANCELLED": _C},
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Operation:
    """A registered operation: its spec plus what generation derived from botocore's model."""

    spec: OperationSpec
    params_model: type[BaseModel]
    idempotency_token_member: str | None
    sensitive_paths: tuple[str, ...] = field(default=())

    @property
    def service(self) -> str:
        """botocore's service name."""
        return self.spec.service

    @property
    def name(self) -> str:
        """The operation name exactly as in the AWS API reference."""
        return self.spec.operation

    @property
    def routing_key(self) -> str:
        """`<service>.<Operation>`."""
        return self.spec.routing_key

    @property
    def companion(self) -> Companion | None:
        """The Describe/Get call that follows a started job; None if it cannot be followed."""
        return self.spec.companion

    @property
    def iam_actions(self) -> tuple[str, ...]:
        """The IAM actions a caller needs to start this job and follow it."""
        return (f"{self.service}:{self.name}", *self.spec.extra_iam_actions)

    @property
    def follow_iam_actions(self) -> tuple[str, ...]:
        """The IAM action of the companion call, if the operation has one."""
        return () if self.companion is None else (f"{self.service}:{self.companion.operation}",)
