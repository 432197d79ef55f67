"""Probes and metrics over HTTP, on the worker's own event loop.

`/livez` answers 503 until start-up is done (the AWS clients open), then as long as the loop does:
it never depends on RabbitMQ or on AWS answering, or a broker outage would restart every pod.
`/readyz` is the worker's own readiness: consuming.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatcher.metrics import REGISTRY

if TYPE_CHECKING:
    from collections.abc import Callable


def health_app(is_ready: Callable[[], bool], is_started: Callable[[], bool]) -> web.Application:
    """The aiohttp application serving `/livez`, `/readyz` and `/metrics`."""

    async def livez(_: web.Request) -> web.Response:
        if is_started():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="starting\n")

    async def readyz(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_health_server(
    is_ready: Callable[[], bool], is_started: Callable[[], bool], host: str, port: int
) -> web.AppRunner:
    """Start serving; the caller cleans the returned runner up at shutdown."""
    runner = web.AppRunner(health_app(is_ready, is_started), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
