"""The `dispatcher` application object and what every command module shares: console, exit codes, settings.

Command modules (`cli`, `cli_console`, `cli_dlq`, `cli_submit`) import from here and never from each other.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    name="dispatcher",
    help="Start AWS jobs from RabbitMQ messages: validated, rate-limited, retried durably, never lost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True)
EXIT_OPERATIONAL = 1
EXIT_USAGE = 2
_state = {"debug": False}


class UsageError(Exception):
    """Raised for a command line or input that cannot work; exit code 2."""


def _version(value: bool) -> None:  # noqa: FBT001 - typer's callback signature
    if value:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            number = version("job-dispatcher")
        except PackageNotFoundError:
            number = "unknown"
        sys.stdout.write(f"dispatcher {number}\n")
        raise typer.Exit


@app.callback()
def _main(
    *,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks on errors (before or after the command).")
    ] = False,
    version: Annotated[  # noqa: ARG001 - handled by its callback
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


def reflowed(command: Callable[..., None]) -> Callable[..., None]:
    """Typer keeps a docstring's line breaks in --help: make each paragraph one line, for the terminal to wrap."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    command.__doc__ = "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)
    return command


def _settings(**overrides: Any) -> Any:  # noqa: ANN401 - Settings, imported late to keep --help fast
    """The settings; a `ConfigError` (one sentence, exit 2) if they cannot work."""
    from dispatcher.settings import load_settings  # noqa: PLC0415

    return load_settings(**overrides)
