"""The registry of AWS "start a job" operations the dispatcher knows.

Adding an operation is one `OperationSpec` in `OPERATION_SPECS` followed by `make generate`,
which writes its parameter model from botocore's service model into `params_generated.py`.
Everything else (queues, routing keys, validation, the emulator's routes, the IAM policy test)
is derived from this registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What a person writes to add an operation: the botocore names and any extra IAM actions."""

    service: str
    operation: str
    extra_iam_actions: tuple[str, ...] = ()

    @property
    def routing_key(self) -> str:
        """The routing key and queue suffix, `<service>.<Operation>`."""
        return f"{self.service}.{self.operation}"


OPERATION_SPECS: tuple[OperationSpec, ...] = (
    OperationSpec("quicksight", "StartAutomationJob"),
    # Lookout for Equipment assumes RoleArn to read the dataset, so the caller must pass it.
    OperationSpec("lookoutequipment", "StartDataIngestionJob", extra_iam_actions=("iam:PassRole",)),
    OperationSpec("datazone", "StartDataSourceRun"),
    OperationSpec("m2", "StartBatchJob"),
    OperationSpec("cleanrooms", "StartProtectedJob"),
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
    def iam_actions(self) -> tuple[str, ...]:
        """The IAM actions a caller needs to start this job."""
        return (f"{self.service}:{self.name}", *self.spec.extra_iam_actions)
