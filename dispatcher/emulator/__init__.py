"""A local stand-in for the AWS operations of the registry, for development, demos and tests.

It speaks the protocols botocore speaks (rest-json and JSON), validates parameters with botocore's
models as AWS does (not the dispatcher's wider ones), honours idempotency tokens, injects faults on
demand and logs every call.
See `docs/emulator.md`.
"""

from dispatcher.emulator.app import RunningEmulator, create_app, run_emulator, serve, start_emulator
from dispatcher.emulator.catalog import EmulatedOperation, load_operations, registered_operations
from dispatcher.emulator.faults import DropPhase, FaultSettings, load_fault_file, parse_faults
from dispatcher.emulator.state import EmulatorState, FaultConfigError

__all__ = [
    "DropPhase",
    "EmulatedOperation",
    "EmulatorState",
    "FaultConfigError",
    "FaultSettings",
    "RunningEmulator",
    "create_app",
    "load_fault_file",
    "load_operations",
    "parse_faults",
    "registered_operations",
    "run_emulator",
    "serve",
    "start_emulator",
]
