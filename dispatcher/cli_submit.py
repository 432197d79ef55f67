"""`dispatcher submit`: publish jobs from the command line, optionally wait for the result."""

from __future__ import annotations

import asyncio
import base64
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import Progress

from dispatcher.cli import EXIT_OPERATIONAL, UsageError, _settings, app, err

WAIT_HELP = "Wait for the job's result (through reply_to) and print it; exit 1 if the job failed."


@app.command()
def submit(
    service: Annotated[str | None, typer.Option(help="botocore service name, e.g. m2.")] = None,
    operation: Annotated[str | None, typer.Option(help="Operation as in the AWS API reference.")] = None,
    params: Annotated[str | None, typer.Option(help="Request parameters: JSON, or @FILE holding JSON.")] = None,
    job_id: Annotated[str | None, typer.Option(help="The job's id (generated and printed if absent).")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region for this job.")] = None,
    not_after: Annotated[
        datetime | None, typer.Option(help="RFC 3339 deadline; the job is not started after it.")
    ] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="KEY=VALUE echoed in the result; repeatable.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="JSON Lines of job messages (or records from `dispatcher dlq export`) to publish."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help=WAIT_HELP)] = False,  # noqa: FBT002
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits for the result.")] = 60.0,
) -> None:
    """Publish a job (validated first, confirmed by the broker) and print its job_id.

    Example: dispatcher submit --service m2 --operation StartBatchJob
    --params '{"applicationId": "app-1", "batchJobIdentifier": {"scriptBatchJobIdentifier": {"scriptName": "x"}}}'
    """
    from dispatcher.client import JobRequest  # noqa: PLC0415

    if file is not None:
        if service or operation or params:
            msg = "give either --file or --service/--operation/--params, not both"
            raise UsageError(msg)
        jobs = [_job_from_line(line, n) for n, line in enumerate(_lines(file), start=1)]
    else:
        if not (service and operation and params):
            msg = "--service, --operation and --params are required (or --file)"
            raise UsageError(msg)
        fields: dict[str, Any] = {"service": service, "operation": operation, "params": _json_arg(params)}
        fields.update(
            {k: v for k, v in {"job_id": job_id, "region": region, "not_after": not_after}.items() if v is not None}
        )
        fields["metadata"] = dict(_pair(item) for item in metadata or [])
        jobs = [JobRequest.model_validate(fields)]
    failed = asyncio.run(_submit(jobs, wait=wait, timeout_s=timeout))
    if failed:
        raise typer.Exit(EXIT_OPERATIONAL)


async def _submit(jobs: list[Any], *, wait: bool, timeout_s: float) -> int:
    from dispatcher.client import DispatcherClient  # noqa: PLC0415

    settings = _settings()
    failed = 0
    async with DispatcherClient(settings.amqp_url.get_secret_value(), jobs_exchange=settings.jobs_exchange) as client:
        for job in jobs:
            client.check(job)
        with Progress(console=err, transient=True, disable=len(jobs) < 2 or not err.is_terminal) as progress:
            task = progress.add_task("publishing", total=len(jobs))
            for job in jobs:
                if wait:
                    result = await client.submit_and_wait(job, timeout_s=timeout_s)
                    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
                    failed += result.get("outcome") != "succeeded"
                else:
                    sys.stdout.write(await client.submit(job) + "\n")
                progress.advance(task)
    err.print(f"published {len(jobs)}, failed {failed}")
    return failed


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _job_from_line(line: str, number: int) -> Any:  # noqa: ANN401 - JobRequest, imported late
    from dispatcher.client import JobRequest  # noqa: PLC0415

    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        msg = f"line {number} is not JSON: {exc}"
        raise UsageError(msg) from None
    if isinstance(record, dict) and "body" in record and "service" not in record:
        record = _export_body(record, number)
    if not isinstance(record, dict):
        msg = f"line {number} is not a JSON object"
        raise UsageError(msg)
    if "job_id" not in record and isinstance(record.get("properties"), dict):
        record["job_id"] = record["properties"].get("message_id")
    return JobRequest.model_validate(record)


def _export_body(record: dict[str, Any], number: int) -> Any:  # noqa: ANN401 - any JSON
    body = record["body"]
    if isinstance(body, dict):
        job = dict(body)
    else:
        raw = base64.b64decode(body) if record.get("body_encoding") == "base64" else str(body).encode()
        try:
            job = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = f"line {number}: the exported body is not JSON; edit it into a job before submitting"
            raise UsageError(msg) from None
    properties = record.get("properties") or {}
    if isinstance(job, dict) and "job_id" not in job and properties.get("message_id"):
        job["job_id"] = properties["message_id"]
    return job


def _json_arg(value: str) -> Any:  # noqa: ANN401 - any JSON
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        msg = f"--params is not valid JSON: {exc}"
        raise UsageError(msg) from None


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        msg = f"--metadata takes KEY=VALUE, got {item!r}"
        raise UsageError(msg)
    return key, value
