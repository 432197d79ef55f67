"""`dispatcher console`: the operator console, a web application of its own (docs/operators.md, "Console")."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
import uvloop

from dispatcher.cli_app import _settings, app, err, reflowed


@app.command()
@reflowed
def console(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default DISPATCHER_CONSOLE_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default DISPATCHER_CONSOLE_PORT, 8090).")] = None,
) -> None:
    """Serve the operator console until SIGTERM/SIGINT: overview, dead letters, dry run, replay, purge.

    Read-only for everyone who reaches it; acting needs DISPATCHER_CONSOLE_TOKEN (typed on the
    log-in page, or sent as a bearer token) or the identity header of an authenticating proxy
    (DISPATCHER_CONSOLE_IDENTITY_HEADER). Worker metrics come from DISPATCHER_CONSOLE_METRICS_URLS.
    """
    from aiohttp import web  # noqa: PLC0415

    from dispatcher.console.app import build_console, console_app  # noqa: PLC0415
    from dispatcher.logs import configure_logging  # noqa: PLC0415
    from dispatcher.registry import default_registry  # noqa: PLC0415

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    bind_host = host or settings.console_host
    bind_port = settings.console_port if port is None else port

    async def serve() -> None:
        runner = web.AppRunner(console_app(build_console(settings, default_registry())), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, bind_host, bind_port)
        await site.start()
        err.print(f"console on {site.name}", markup=False, highlight=False)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopped.set)
        try:
            await stopped.wait()
        finally:
            await runner.cleanup()

    uvloop.run(serve())
