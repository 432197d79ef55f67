"""`dispatcher dlq`: list, show, replay, purge and export dead letters (docs/operators.md)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich import box
from rich.console import Console
from rich.json import JSON
from rich.measure import Measurement
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from dispatcher.cli_app import EXIT_OPERATIONAL, UsageError, _settings, app, err, reflowed
from dispatcher.errors import Category
from dispatcher.stamps import Stamper

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Iterator
    from datetime import datetime

    from dispatcher.dead_letters import Identity, LetterFilter, StoredLetter
    from dispatcher.dlq import Browse, Decision, ReplayReport

dlq_app = typer.Typer(
    name="dlq",
    help=(
        "Operate the dead-letter queue (dispatcher.dead): list, show, replay, purge, export. "
        "Every command reads each dead letter once and leaves the ones it does not act on in place, "
        "in order. A command finding another one running says so: destructive ones refuse, the others warn "
        "that what they show is incomplete. "
        "Guide: docs/operators.md."
    ),
    no_args_is_help=True,
)
app.add_typer(dlq_app, short_help="Operate the dead-letter queue: list, show, replay, purge, export.")
out = Console(highlight=False)
FILTERS = "Filters (all given must match; a repeated option matches any of its values)"
MESSAGE_COLUMN_CHARS = 60
PROGRESS_EVERY_S = 5.0  # without a terminal: one progress line on stderr this often
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

Service = Annotated[
    list[str] | None, typer.Option("--service", help="botocore service, e.g. m2.", rich_help_panel=FILTERS)
]
Operation = Annotated[
    list[str] | None,
    typer.Option("--operation", help="StartBatchJob, or the routing key m2.StartBatchJob.", rich_help_panel=FILTERS),
]
Categories = Annotated[
    list[Category] | None,
    typer.Option("--category", help="Why it was dead-lettered.", rich_help_panel=FILTERS),
]
ErrorCode = Annotated[
    list[str] | None,
    typer.Option("--error-code", help="e.g. AccessDeniedException, InvalidParameters.", rich_help_panel=FILTERS),
]
OlderThan = Annotated[
    str | None,
    typer.Option(
        "--older-than", help="Dead-lettered at least this long ago: 30s, 10m, 2h, 7d.", rich_help_panel=FILTERS
    ),
]
NewerThan = Annotated[
    str | None,
    typer.Option(
        "--newer-than", help="Dead-lettered at most this long ago: 30s, 10m, 2h, 7d.", rich_help_panel=FILTERS
    ),
]
JobId = Annotated[
    list[str] | None,
    typer.Option("--job-id", help="The job's id (or message_id).", rich_help_panel=FILTERS),
]
Limit = Annotated[
    int | None,
    typer.Option(
        "--limit", min=1, help="Only the first N matching dead letters, in queue order.", rich_help_panel=FILTERS
    ),
]


DryRun = Annotated[bool, typer.Option("--dry-run", help="Only list what would happen; change nothing.")]
JsonLines = Annotated[bool, typer.Option("--json", help="JSON Lines (one object per dead letter) for scripts.")]
Force = Annotated[
    bool, typer.Option("--force", help="Replay even dead letters that fail validation (or expired) as they are.")
]
Overwrite = Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")]
AndPurge = Annotated[
    bool,
    typer.Option(
        "--purge", help="Also delete what was exported, in the same pass: each letter once it is written and synced."
    ),
]
Yes = Annotated[bool, typer.Option("--yes", help="Confirm: the matching dead letters are deleted for good.")]


@dlq_app.command("list")
@reflowed
def list_(
    service: Service = None,
    operation: Operation = None,
    category: Categories = None,
    error_code: ErrorCode = None,
    older_than: OlderThan = None,
    newer_than: NewerThan = None,
    job_id: JobId = None,
    limit: Limit = None,
    as_json: JsonLines = False,  # noqa: FBT002
) -> None:
    """List dead letters in queue order, with why they failed; the queue is left exactly as it was.

    Queue order is oldest first, except that a letter a replay kept went back to the tail.

    On a terminal a table; otherwise tab-separated columns with a header line, one letter a line.

    Example: dispatcher dlq list --category rejected --newer-than 1h
    """
    found = _browse(_filter(service, operation, category, error_code, older_than, newer_than, job_id), limit)
    now = _now()
    if as_json:
        sys.stdout.buffer.write(b"".join(orjson.dumps(letter.summary(now)) + b"\n" for letter in found.letters))
    elif found.letters:
        print_letters(out, found.letters, now)
    _warn_busy(found.busy)
    incomplete = " (incomplete: see the warning)" if found.busy else ""
    err.print(f"listed {len(found.letters)} of {found.examined} dead letters{incomplete}")


@dlq_app.command()
@reflowed
def show(
    job_id: Annotated[str, typer.Argument(help="The job's id (the body's job_id, else the AMQP message_id).")],
) -> None:
    """Show a dead letter in full: the error, AMQP properties, headers and body; the queue is left as it was."""
    from dispatcher.dead_letters import LetterFilter  # noqa: PLC0415

    found = _browse(LetterFilter(job_ids=frozenset({job_id})))
    _warn_busy(found.busy)
    if not found.letters:
        held = "; it may be one of the letters held elsewhere (see the warning)" if found.busy else ""
        msg = f"none of the {found.examined} dead letters has job_id {job_id}{held}"
        raise LookupError(msg)
    for number, letter in enumerate(found.letters, start=1):
        if len(found.letters) > 1:
            out.rule(f"dead letter {number} of {len(found.letters)}")
        _show(letter)
    err.print(f"shown {len(found.letters)} of {found.examined} dead letters")


@dlq_app.command()
@reflowed
def replay(
    service: Service = None,
    operation: Operation = None,
    category: Categories = None,
    error_code: ErrorCode = None,
    older_than: OlderThan = None,
    newer_than: NewerThan = None,
    job_id: JobId = None,
    limit: Limit = None,
    dry_run: DryRun = False,  # noqa: FBT002
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", min=0.01, help="At most this many jobs per second (default: as fast as the broker confirms)."
        ),
    ] = None,
    force: Force = False,  # noqa: FBT002
) -> None:
    """Send matching dead letters back to the jobs exchange, to be run again.

    Each copy goes to dispatcher.jobs with the job's original routing key, the same body and
    message_id, no dead-letter headers and x-dispatcher-replays counted up; the dead letter is
    deleted only once the broker confirmed the copy, so a replay stopped at any moment loses
    nothing (at most the message in hand exists twice). A dead letter that would fail again as it
    is (current schema, expired not_after) stays unless --force. unknown-outcome and
    delivery-limit dead letters, which AWS may already have started, move only when their
    category is named with --category.

    The job_id is kept, so idempotency tokens and the start ledger do not start a job twice: to
    deliberately run again a job that already started, submit it with a NEW job_id instead.

    Example: dispatcher dlq replay --operation m2.StartBatchJob --error-code AccessDeniedException --rate 20
    """
    from dispatcher.dlq import FAILED, KEPT, WOULD_MOVE, ReplayReport  # noqa: PLC0415
    from dispatcher.dlq import replay as replay_letters  # noqa: PLC0415
    from dispatcher.envelope import Decoder  # noqa: PLC0415
    from dispatcher.registry import default_registry  # noqa: PLC0415
    from dispatcher.topology import Names  # noqa: PLC0415

    letter_filter = _filter(service, operation, category, error_code, older_than, newer_than, job_id)
    settings = _settings()
    names = Names.from_settings(settings)
    decoder = Decoder(default_registry(), settings.region, settings.enabled_regions, settings.max_message_bytes)
    report = ReplayReport()
    try:
        with _progress(
            "dry run" if dry_run else "replaying", lambda: _replay_progress(report, dry_run=dry_run)
        ) as progress:
            asyncio.run(
                replay_letters(
                    settings.amqp_url.get_secret_value(),
                    dead_queue=names.dead_queue,
                    jobs_exchange=names.jobs_exchange,
                    letter_filter=letter_filter,
                    decoder=decoder,
                    stamper=Stamper.from_settings(settings),
                    publish_timeout_s=settings.publish_timeout_s,
                    force=force,
                    dry_run=dry_run,
                    limit=limit,
                    rate_per_s=rate,
                    progress=progress,
                    report=report,
                )
            )
    except KeyboardInterrupt:
        err.print(
            f"interrupted: moved {report.moved}, {max(0, report.total - report.moved)} left in {names.dead_queue} "
            f"(of {report.total}); {report.examined} dead letters read. The letters this replay held are back in "
            "the queue (at its tail); the one being published at that moment may also have been sent.",
            markup=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _warn_busy(report.busy)
    if report.decisions:
        print_decisions(out, report.decisions)
    if dry_run:
        summary = f"would move {report.count(WOULD_MOVE)}, would keep {report.count(KEPT)} (dry run)"
    else:
        summary = f"moved {report.moved}, kept {report.count(KEPT)}, failed {report.count(FAILED)}"
    err.print(f"{summary}; {report.examined} dead letters read")
    if report.count(FAILED):
        raise typer.Exit(EXIT_OPERATIONAL)


@dlq_app.command()
@reflowed
def purge(
    service: Service = None,
    operation: Operation = None,
    category: Categories = None,
    error_code: ErrorCode = None,
    older_than: OlderThan = None,
    newer_than: NewerThan = None,
    job_id: JobId = None,
    limit: Limit = None,
    yes: Yes = False,  # noqa: FBT002
    backup: Annotated[
        Path | None,
        typer.Option(
            "--backup",
            help="First append them to this file (the export format) and sync it to disk.",
            dir_okay=False,
        ),
    ] = None,
    dry_run: DryRun = False,  # noqa: FBT002
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Delete only the dead letters this export file came from (by message_id and body digest).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Delete matching dead letters for good; refuses without --yes (or --dry-run).

    With --backup FILE they are appended to FILE as JSON Lines, which `dispatcher submit --file`
    publishes again, and FILE is on disk before the first one is deleted. With --from-file FILE
    only the letters an earlier `dlq export` wrote to FILE are deleted (each recorded by its
    message_id and a digest of its body as it was, so editing the bodies in FILE changes nothing),
    never one that arrived after the export.

    Example: dispatcher dlq purge --category malformed --older-than 7d --backup malformed.jsonl --yes
    """
    from dispatcher.dead_letters import read_identities  # noqa: PLC0415

    if not (yes or dry_run):
        msg = "purge deletes dead letters for good: add --yes (and --backup FILE to keep a copy), or --dry-run"
        raise UsageError(msg)
    if backup is not None and not backup.parent.is_dir():
        msg = f"--backup: directory {backup.parent} does not exist"
        raise UsageError(msg)
    only = None
    if from_file is not None:
        try:
            only = read_identities(from_file)
        except ValueError as exc:
            raise UsageError(f"--from-file: {exc}") from None
    letter_filter = _filter(service, operation, category, error_code, older_than, newer_than, job_id)
    report = _purge(
        "dry run" if dry_run else "purging", letter_filter, backup=backup, dry_run=dry_run, limit=limit, only=only
    )
    if dry_run and report.letters:
        print_letters(out, report.letters, _now())
    verb = "would delete" if dry_run else "deleted"
    saved = f", appended to {backup}" if backup is not None and report.letters else ""
    named = ""
    if only is not None:
        named = f"; {sum(only.values()) - len(report.letters)} named in {from_file} were not in the queue"
    err.print(f"{verb} {len(report.letters)} of {report.examined} dead letters{saved}{named}", markup=False)


