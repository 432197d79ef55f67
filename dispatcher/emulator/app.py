"""The emulator as an aiohttp application, in-process for tests and as the `dispatcher emulator` server."""

from __future__ import annotations

import asyncio
import signal
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING
from uuid import uuid4

import structlog
from aiohttp import web

from dispatcher.emulator.calls import answer_call
from dispatcher.emulator.catalog import registered_operations
from dispatcher.emulator.control import control_routes
from dispatcher.emulator.control_jobs import job_control_routes
from dispatcher.emulator.describes import answer_describe
from dispatcher.emulator.faults import load_fault_file
from dispatcher.emulator.lifecycle import load_lifecycle_file
from dispatcher.emulator.protocol import AwsError, error_response, json_target, route_path
from dispatcher.emulator.state import EmulatorState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from pathlib import Path

    from dispatcher.emulator.catalog import EmulatedOperation, ModeledOperation
    from dispatcher.emulator.faults import FaultSettings
    from dispatcher.emulator.lifecycle import LifecycleSettings

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger("dispatcher.emulator")

STATE_KEY = web.AppKey("emulator_state", EmulatorState)
MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""Above aiohttp's 1 MiB default: QuickSight takes an `InputPayload` of up to 7,000,000 characters."""


def create_app(
    operations: Iterable[EmulatedOperation],
    faults: Mapping[str, FaultSettings] | None = None,
    *,
    lifecycle: Mapping[str, LifecycleSettings] | None = None,
) -> web.Application:
    """The emulator serving `operations` (see `registered_operations`) and their Describe calls.

    `faults` and `lifecycle` are the start-up settings by routing key. Raises `FaultConfigError`
    when a fault names an unknown operation or an unmodeled error, `LifecycleConfigError` when a
    lifecycle setting names an unknown operation or an end it cannot have.
    """
    state = EmulatorState(operations, faults or {}, lifecycle)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STATE_KEY] = state
    app.add_routes(control_routes(state))
    app.add_routes(job_control_routes(state))
    served: list[tuple[ModeledOperation, Handler]] = [
        *((operation, _start_handler(state, operation)) for operation in state.operations.values()),
        *((companion, partial(answer_describe, state, companion)) for companion in state.followed.companions.values()),
    ]
    json_handlers: dict[str, tuple[ModeledOperation, Handler]] = {}
    for operation, handler in served:
        if operation.protocol == "json":
            json_handlers[json_target(operation)] = (operation, handler)
        else:
            app.router.add_route(operation.model.http["method"], route_path(operation), handler)
    if json_handlers:
        app.router.add_post("/", _json_protocol_handler(json_handlers))
    return app


def _start_handler(state: EmulatorState, operation: EmulatedOperation) -> Handler:
    """Looks `answer_call` up per call, so a test can wrap it in a running emulator (tests/faults)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await answer_call(state, operation, request)

    return handle


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
    lifecycle: Mapping[str, LifecycleSettings] | None = None,
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator until the block exits; port 0 picks a free port (see `url`).

    `operations` defaults to every registered operation; `lifecycle` to jobs that succeed after
    `DEFAULT_DURATION_S`.
    """
    if operations is None:
        operations = await asyncio.to_thread(registered_operations)  # botocore's loader blocks
    app = create_app(operations, faults, lifecycle=lifecycle)
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


async def serve(
    host: str,
    port: int,
    faults: Mapping[str, FaultSettings],
    lifecycle: Mapping[str, LifecycleSettings] | None = None,
) -> None:
    """Serve every registered operation on `host:port` until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with start_emulator(host, port, faults, lifecycle=lifecycle) as emulator:
        log.info("emulator listening", url=emulator.url, operations=list(emulator.state.operations))
        await stop.wait()
    log.info("emulator stopped")


def run_emulator(host: str, port: int, faults_file: Path | None, lifecycle_file: Path | None = None) -> None:
    """`dispatcher emulator`: serve until SIGINT or SIGTERM, then return.

    Raises `OSError` if a settings file cannot be read or the port cannot be bound, `ValueError`
    (a `pydantic.ValidationError`, `FaultConfigError` or `LifecycleConfigError`) if one is invalid.
    """
    faults = load_fault_file(faults_file) if faults_file is not None else {}
    lifecycle = load_lifecycle_file(lifecycle_file) if lifecycle_file is not None else {}
    asyncio.run(serve(host, port, faults, lifecycle))


def _json_protocol_handler(by_target: Mapping[str, tuple[ModeledOperation, Handler]]) -> Handler:
    """`POST /` for every JSON-protocol operation, told apart by `X-Amz-Target`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        served = by_target.get(target)
        if served is None:
            # Answered in the protocol of any JSON operation: they share the error format.
            any_operation, _ = next(iter(by_target.values()))
            error = AwsError(code="UnknownOperationException", message=f"The emulator serves no operation {target!r}.")
            return error_response(any_operation, error, request_id=str(uuid4()))
        _, handler = served
        return await handler(request)

    return handle
