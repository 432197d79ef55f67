"""The operations the worker serves, looked up by routing key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.operations import OPERATION_SPECS, Operation

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


class Registry:
    """Registered operations by routing key; a new one is a spec plus its generated model."""

    def __init__(self, operations: Iterable[Operation] = ()) -> None:
        self._by_key: dict[str, Operation] = {}
        for operation in operations:
            self.register(operation)

    def register(self, operation: Operation) -> None:
        """Add an operation; its routing key must be new."""
        if operation.routing_key in self._by_key:
            msg = f"operation {operation.routing_key} is already registered"
            raise ValueError(msg)
        self._by_key[operation.routing_key] = operation

    def get(self, routing_key: str) -> Operation | None:
        """The operation of a routing key, if any."""
        return self._by_key.get(routing_key)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def routing_keys(self) -> tuple[str, ...]:
        """Every registered routing key, in registration order."""
        return tuple(self._by_key)

    @property
    def services(self) -> frozenset[str]:
        """Every service that has at least one operation."""
        return frozenset(op.service for op in self)


def default_registry() -> Registry:
    """The operations of `OPERATION_SPECS` with their generated parameter models."""
    from dispatcher.params import PARAMS_MODELS  # noqa: PLC0415 - keeps the spec list import-light

    operations = []
    for spec in OPERATION_SPECS:
        generated = PARAMS_MODELS[(spec.service, spec.operation)]
        operations.append(
            Operation(
                spec=spec,
                params_model=generated.params_model,
                idempotency_token_member=generated.idempotency_token_member,
                sensitive_paths=generated.sensitive_paths,
            )
        )
    return Registry(operations)