@dlq_app.command()
@reflowed
def export(
    file: Annotated[
        Path,
        typer.Argument(help="Output file (JSON Lines; an existing one only with --force), or - for standard output."),
    ],
    service: Service = None,
    operation: Operation = None,
    category: Categories = None,
    error_code: ErrorCode = None,
    older_than: OlderThan = None,
    newer_than: NewerThan = None,
    job_id: JobId = None,
    limit: Limit = None,
    force: Overwrite = False,  # noqa: FBT002
    and_purge: AndPurge = False,  # noqa: FBT002
) -> None:
    """Write matching dead letters to a file, leaving the queue as it was (with --purge: deleting those).

    One JSON object per line: {"properties": {...}, "headers": {...}, "dead_letter": {...}, "body": ...};
    the body is the JSON object when it is one, else text, else base64 with "body_encoding": "base64";
    dead_letter names the letter (message_id, body digest) for `dlq purge --from-file FILE`. Edit a
    job's body, then publish the file again with `dispatcher submit --file FILE`.

    Example: dispatcher dlq export --category invalid --purge invalid.jsonl
    """
    stdout = str(file) == "-"
    if and_purge and stdout:
        msg = "--purge needs a file: what is deleted must first be on disk"
        raise UsageError(msg)
    if not stdout and file.exists() and not force:
        msg = f"{file} exists: choose another name, or add --force to overwrite it"
        raise UsageError(msg)
    if not stdout and not file.parent.is_dir():
        msg = f"directory {file.parent} does not exist"
        raise UsageError(msg)
    letter_filter = _filter(service, operation, category, error_code, older_than, newer_than, job_id)
    if and_purge:
        _export_and_purge(file, letter_filter, limit)
        return
    found = _browse(letter_filter, limit)
    _warn_busy(found.busy)
    lines = b"".join(orjson.dumps(letter.to_record()) + b"\n" for letter in found.letters)
    if stdout:
        sys.stdout.buffer.write(lines)
    else:
        file.write_bytes(lines)
    err.print(f"exported {len(found.letters)} of {found.examined} dead letters to {file}", markup=False)


