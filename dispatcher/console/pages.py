"""The console's pages: overview, dead letters, a letter, export, the actions and their progress, log-in."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from dispatcher.console.actions import log
from dispatcher.console.app import CONSOLE, Console
from dispatcher.console.index import find_letter
from dispatcher.console.views import CATEGORIES, FilterError, FilterForm, redacted_body, shown_values
from dispatcher.dead_letters import age_text
from dispatcher.dlq import visit

if TYPE_CHECKING:
    from dispatcher.dead_letters import LetterFilter, StoredLetter

PAGE_SIZE = 50
MAX_RATE_PER_S = 1000.0
routes = web.RouteTableDef()


def _console(request: web.Request) -> Console:
    return request.app[CONSOLE]


@routes.get("/", name="overview")
async def overview(request: web.Request) -> web.Response:
    """Per operation: depth, consumers, in flight, rates, throttles and dead letters; the shared queues."""
    console = _console(request)
    return console.render(request, "overview.html", view=await console.overview.read(), now=datetime.now(UTC))


@routes.get("/letters")
async def letters(request: web.Request) -> web.Response:
    """The dead letters the filter matches, a page at a time, in queue order, from the index."""
    console = _console(request)
    form = FilterForm.read(request.query)
    try:
        letter_filter = form.letter_filter()
    except FilterError as exc:
        return _letters_page(request, form, problem=str(exc), status=400)
    snapshot = await console.index.current()
    if snapshot is None:
        reading = console.index.reading
        if reading is not None:
            problem = f"reading the queue for the list: {reading[0]:,} of {reading[1]:,} dead letters so far"
        else:
            problem = "an action is running on the queue; the list comes back when it ends"
        return _letters_page(request, form, problem=problem, reload=True)
    now = datetime.now(UTC)
    matching = snapshot.matching(letter_filter, now)
    pages = max(1, -(-len(matching) // PAGE_SIZE))
    page = min(max(1, _int(request.query.get("page"), 1)), pages)
    shown = matching[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows = [(letter, age_text(letter.age_s(now))) for letter in shown]
    return _letters_page(request, form, snapshot=snapshot, rows=rows, matching=len(matching), page=page, pages=pages)


def _letters_page(request: web.Request, form: FilterForm, *, status: int = 200, **context: object) -> web.Response:
    defaults: dict[str, object] = {
        "snapshot": None,
        "rows": [],
        "matching": 0,
        "page": 1,
        "pages": 1,
        "problem": None,
        "reload": False,
    }
    return _console(request).render(
        request, "letters.html", status=status, form=form, categories=CATEGORIES, **{**defaults, **context}
    )


@routes.get("/letters/export")
async def export(request: web.Request) -> web.StreamResponse:
    """The letters the filter matches, read from the queue itself, as the CLI's export file (operators only).

    An export holds the bodies in full (sensitive parameters too: it is for publishing again), so
    only an operator may take one.
    """
    console = _console(request)
    operator = console.require_operator(request)
    form = FilterForm.read(request.query)
    letter_filter = _filter_or_400(form)
    now = datetime.now(UTC)
    with tempfile.TemporaryFile() as file:

        def write(letter: StoredLetter) -> None:
            if letter_filter.matches(letter, now):
                file.write(orjson.dumps(letter.to_record()) + b"\n")

        async with console.queue_lock:
            await visit(
                console.settings.amqp_url.get_secret_value(), console.names.dead_queue, write, stamper=console.stamper
            )
        file.seek(0)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/x-ndjson",
                "Content-Disposition": f'attachment; filename="dead-letters-{now:%Y%m%dT%H%M%SZ}.jsonl"',
            }
        )
        await response.prepare(request)
        while chunk := file.read(1 << 16):
            await response.write(chunk)
        await response.write_eof()
    log.info("console_export", operator=operator, filter=form.text)
    return response


@routes.get("/letters/{digest:[0-9a-f]{64}}")
async def letter(request: web.Request) -> web.Response:
    """One letter in full, read again from the queue: reason, properties, headers, body (redacted)."""
    console = _console(request)
    found, busy = await find_letter(
        console.settings.amqp_url.get_secret_value(),
        console.names.dead_queue,
        request.match_info["digest"],
        stamper=console.stamper,
        queue_lock=console.queue_lock,
    )
    if found is None:
        return console.render(request, "error.html", status=404, problem="that dead letter is no longer in the queue")
    now = datetime.now(UTC)
    summary = found.summary(now)
    summary["age"] = age_text(summary.pop("age_s"))
    encoding, body = redacted_body(found, console.registry)
    return console.render(
        request,
        "letter.html",
        letter=found,
        summary=[(name, "" if value is None else str(value)) for name, value in summary.items()],
        properties=shown_values(found.properties),
        headers=shown_values(found.headers),
        body=body,
        encoding=encoding,
        busy=busy,
    )


@routes.post("/actions/replay")
async def start_replay(request: web.Request) -> web.Response:
    """Start a dry run or a replay of a selection or a filter; the page that follows it comes next."""
    console = _console(request)
    operator = console.require_operator(request)
    posted = await request.post()
    form = FilterForm.read(posted)
    selected = tuple(str(value) for value in posted.getall("selected", []))
    letter_filter = _filter_or_400(form, selected)
    dry_run = posted.get("mode") != "replay"
    rate = _rate(str(posted.get("rate", "")))
    text = form.text + (f" (selected: {', '.join(selected)})" if selected else "")
    task = console.actions.replay(letter_filter, text, operator=operator, dry_run=dry_run, rate_per_s=rate)
    raise web.HTTPSeeOther(f"/actions/{task.id}")


@routes.get("/purge")
async def purge_form(request: web.Request) -> web.Response:
    """The purge's confirmation: what matches now, and the queue's name to type."""
    console = _console(request)
    form = FilterForm.read(request.query)
    letter_filter = _filter_or_400(form)
    snapshot = await console.index.current()
    matching = None if snapshot is None else len(snapshot.matching(letter_filter, datetime.now(UTC)))
    return console.render(request, "purge.html", form=form, matching=matching, problem=None)


@routes.post("/actions/purge")
async def start_purge(request: web.Request) -> web.Response:
    """Start a purge once the queue's name was typed; its export is written first."""
    console = _console(request)
    operator = console.require_operator(request)
    posted = await request.post()
    form = FilterForm.read(posted)
    letter_filter = _filter_or_400(form)
    if str(posted.get("confirm", "")).strip() != console.names.dead_queue:
        problem = f"type {console.names.dead_queue} to confirm: nothing was deleted"
        return console.render(request, "purge.html", status=400, form=form, matching=None, problem=problem)
    task = console.actions.purge(letter_filter, form.text, operator=operator)
    raise web.HTTPSeeOther(f"/actions/{task.id}")


