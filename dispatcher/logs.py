"""Logging: JSON in a cluster, readable console output on a terminal, per-message context."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)


def redact_urls(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask the password of any URL in a log line (broker and Redis URLs carry one)."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value:
            event_dict[key] = _URL_PASSWORD.sub(r"\g<scheme>***@", value)
    return event_dict


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    """Set up structlog (and the standard library's loggers) once, at the CLI's edge."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_urls,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info if as_json else _noop, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def _noop(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return event_dict