def _export_and_purge(file: Path, letter_filter: LetterFilter, limit: int | None) -> None:
    file.unlink(missing_ok=True)  # reached only with --force: the purge appends each chunk, synced, then deletes it
    report = _purge("exporting", letter_filter, backup=file, limit=limit)
    if not file.exists():
        file.write_bytes(b"")  # nothing matched: an empty export, as without --purge
    err.print(f"exported and deleted {len(report.letters)} of {report.examined} dead letters to {file}", markup=False)


def _purge(
    doing: str,
    letter_filter: LetterFilter,
    *,
    backup: Path | None,
    limit: int | None,
    dry_run: bool = False,
    only: Counter[Identity] | None = None,
) -> Browse:
    """Delete the matching dead letters (after appending them to `backup`), with a progress bar."""
    from dispatcher.dlq import purge as purge_letters  # noqa: PLC0415
    from dispatcher.topology import Names  # noqa: PLC0415

    settings = _settings()
    with _progress(doing) as progress:
        report = asyncio.run(
            purge_letters(
                settings.amqp_url.get_secret_value(),
                Names.from_settings(settings).dead_queue,
                letter_filter,
                stamper=Stamper.from_settings(settings),
                backup=backup,
                dry_run=dry_run,
                limit=limit,
                progress=progress,
                only=only,
            )
        )
    _warn_busy(report.busy)
    return report


