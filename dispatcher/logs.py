"""Logging: JSON in a cluster, readable console output on a terminal, per-message context."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

import orjson
import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

_MASK = "***"
"""What a URL's password becomes in log lines and error messages."""
# A URL's `scheme://user:` (the user may be empty: `redis://:password@host`); the look-behind starts
# a scheme only at the start of a word, so a long word costs linear time.
_URL_HEAD = re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://[^\s:/@]*:", re.IGNORECASE)


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it masked (broker and Redis URLs carry one).

    A password may hold `#`, `/`, `?`, `@`, `:`, `%` or spaces unencoded, so where it ends cannot be
    known: everything from a line's first `scheme://user:` to its last `@` is masked. Masking too
    much (the rest of a line with two URLs) beats showing part of a password.
    """
    if "://" not in text:
        return text
    return "\n".join(_mask_line(line) for line in text.split("\n"))


def url_password(url: str) -> str | None:
    """What `mask_urls` hides of a URL, its password; None when it has none."""
    span = _password_span(url)
    return url[span[0] : span[1]] if span else None


def _mask_line(line: str) -> str:
    span = _password_span(line)
    return f"{line[: span[0]]}{_MASK}{line[span[1] :]}" if span else line


def _password_span(line: str) -> tuple[int, int] | None:
    """From the end of the line's first `scheme://user:` to its last `@`."""
    at = line.rfind("@")
    head = _URL_HEAD.search(line, 0, at) if at > 0 else None
    return (head.end(), at) if head else None


def _masked(value: Any) -> Any:  # noqa: ANN401 - any value of a log line
    if isinstance(value, str):
        return mask_urls(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def redact_urls(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask the password of any URL in a log line, tracebacks included (they are text by now)."""
    return {key: _masked(value) for key, value in event_dict.items()}


def _orjson_text(event_dict: Any, **_: Any) -> str:  # noqa: ANN401 - what JSONRenderer passes
    """orjson for the standard library's lines, whose formatter must return text."""
    return orjson.dumps(event_dict).decode()


def stdlib_formatter(*, as_json: bool) -> logging.Formatter:
    """Render the standard library's records (aiormq, aio_pika, botocore, aiohttp, asyncio) as structlog does.

    In JSON each record becomes one line with `level`, `logger`, `event` and `timestamp`, its URLs
    masked; the job lines do not go through it, so their cost is unchanged.
    """
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_urls,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(serializer=_orjson_text)
            if as_json
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
    )


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    """Set up structlog (and the standard library's loggers) once, at the CLI's edge.

    Exceptions are formatted to text before `redact_urls`, so a URL in an exception's message is
    masked too; the console shows them as plain tracebacks for that reason.
    """
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_urls,
        # orjson writes a job's line in a fraction of the standard library's time (one line per job).
        structlog.processors.JSONRenderer(serializer=orjson.dumps)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer)
        if as_json
        else structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(stdlib_formatter(as_json=as_json))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
