"""The emulator as an aiohttp application, in-process for tests and as the `dispatcher emulator` server."""

from __future__ import annotations

import asyncio
import signal
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import uuid4

import structlog
from aiohttp import web

from dispatcher.emulator.calls import answer_call
from dispatcher.emulator.catalog import registered_operations
from dispatcher.emulator.control import control_routes
from dispatcher.emulator.faults import load_fault_file
from dispatcher.emulator.protocol import AwsError, error_response, json_target, route_path
from dispatcher.emulator.state import EmulatorState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from pathlib import Path

    from dispatcher.emulator.catalog import EmulatedOperation
    from dispatcher.emulator.faults import FaultSettings

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger("dispatcher.emulator")

STATE_KEY = web.AppKey("emulator_state", EmulatorState)
MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Above aiohttp's 1 MiB default: QuickSight takes an `InputPayload` of up to 7,000,000 characters."""


def create_app(
    operations: Iterable[EmulatedOperation],
    faults: Mapping[str, FaultSettings] | None = None,
) -> web.Application:
    """The emulator serving `operations` (see `registered_operations`) with start-up `faults`.

    Raises `FaultConfigError` when a fault names an unknown operation or an unmodeled error.
    """
    state = EmulatorState(operations, faults or {})
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STATE_KEY] = state
    app.add_routes(control_routes(state))
    json_operations: dict[str, EmulatedOperation] = {}
    for operation in state.operations.values():
        if operation.protocol == "json":
            json_operations[json_target(operation)] = operation
        else:
            method = operation.model.http["method"]
            app.router.add_route(method, route_path(operation), _operation_handler(state, operation))
    if json_operations:
        app.router.add_post("/", _json_protocol_handler(state, json_operations))
    return app


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    """An emulator accepting calls: point clients at `url`; `state` is its memory, for in-process tests."""

    url: str
    state: EmulatorState


@asynccontextmanager
async def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Mapping[str, FaultSettings] | None = None,
    *,
    operations: Iterable[EmulatedOperation] | None = None,
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator until the block exits; port 0 picks a free port (see `url`).

    `operations` defaults to every registered operation.
    """
    if operations is None:
        operations = await asyncio.to_thread(registered_operations)  # botocore's loader blocks
    app = create_app(operations, faults)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        url_host = f"[{host}]" if ":" in host else host
        yield RunningEmulator(url=f"http://{url_host}:{bound_port}", state=app[STATE_KEY])
    finally:
        await runner.cleanup()


async def serve(host: str, port: int, faults: Mapping[str, FaultSettings]) -> None:
    """Serve every registered operation on `host:port` until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with start_emulator(host, port, faults) as emulator:
        log.info("emulator listening", url=emulator.url, operations=list(emulator.state.operations))
        await stop.wait()
    log.info("emulator stopped")


def run_emulator(host: str, port: int, faults_file: Path | None) -> None:
    """`dispatcher emulator`: serve until SIGINT or SIGTERM, then return.

    Raises `OSError` if the faults file cannot be read or the port cannot be bound, `ValueError`
    (a `pydantic.ValidationError` or `FaultConfigError`) if the faults file is invalid.
    """
    faults = load_fault_file(faults_file) if faults_file is not None else {}
    asyncio.run(serve(host, port, faults))


def _operation_handler(state: EmulatorState, operation: EmulatedOperation) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await answer_call(state, operation, request)

    return handle


def _json_protocol_handler(state: EmulatorState, by_target: Mapping[str, EmulatedOperation]) -> Handler:
    """`POST /` for every JSON-protocol operation, told apart by `X-Amz-Target`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        operation = by_target.get(target)
        if operation is None:
            # Answered in the protocol of any JSON operation: they share the error format.
            any_operation = next(iter(by_target.values()))
            error = AwsError(code="UnknownOperationException", message=f"The emulator serves no operation {target!r}.")
            return error_response(any_operation, error, request_id=str(uuid4()))
        return await answer_call(state, operation, request)

    return handle