def _browse(letter_filter: LetterFilter, limit: int | None = None) -> Browse:
    from dispatcher.dlq import browse  # noqa: PLC0415
    from dispatcher.topology import Names  # noqa: PLC0415

    settings = _settings()
    with _progress("reading") as progress:
        return asyncio.run(
            browse(
                settings.amqp_url.get_secret_value(),
                Names.from_settings(settings).dead_queue,
                letter_filter,
                stamper=Stamper.from_settings(settings),
                limit=limit,
                progress=progress,
            )
        )


def _filter(
    services: list[str] | None,
    operations: list[str] | None,
    categories: list[Category] | None,
    error_codes: list[str] | None,
    older_than: str | None,
    newer_than: str | None,
    job_ids: list[str] | None,
) -> LetterFilter:
    from dispatcher.dead_letters import LetterFilter  # noqa: PLC0415

    return LetterFilter(
        services=frozenset(services or ()),
        operations=frozenset(operations or ()),
        categories=frozenset(str(category) for category in categories or ()),
        error_codes=frozenset(error_codes or ()),
        job_ids=frozenset(job_ids or ()),
        older_than_s=_duration("--older-than", older_than),
        newer_than_s=_duration("--newer-than", newer_than),
    )


def _duration(option: str, text: str | None) -> float | None:
    from dispatcher.dead_letters import parse_duration  # noqa: PLC0415

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        msg = f"{option}: {exc}"
        raise UsageError(msg) from None


