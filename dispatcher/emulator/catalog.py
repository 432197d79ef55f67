"""The operations the emulator serves: each registry entry joined with botocore's model of it.

Routes, wire formats, error statuses and error codes all come from botocore's service model, the
same one the caller's client uses, so a new registry entry is served without new code here. An
entry with a companion also gets its Describe/Get call served (`companion_operations`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

import botocore.session

from dispatcher.operations import OPERATION_SPECS, Companion, OperationSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from botocore.model import OperationModel, Shape, StructureShape
    from pydantic import BaseModel

SUPPORTED_PROTOCOLS = ("rest-json", "json")
SERVER_FAULT_CODES = frozenset(
    {
        "InternalFailureException",
        "InternalServerException",
        "InternalServiceException",
        "ServiceUnavailableException",
    },
)
"""Errors answered with 500 where the model gives no status (the JSON protocol gives none)."""


class ParamsEntry(Protocol):
    """What the emulator needs from `dispatcher.params_generated.GENERATED_OPERATIONS` for one operation."""

    @property
    def params_model(self) -> type[BaseModel]:
        """Validates the request parameters as botocore's model defines them."""
        ...

    @property
    def idempotency_token_member(self) -> str | None:
        """The parameter AWS deduplicates starts by, if the operation has one."""
        ...

    @property
    def sensitive_paths(self) -> tuple[str, ...]:
        """Dotted parameter paths (`*` for any item) that are never logged."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeledOperation:
    """An operation the emulator answers as botocore's model says: its wire protocol and its errors."""

    spec: OperationSpec
    """The registry entry it belongs to (a Describe call belongs to its start operation's entry)."""
    model: OperationModel
    idempotency_token_member: str | None = None
    """The parameter AWS deduplicates calls by, if the operation has one."""
    sensitive_paths: tuple[str, ...] = ()
    """Parameters the call log shows redacted."""

    @property
    def routing_key(self) -> str:
        """`<service>.<Operation>`, the key of its faults and call log entries."""
        return f"{self.spec.service}.{self.model.name}"

    @property
    def protocol(self) -> str:
        """The wire protocol botocore speaks to this service: `rest-json` or `json`."""
        protocol: str = self.model.service_model.resolved_protocol
        return protocol

    @property
    def modeled_error_codes(self) -> tuple[str, ...]:
        """The errors this operation may answer with, as botocore's model lists them."""
        return tuple(shape.name for shape in self.model.error_shapes)

    @property
    def validation_error_code(self) -> str:
        """The error for invalid parameters: `ValidationException` unless the model lacks it.

        QuickSight models no `ValidationException` for this operation; its clients would only see
        a generic `ClientError`, so the emulator answers its `InvalidParameterValueException`.
        """
        codes = self.modeled_error_codes
        if "ValidationException" not in codes and "InvalidParameterValueException" in codes:
            return "InvalidParameterValueException"
        return "ValidationException"

    @property
    def internal_error_code(self) -> str:
        """The operation's own internal server error, the default injected error."""
        server_faults = [
            code for code in self.modeled_error_codes if self.error_status(code) >= HTTPStatus.INTERNAL_SERVER_ERROR
        ]
        return server_faults[0] if server_faults else "InternalServerException"

    def error_shape(self, code: str) -> StructureShape | None:
        """Botocore's shape of the error `code`, `None` if the service does not model it."""
        service_model = self.model.service_model
        if code in service_model.shape_names:
            return service_model.shape_for(code)
        return None

    def error_status(self, code: str) -> int:
        """The HTTP status AWS answers `code` with: the model's, else 500 for faults, else 400."""
        shape = self.error_shape(code)
        if shape is not None:
            status: int | None = shape.metadata.get("error", {}).get("httpStatusCode")
            if status is not None:
                return status
        return HTTPStatus.INTERNAL_SERVER_ERROR if code in SERVER_FAULT_CODES else HTTPStatus.BAD_REQUEST


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatedOperation(ModeledOperation):
    """A start operation: the registry's spec, botocore's model, our validator of its parameters."""

    params_model: type[BaseModel]


@dataclass(frozen=True, slots=True, kw_only=True)
class CompanionOperation(ModeledOperation):
    """The Describe/Get call that reads the status of jobs its start operation (`spec`) started."""

    @property
    def companion(self) -> Companion:
        """The registry's description of this call: where its parameters come from, its statuses."""
        companion = self.spec.companion
        assert companion is not None, "built only for specs with a companion"
        return companion

    @property
    def start_routing_key(self) -> str:
        """The routing key of the operation whose jobs this call describes."""
        return self.spec.routing_key

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every status the model allows at `companion.status` of the output (its enum)."""
        shape: Shape = self.model.output_shape
        for part in self.companion.status.split("."):
            shape = shape.members[part]
        return tuple(shape.enum)


def companion_operations(operations: Iterable[EmulatedOperation]) -> tuple[CompanionOperation, ...]:
    """The Describe/Get calls of the `operations` that have a companion, from the same service models."""
    return tuple(
        CompanionOperation(
            spec=operation.spec,
            model=operation.model.service_model.operation_model(operation.spec.companion.operation),
        )
        for operation in operations
        if operation.spec.companion is not None
    )


def load_operations(
    specs: Iterable[OperationSpec] = OPERATION_SPECS,
    params_entries: Mapping[tuple[str, str], ParamsEntry] | None = None,
) -> tuple[EmulatedOperation, ...]:
    """Join each spec with botocore's model and its params entry (default `GENERATED_OPERATIONS`).

    The default is the model as botocore defines it, not the dispatcher's `PARAMS_MODELS`, which
    widens it (QuickSight `InputPayload` as a JSON object): an emulator must be as strict as AWS.
    Generation makes idempotency tokens optional; the emulator also requires every member botocore
    requires (see `calls`). Loading botocore's models blocks for a while: call this once, before serving.
    """
    if params_entries is None:
        from dispatcher.params_generated import GENERATED_OPERATIONS  # noqa: PLC0415 - loaded on use

        params_entries = GENERATED_OPERATIONS
    session = botocore.session.get_session()
    operations = []
    for spec in specs:
        model = session.get_service_model(spec.service).operation_model(spec.operation)
        entry = params_entries[(spec.service, spec.operation)]
        operation = EmulatedOperation(
            spec=spec,
            model=model,
            params_model=entry.params_model,
            idempotency_token_member=entry.idempotency_token_member,
            sensitive_paths=entry.sensitive_paths,
        )
        if operation.protocol not in SUPPORTED_PROTOCOLS:
            msg = f"{spec.routing_key} speaks {operation.protocol}; the emulator speaks rest-json and json"
            raise ValueError(msg)
        operations.append(operation)
    return tuple(operations)


@functools.cache
def registered_operations() -> tuple[EmulatedOperation, ...]:
    """`load_operations()` of the registry, loaded once per process (models never change at run time)."""
    return load_operations()
