"""Publishing as a publisher meets it: `dispatcher submit` and `DispatcherClient` errors that say what to fix."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from pydantic import ValidationError

from dispatcher.cli_submit import _job_from_line, _json_arg
from dispatcher.client import DispatcherClient, JobRequest
from dispatcher.errors import JobError
from dispatcher.examples import example_job
from tests.integration.support import REPO_ROOT

M2 = "m2.StartBatchJob"
QUICKSIGHT = "quicksight.StartAutomationJob"
BIG = "123456789012345678901234567890"
LONG = "0.1000000000000000055511151231257827"


def cli(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m dispatcher ARGS` with these DISPATCHER_* variables (and no others)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        env={**clean, "COLUMNS": "400", **env},
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def line(routing_key: str, job_id: str, **params: object) -> str:
    """One JSON Lines record: the example job with these params changed."""
    job = example_job(routing_key, job_id)
    job["params"].update(params)
    return orjson.dumps(job).decode()


def test_job_request_raises_the_documented_job_error():
    """A request that cannot be built raises JobError (InvalidJobMessage), not pydantic's ValidationError."""
    with pytest.raises(JobError) as caught:
        JobRequest(service="m2", operation="StartBatchJob", params="not an object", colour="red")  # type: ignore[arg-type, call-arg]
    assert not isinstance(caught.value, ValidationError)
    assert caught.value.code == "InvalidJobMessage"
    assert "params: " in caught.value.message
    assert "colour: Extra inputs are not permitted" in caught.value.message


def test_params_keep_input_payload_numbers_exactly():
    """--params and --file lines keep QuickSight's InputPayload numbers beyond 64 bits or 17 digits."""
    params = example_job(QUICKSIGHT, "j")["params"]
    text = orjson.dumps({**params, "InputPayload": "PAYLOAD"}).decode()
    text = text.replace('"PAYLOAD"', f'{{"n": {BIG}, "d": {LONG}, "e": 1e400}}')
    from_arg = JobRequest(service="quicksight", operation="StartAutomationJob", params=_json_arg(text))
    record = orjson.dumps(example_job(QUICKSIGHT, "j-2")).decode()
    record = record.replace(orjson.dumps(params["InputPayload"]).decode(), f'{{"n": {BIG}, "d": {LONG}}}')
    from_file = _job_from_line(record, 1)
    for job in (from_arg, from_file):
        body = job.body()
        assert BIG.encode() in body
        assert LONG.encode() in body
        DispatcherClient("amqp://unused/").check(job)


def test_file_error_names_the_line_and_the_job():
    """A bad job in --file says which line and which job, before anything is published."""
    lines = [line(M2, "good-1"), line(M2, "bad-2", applicationId=""), line(M2, "good-3")]
    run = cli("submit", "--file", "-", stdin="\n".join(lines) + "\n")
    assert run.returncode == 2, run.stderr
    assert "line 2 (job bad-2): InvalidParameters: params.applicationId" in run.stderr


def test_file_envelope_error_names_the_line_and_the_job(tmp_path):
    """An unknown field on a line is reported with its line number and job."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(line(M2, "good-1") + "\n\n" + line(M2, "bad-3")[:-1] + ', "colour": "red"}\n')
    run = cli("submit", "--file", str(jobs))
    assert run.returncode == 2, run.stderr
    assert "line 3 (job bad-3): InvalidJobMessage: colour: Extra inputs are not permitted" in run.stderr


def test_negative_timeout_is_refused():
    """--timeout must be positive."""
    run = cli(
        "submit", "--service", "m2", "--operation", "StartBatchJob", "--params", "{}", "--wait", "--timeout", "-1"
    )
    assert run.returncode == 2, run.stderr
    assert "--timeout must be a positive number of seconds" in run.stderr


async def test_client_refuses_a_timeout_that_is_not_positive():
    """`submit_and_wait` refuses a timeout of zero or less before publishing."""
    client = DispatcherClient("amqp://unused/")
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        await client.submit_and_wait(JobRequest.model_validate(example_job(M2, "j")), timeout_s=0)


async def test_wait_timing_out_prints_the_job_id(amqp_url, prefix, declare):
    """With no worker, --wait times out: the published job id is printed and the error names it."""
    await declare()
    run = cli(
        "submit",
        "--file",
        "-",
        "--wait",
        "--timeout",
        "0.5",
        stdin=line(M2, "waited-for-1") + "\n",
        DISPATCHER_AMQP_URL=amqp_url,
        DISPATCHER_JOBS_EXCHANGE=f"{prefix}.jobs",
    )
    assert run.returncode == 1, run.stderr
    assert run.stdout.strip() == "waited-for-1"
    assert "no result for job waited-for-1 (m2.StartBatchJob) within 0.5 s" in run.stderr