@contextlib.contextmanager
def _progress(description: str, detail: Callable[[], str] | None = None) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr when it is a terminal, else a line every PROGRESS_EVERY_S; takes (read, total)."""
    if not err.is_terminal:
        every_s = float(os.environ.get("DISPATCHER_DLQ_PROGRESS_EVERY_S") or PROGRESS_EVERY_S)
        last = time.monotonic()

        def line(done: int, total: int) -> None:
            nonlocal last
            if time.monotonic() - last >= every_s:
                last = time.monotonic()
                more = f", {detail()}" if detail is not None else ""
                sys.stderr.write(f"{description}: {done} of {total} dead letters read{more}\n")
                sys.stderr.flush()

        yield line
        return
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


def _replay_progress(report: ReplayReport, *, dry_run: bool) -> str:
    return f"would move {len(report.decisions)}" if dry_run else f"moved {report.moved}"


def _warn_busy(busy: str | None) -> None:
    if busy is not None:
        err.print(f"[yellow]warning:[/yellow] {busy}: what is shown is incomplete", highlight=False)


def _now() -> datetime:
    from datetime import UTC, datetime  # noqa: PLC0415

    return datetime.now(UTC)


LETTER_COLUMNS = ("job id", "operation", "category", "error code", "message", "attempts", "age")
DECISION_COLUMNS = ("job id", "operation", "category", "error code", "replay", "why")
PROSE_COLUMNS = frozenset({"message", "why"})  # the only ones wrapped, at spaces


def print_letters(console: Console, letters: list[StoredLetter], now: datetime) -> None:
    """The `list` table; tab-separated columns when not on a terminal."""
    from dispatcher.dead_letters import age_text  # noqa: PLC0415

    rows = [
        [
            letter.job_id or "-",
            letter.original_routing_key,
            letter.category,
            letter.error_code,
            letter.error_message,
            str(letter.attempts),
            age_text(letter.age_s(now)),
        ]
        for letter in letters
    ]
    _print_rows(console, LETTER_COLUMNS, rows)


def print_decisions(console: Console, decisions: list[Decision]) -> None:
    """What a replay kept or failed, and why; tab-separated columns when not on a terminal."""
    rows = [
        [
            decision.letter.job_id or "-",
            decision.letter.original_routing_key,
            decision.letter.category,
            decision.letter.error_code,
            decision.action,
            decision.reason,
        ]
        for decision in decisions
    ]
    _print_rows(console, DECISION_COLUMNS, rows)


def _print_rows(console: Console, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    """A table on a terminal, unless its identifiers cannot fit whole: then one block per row.

    Job ids, routing keys, categories and codes are never wrapped or cut (no_wrap); only the prose
    columns wrap, at spaces. Without a terminal: a header line and one line per row, tab-separated
    (as rabbitmqctl prints), tabs and line breaks inside values turned into spaces, nothing cut.
    """
    if not console.is_terminal:
        lines = ["\t".join(_plain(name) for name in columns)]
        lines += ["\t".join(_plain(value) for value in row) for row in rows]
        console.file.write("\n".join(lines) + "\n")
        console.file.flush()
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        prose = column in PROSE_COLUMNS
        table.add_column(column, no_wrap=not prose, overflow="fold" if prose else "ignore", min_width=None)
    for row in rows:
        table.add_row(*(_cell(name, value) for name, value in zip(columns, row, strict=True)))
    if _fits(console, table, columns, rows):
        console.print(table)
        return
    for row in rows:  # too narrow for a table: one block per row, each value on its own line
        block = Table.grid(padding=(0, 1))
        block.add_column(style="cyan", no_wrap=True)
        block.add_column(no_wrap=False, overflow="fold")
        for name, value in zip(columns, row, strict=True):
            block.add_row(name, _cell(name, value))
        console.print(block)
        console.print()


def _show(letter: StoredLetter) -> None:
    from dispatcher.dead_letters import age_text, json_ready  # noqa: PLC0415

    now = _now()
    summary = letter.summary(now)
    summary["age"] = age_text(summary.pop("age_s"))
    out.print(_grid("dead letter", summary))
    out.print(_grid("properties", json_ready(letter.properties)))
    out.print(_grid("headers", json_ready(letter.headers)))
    out.print(Text("body", style="bold"))
    out.print(_body(letter.body))


def _grid(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None)
    table.add_column(style="cyan", no_wrap=True)
    table.add_column()
    for name, value in values.items():
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        table.add_row(_safe(name), _safe(shown))
    return table


def _body(body: bytes) -> JSON | Text:
    """JSON pretty-printed; other text with control characters escaped; other bytes as base64."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        encoded = base64.b64encode(body).decode()
        return Text(f"({len(body)} bytes, not UTF-8; base64:)\n{encoded}")
    try:
        return JSON.from_data(orjson.loads(body), indent=2)
    except orjson.JSONDecodeError:
        return _safe(text)


def _safe(text: str) -> Text:
    """Text shown as it is, never as markup, with control characters (terminal escapes) spelled out."""
    return Text("".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text))


def _fits(console: Console, table: Table, columns: tuple[str, ...], rows: list[list[str]]) -> bool:
    """True when, at this width, the table shows every identifier whole on one line (rendered to check)."""
    if Measurement.get(console, console.options, table).minimum > console.width:
        return False
    with console.capture() as capture:
        console.print(table)
    lines = capture.get().splitlines()
    identifiers = {
        _safe(value).plain
        for row in rows
        for name, value in zip(columns, row, strict=True)
        if name not in PROSE_COLUMNS
    }
    return all(any(value in line for line in lines) for value in identifiers)


def _cell(column: str, value: str) -> Text:
    return _safe(_truncate(value) if column == "message" else value)


def _plain(text: str) -> str:
    """One tab-separated field: control characters spelled out, tabs and line breaks as spaces."""
    spaced = " ".join(text.replace("\t", " ").replace("\r", " ").split("\n"))
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in spaced)


def _truncate(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_COLUMN_CHARS else line[: MESSAGE_COLUMN_CHARS - 1] + "…"