@routes.get("/actions/{task_id}")
async def action(request: web.Request) -> web.Response:
    """An action's progress, then its result: per letter "would move" or "kept" and why."""
    console = _console(request)
    task = console.actions.get(request.match_info["task_id"])
    if task is None:
        return console.render(
            request, "error.html", status=404, problem="no such action (the console keeps the last 20)"
        )
    return console.render(request, "action.html", task=task)


@routes.get("/exports/{name}")
async def export_file(request: web.Request) -> web.FileResponse:
    """A purge's export, for operators."""
    console = _console(request)
    console.require_operator(request)
    path = console.actions.export_path(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound(text="no such export")
    return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'})


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    """The token form."""
    return _console(request).render(request, "login.html", problem=None)


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    """Start a session for the holder of the token."""
    console = _console(request)
    posted = await request.post()
    if not console.access.token_matches(str(posted.get("token", ""))):
        return console.render(request, "login.html", status=403, problem="that is not the console's token")
    response = web.HTTPSeeOther("/letters")
    console.access.open_session(response, secure=request.secure)
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    """End the session."""
    response = web.HTTPSeeOther("/")
    _console(request).access.close_session(request, response)
    raise response


@routes.get("/livez")
async def livez(_: web.Request) -> web.Response:
    """Alive as long as the loop answers."""
    return web.Response(text="ok\n")


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when the broker answers."""
    console = _console(request)
    depths = await console.probe.depths([console.names.dead_queue])
    if depths[console.names.dead_queue] is None:
        return web.Response(status=503, text="no dead-letter queue (run `dispatcher topology`)\n")
    return web.Response(text="ready\n")


def _filter_or_400(form: FilterForm, selected: tuple[str, ...] = ()) -> LetterFilter:
    try:
        return form.letter_filter(selected)
    except FilterError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def _rate(text: str) -> float | None:
    try:
        rate = float(text) if text.strip() else None
    except ValueError:
        raise web.HTTPBadRequest(text=f"rate {text!r} is not a number of jobs per second") from None
    if rate is not None and not 0.01 <= rate <= MAX_RATE_PER_S:
        raise web.HTTPBadRequest(text=f"rate must be between 0.01 and {MAX_RATE_PER_S:g} jobs per second")
    return rate


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def add_routes(app: web.Application) -> None:
    """Join the pages to the application."""
    app.router.add_routes(routes)
