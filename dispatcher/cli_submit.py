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

from dispatcher.cli_app import EXIT_OPERATIONAL, UsageError, _settings, app, err

WAIT_HELP = "Wait for the job's result (through reply_to) and print it; exit 1 if the job failed."
FOLLOW_HELP = (
    "Ask the dispatcher to follow the AWS job to its end. With --wait, wait for the completion result, "
    "showing each status change, and print it; exit 1 unless the AWS job succeeded."
)


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
        typer.Option(
            help="JSON Lines of job messages (or records from `dispatcher dlq export`) to publish; - for stdin."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help=WAIT_HELP)] = False,  # noqa: FBT002
    follow: Annotated[bool, typer.Option("--follow", help=FOLLOW_HELP)] = False,  # noqa: FBT002
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds --wait waits (positive; default 60, or as long as the follow with --follow)."),
    ] = None,
) -> None:
    """Publish a job (validated first, confirmed by the broker) and print its job_id.

    Example: dispatcher submit --service m2 --operation StartBatchJob
    --params '{"applicationId": "app-1", "batchJobIdentifier": {"scriptBatchJobIdentifier": {"scriptName": "x"}}}'
    """
    from dispatcher.client import JobRequest  # noqa: PLC0415

    if timeout is not None and timeout <= 0:
        msg = f"--timeout must be a positive number of seconds, got {timeout:g}"
        raise UsageError(msg)
    if file is not None:
        if service or operation or params:
            msg = "give either --file or --service/--operation/--params, not both"
            raise UsageError(msg)
        numbered = _lines(file)
        jobs = [_job_from_line(line, n) for n, line in numbered]
        where = [f"line {n} (job {job.job_id})" for (n, _), job in zip(numbered, jobs, strict=True)]
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
        where = [""]
    if follow:
        jobs = [job if job.follow else job.model_copy(update={"follow": True}) for job in jobs]
    wait_s = timeout if timeout is not None else (None if follow else 60.0)
    failed = asyncio.run(_submit(jobs, where, wait=wait, follow=follow, timeout_s=wait_s))
    if failed:
        raise typer.Exit(EXIT_OPERATIONAL)


async def _submit(jobs: list[Any], where: list[str], *, wait: bool, follow: bool, timeout_s: float | None) -> int:
    from dispatcher.client import DispatcherClient  # noqa: PLC0415
    from dispatcher.errors import JobError  # noqa: PLC0415

    settings = _settings()
    failed = 0
    client = DispatcherClient(settings.amqp_url.get_secret_value(), jobs_exchange=settings.jobs_exchange)
    for job, place in zip(jobs, where, strict=True):  # every job is checked before any is published
        try:
            client.check(job)
        except JobError as exc:
            if not place:
                raise
            msg = f"{place}: {exc.code}: {exc.message}"
            raise UsageError(msg) from None
    async with client:
        with Progress(console=err, transient=True, disable=len(jobs) < 2 or not err.is_terminal) as progress:
            task = progress.add_task("publishing", total=len(jobs))
            for job in jobs:
                if wait:
                    try:
                        if follow:
                            document, ok = await _follow(client, job, timeout_s)
                        else:
                            document = await client.submit_and_wait(job, timeout_s=timeout_s or 60.0)
                            ok = document.get("outcome") == "succeeded"
                    except TimeoutError:
                        sys.stdout.write(job.job_id + "\n")
                        raise
                    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
                    failed += not ok
                else:
                    sys.stdout.write(await client.submit(job) + "\n")
                progress.advance(task)
    err.print(f"published {len(jobs)}, failed {failed}")
    return failed


async def _follow(client: Any, job: Any, timeout_s: float | None) -> tuple[dict[str, Any], bool]:  # noqa: ANN401
    """Wait for a followed job's end, showing its AWS status as it changes; its completion, or failed result."""

    def show(progress: dict[str, Any]) -> None:
        err.print(f"{job.job_id}: {progress.get('job_status')} (after {progress.get('polls')} polls)")

    followed = await client.submit_and_follow(job, timeout_s=timeout_s, on_status=show)
    if followed.completion is None:
        return followed.result, False
    err.print(f"{job.job_id}: {followed.completion.get('job_outcome')} ({followed.completion.get('job_status')})")
    return followed.completion, followed.succeeded


def _lines(path: Path) -> list[tuple[int, str]]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _exact_json(text: str) -> Any:  # noqa: ANN401 - any JSON
    """orjson's reading, but QuickSight's `InputPayload` keeps its numbers exactly as written."""
    from dispatcher.params import with_exact_json_payload  # noqa: PLC0415

    # orjson refuses a number beyond a double (`1e400`), which a JSON `InputPayload` may hold.
    return with_exact_json_payload(text) or orjson.loads(text)


def _job_from_line(line: str, number: int) -> Any:  # noqa: ANN401 - JobRequest, imported late
    from dispatcher.client import JobRequest  # noqa: PLC0415
    from dispatcher.errors import JobError  # noqa: PLC0415

    try:
        record = _exact_json(line)
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
    try:
        return JobRequest.model_validate(record)
    except JobError as exc:
        job = record.get("job_id") if isinstance(record.get("job_id"), str) else None
        msg = f"line {number}{f' (job {job})' if job else ''}: {exc.code}: {exc.message}"
        raise UsageError(msg) from None


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
    from dispatcher.params import with_exact_json_payload  # noqa: PLC0415

    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        # orjson refuses a number beyond a double (`1e400`), which a JSON `InputPayload` may hold.
        document = with_exact_json_payload(f'{{"params": {text}\n}}')
        return document["params"] if document is not None else orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        msg = f"--params is not valid JSON: {exc}"
        raise UsageError(msg) from None


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        msg = f"--metadata takes KEY=VALUE, got {item!r}"
        raise UsageError(msg)
    return key, value
