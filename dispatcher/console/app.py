"""The console's aiohttp application: its parts, its pages' rendering, security headers and errors."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import structlog
from aiohttp import web

from dispatcher.console.access import Access, csrf_middleware, csrf_token
from dispatcher.console.actions import Actions, ActionSettings
from dispatcher.console.broker import BrokerProbe, BrokerUnavailable
from dispatcher.console.index import DeadLetterIndex
from dispatcher.console.overview import OverviewReader
from dispatcher.console.scrape import MetricsWatcher
from dispatcher.dlq import BrokerProblem
from dispatcher.envelope import Decoder
from dispatcher.logs import mask_urls
from dispatcher.stamps import Stamper
from dispatcher.topology import Names

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from dispatcher.registry import Registry
    from dispatcher.settings import Settings

log = structlog.get_logger("dispatcher.console")
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    """Everything a page handler needs, made once at start-up."""

    settings: Settings
    registry: Registry
    names: Names
    access: Access
    probe: BrokerProbe
    watcher: MetricsWatcher
    overview: OverviewReader
    index: DeadLetterIndex
    actions: Actions
    stamper: Stamper
    queue_lock: asyncio.Lock
    templates: jinja2.Environment

    def render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:  # noqa: ANN401
        """A page, with what every page shows: the operator, the CSRF token, the queue's name."""
        page = self.templates.get_template(template).render(
            operator=self.access.operator(request),
            can_log_in=self.access.can_log_in,
            proxy_header=self.access.identity_header,
            csrf=csrf_token(request),
            dead_queue=self.names.dead_queue,
            path=request.path,
            **context,
        )
        return web.Response(text=page, content_type="text/html", status=status)

    def require_operator(self, request: web.Request) -> str:
        """The operator acting, or a 403 page saying how to become one."""
        operator = self.access.operator(request)
        if operator is None:
            raise web.HTTPForbidden(
                text=self.render(request, "refused.html", status=403).text, content_type="text/html"
            )
        return operator


CONSOLE = web.AppKey("console", Console)


def build_console(settings: Settings, registry: Registry) -> Console:
    """The console's parts from the settings (the workers' own settings, plus the `console_*` ones)."""
    url = settings.amqp_url.get_secret_value()
    names = Names.from_settings(settings)
    stamper = Stamper.from_settings(settings)
    probe = BrokerProbe(url)
    watcher = MetricsWatcher(settings.console_metrics_urls)
    queue_lock = asyncio.Lock()
    index = DeadLetterIndex(
        url,
        names.dead_queue,
        stamper=stamper,
        probe=probe,
        queue_lock=queue_lock,
        max_age_s=settings.console_index_max_age_s,
    )
    export_dir = Path(settings.console_export_dir or tempfile.mkdtemp(prefix="dispatcher-console-"))
    actions = Actions(
        ActionSettings(url, names.dead_queue, names.jobs_exchange, settings.publish_timeout_s, export_dir),
        decoder=Decoder(registry, settings.region, settings.enabled_regions, settings.max_message_bytes),
        stamper=stamper,
        queue_lock=queue_lock,
        index=index,
    )
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Console(
        settings=settings,
        registry=registry,
        names=names,
        access=Access(settings.console_token, settings.console_identity_header),
        probe=probe,
        watcher=watcher,
        overview=OverviewReader(settings, registry, probe, watcher),
        index=index,
        actions=actions,
        stamper=stamper,
        queue_lock=queue_lock,
        templates=templates,
    )


@web.middleware
async def pages_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Security headers on every answer; a broker outage or a failure as a page without details."""
    console = request.app[CONSOLE]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    except (BrokerUnavailable, BrokerProblem) as exc:
        response = console.render(request, "error.html", status=503, problem=mask_urls(str(exc)))
    except Exception:
        log.exception("console_page_failed", path=request.path)
        response = console.render(request, "error.html", status=500, problem="the console failed; see its log")
    response.headers.update(SECURITY_HEADERS)
    return response


def console_app(console: Console) -> web.Application:
    """The application serving the pages, the static files and the probes."""
    from dispatcher.console import pages  # noqa: PLC0415 - pages import this module

    app = web.Application(middlewares=[pages_middleware, csrf_middleware])
    app[CONSOLE] = console
    pages.add_routes(app)
    app.router.add_static("/static", HERE / "static")

    async def close(_: web.Application) -> None:
        await console.actions.close()
        await console.watcher.close()
        await console.probe.close()

    app.on_cleanup.append(close)
    return app
