"""A local stand-in for the AWS operations of the registry, for development, demos and tests.

It speaks the protocols botocore speaks (rest-json and JSON), validates parameters with botocore's
models as AWS does (not the dispatcher's wider ones), honours idempotency tokens, moves started
jobs through their statuses and answers their Describe/Get calls, injects faults on demand and
logs every call.
See `docs/emulator.md`.
"""

from dispatcher.emulator.app import RunningEmulator, create_app, run_emulator, serve, start_emulator
from dispatcher.emulator.catalog import EmulatedOperation, load_operations, registered_operations
from dispatcher.emulator.faults import DropPhase, FaultSettings, load_fault_file, parse_faults
from dispatcher.emulator.followed import LifecycleConfigError
from dispatcher.emulator.lifecycle import DurationRange, LifecycleSettings, load_lifecycle_file, parse_lifecycle
from dispatcher.emulator.state import EmulatorState, FaultConfigError

__all__ = [
    "DropPhase",
    "DurationRange",
    "EmulatedOperation",
    "EmulatorState",
    "FaultConfigError",
    "FaultSettings",
    "LifecycleConfigError",
    "LifecycleSettings",
    "RunningEmulator",
    "create_app",
    "load_fault_file",
    "load_lifecycle_file",
    "load_operations",
    "parse_faults",
    "parse_lifecycle",
    "registered_operations",
    "run_emulator",
    "serve",
    "start_emulator",
]
