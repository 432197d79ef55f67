"""The `dispatcher` command: worker, topology, submit, emulator, schema, dlq, capacity.

Exit codes: 0 success, 1 operational failure, 2 usage or validation error. Errors are one
sentence on stderr; `--debug` shows the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated

import orjson
import typer
import uvloop
from pydantic import ValidationError

from dispatcher.cli_app import EXIT_OPERATIONAL, EXIT_USAGE, UsageError, _settings, _state, app, err
from dispatcher.errors import JobError
from dispatcher.refusals import broker_refusal


@app.command()
def run() -> None:
    """Run the worker until SIGTERM/SIGINT, then drain in-flight jobs and exit 0.

    Configuration comes from DISPATCHER_* variables (and DISPATCHER_CONFIG); AWS from the
    standard chain (AWS_REGION, AWS_ENDPOINT_URL, credentials).
    """
    from dispatcher.health import start_health_server  # noqa: PLC0415
    from dispatcher.logs import configure_logging  # noqa: PLC0415
    from dispatcher.registry import default_registry  # noqa: PLC0415
    from dispatcher.wiring import build_worker  # noqa: PLC0415

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)

    async def serve() -> None:
        worker = build_worker(settings, default_registry())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        runner = await start_health_server(
            lambda: worker.ready, worker.started.is_set, settings.http_host, settings.http_port
        )
        try:
            await worker.run()
        finally:
            await runner.cleanup()

    # uvloop: the same program on libuv's loop, which aio-pika and aiohttp support, at less CPU per job.
    uvloop.run(serve())


@app.command()
def topology() -> None:
    """Declare every exchange and queue (idempotently) and exit."""
    import aio_pika  # noqa: PLC0415

    from dispatcher.registry import default_registry  # noqa: PLC0415
    from dispatcher.topology import declare_for  # noqa: PLC0415

    settings = _settings()

    async def declare() -> None:
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value(), timeout=10)
        async with connection:
            await declare_for(await connection.channel(), settings, default_registry())

    asyncio.run(declare())
    err.print("topology declared")


@app.command()
def schema(
    kind: Annotated[
        str, typer.Argument(help="`job` (the job message), `result`, or `completion` (a followed job's end).")
    ] = "job",
) -> None:
    """Print the JSON Schema of the job message (or of the result or completion message)."""
    from dispatcher.registry import default_registry  # noqa: PLC0415
    from dispatcher.schema import completion_schema, job_schema, result_schema  # noqa: PLC0415

    schemas = {"job": lambda: job_schema(default_registry()), "result": result_schema, "completion": completion_schema}
    if kind not in schemas:
        msg = f"unknown schema {kind!r}: use `job`, `result` or `completion`"
        raise UsageError(msg)
    document = schemas[kind]()
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 4566,
    faults: Annotated[
        Path | None, typer.Option(help="JSON file of fault settings per operation (see docs/emulator.md).")
    ] = None,
    lifecycle: Annotated[
        Path | None,
        typer.Option(help="JSON file of job lifecycle settings per operation (see docs/emulator.md)."),
    ] = None,
) -> None:
    """Serve a local stand-in for the AWS operations and their Describe calls (point AWS_ENDPOINT_URL at it)."""
    from dispatcher.emulator import FaultConfigError, LifecycleConfigError, run_emulator  # noqa: PLC0415

    try:
        run_emulator(host, port, faults, lifecycle)
    except (FaultConfigError, LifecycleConfigError) as exc:  # settings files that cannot work: exit 2
        raise UsageError(str(exc)) from exc


def main() -> None:
    """Entry point: run the app and map errors to one sentence and an exit code."""
    # The commands report broker errors themselves, in one sentence; aiormq's own lines are noise.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)

    try:
        app(args=_debug_first(sys.argv[1:]), prog_name="dispatcher")
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        from dispatcher.logs import mask_urls  # noqa: PLC0415 - structlog is slow to import

        # Plain text, not rich's wrapped traceback: a URL cut across lines would escape the mask.
        if _state["debug"]:
            sys.stderr.write(mask_urls("".join(traceback.format_exception(exc))))
        err.print("[red]error:[/red] ", end="")
        err.print(mask_urls(_sentence(exc)), markup=False, highlight=False)
        sys.exit(EXIT_USAGE if _is_usage_error(exc) else EXIT_OPERATIONAL)


def _debug_first(args: list[str]) -> list[str]:
    """`--debug` is accepted after the subcommand too: move it in front (not past a `--`)."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:
        _state["debug"] = True
        return ["--debug", *[arg for arg in args[:end] if arg != "--debug"], *args[end:]]
    return args


def _is_usage_error(exc: BaseException) -> bool:
    from dispatcher.settings import ConfigError  # noqa: PLC0415

    if broker_refusal(exc) is not None:
        return True
    return isinstance(exc, UsageError | ValidationError | JobError | FileNotFoundError | ConfigError)


def _sentence(exc: BaseException) -> str:
    refusal = broker_refusal(exc)
    if refusal is not None:
        return refusal
    if isinstance(exc, JobError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, ValidationError):
        from dispatcher.envelope import describe_errors  # noqa: PLC0415

        return f"invalid configuration: {describe_errors(exc.errors(include_input=False))}"
    text = str(exc) or type(exc).__name__
    return text.rstrip(".")


# After cli's own commands, so `--help` lists run, topology, schema and emulator first.
from dispatcher import cli_capacity, cli_console, cli_dlq, cli_submit  # noqa: E402, F401 - their commands join the app
