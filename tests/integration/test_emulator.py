"""The emulator against real aiobotocore clients over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import pytest_asyncio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ConnectionClosedError
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.emulator import (
    EmulatedOperation,
    FaultSettings,
    load_operations,
    registered_operations,
    start_emulator,
)
from dispatcher.operations import OperationSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from dispatcher.emulator import RunningEmulator
    from dispatcher.emulator.catalog import ParamsEntry

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MEMBERSHIP_ID = "0b5a3d5e-1c4f-4b8e-9a55-3f2d1c0b9a87"
TEMPLATE_ARN = f"arn:aws:cleanrooms:us-east-1:123456789012:membership/{MEMBERSHIP_ID}/analysistemplate/tpl1"

# routing key -> (service, client method, valid parameters)
VALID_CALLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "quicksight.StartAutomationJob": (
        "quicksight",
        "start_automation_job",
        {
            "AwsAccountId": "123456789012",
            "AutomationGroupId": "7c1e9f3a-2b4d-4e6f-8a0b-1c2d3e4f5a6b",
            "AutomationId": "1f2e3d4c-5b6a-4789-9abc-def012345678",
            "InputPayload": '{"report":"daily"}',
        },
    ),
    "lookoutequipment.StartDataIngestionJob": (
        "lookoutequipment",
        "start_data_ingestion_job",
        {
            "DatasetName": "pumps",
            "IngestionInputConfiguration": {"S3InputConfiguration": {"Bucket": "sensor-data"}},
            "RoleArn": "arn:aws:iam::123456789012:role/lookout-ingestion",
            "ClientToken": "job-lookout-1",
        },
    ),
    "datazone.StartDataSourceRun": (
        "datazone",
        "start_data_source_run",
        {"domainIdentifier": "dzd_4p9n6sw4qt9xgn", "dataSourceIdentifier": "5b5l2nkq0iyt4n", "clientToken": "job-dz-1"},
    ),
    "m2.StartBatchJob": (
        "m2",
        "start_batch_job",
        {"applicationId": "app-payroll", "batchJobIdentifier": {"fileBatchJobIdentifier": {"fileName": "PAYROLL.jcl"}}},
    ),
    "cleanrooms.StartProtectedJob": (
        "cleanrooms",
        "start_protected_job",
        {
            "type": "PYSPARK",
            "membershipIdentifier": MEMBERSHIP_ID,
            "jobParameters": {"analysisTemplateArn": TEMPLATE_ARN, "parameters": {"day": "2024-01-01"}},
        },
    ),
}


@pytest.fixture(scope="module")
def operations() -> tuple[EmulatedOperation, ...]:
    """Every registered operation."""
    return registered_operations()


@pytest_asyncio.fixture
async def emulator(operations: tuple[EmulatedOperation, ...]) -> AsyncIterator[RunningEmulator]:
    """An emulator on an ephemeral loopback port, with seeded fault dice."""
    async with start_emulator(operations=operations) as running:
        running.state.rng = random.Random(20240101)
        yield running


@asynccontextmanager
async def aws_client(emulator: RunningEmulator, service: str, region: str = "us-east-1") -> AsyncIterator[Any]:
    """An aiobotocore client pointed at the emulator, with botocore's retries off."""
    session = get_session()
    async with session.create_client(
        service,
        region_name=region,
        endpoint_url=emulator.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - the emulator ignores credentials
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as client:
        yield client


async def call(emulator: RunningEmulator, routing_key: str, **overrides: Any) -> dict[str, Any]:
    """Call an operation with its valid parameters, some replaced by `overrides`."""
    service, method, params = VALID_CALLS[routing_key]
    async with aws_client(emulator, service) as client:
        response: dict[str, Any] = await getattr(client, method)(**{**params, **overrides})
        return response


async def control(emulator: RunningEmulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the control API; the status and the JSON answer."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{emulator.url}/_emulator{path}", json=body) as response,
    ):
        return response.status, await response.json()


async def set_faults(emulator: RunningEmulator, routing_key: str, **settings: Any) -> None:
    """Put faults in force for one operation over the control API."""
    status, answer = await control(emulator, "PUT", f"/faults/{routing_key}", settings)
    assert status == 200, answer


async def calls_of(emulator: RunningEmulator, routing_key: str) -> list[dict[str, Any]]:
    """The call log of one operation, read over the control API."""
    _, answer = await control(emulator, "GET", f"/calls?routing_key={routing_key}")
    calls: list[dict[str, Any]] = answer["calls"]
    return calls


@pytest.mark.asyncio
async def test_quicksight_starts_an_automation_job(emulator: RunningEmulator) -> None:
    """QuickSight answers a job ARN under the automation, a uuid job id and its request id."""
    response = await call(emulator, "quicksight.StartAutomationJob")
    assert UUID.match(response["JobId"])
    assert response["Arn"].endswith(f"/automation/1f2e3d4c-5b6a-4789-9abc-def012345678/job/{response['JobId']}")
    assert response["Arn"].startswith("arn:aws:quicksight:us-east-1:123456789012:automation-group/")
    assert response["Status"] == 200
    assert response["RequestId"] == response["ResponseMetadata"]["RequestId"]


@pytest.mark.asyncio
# aiohttp's client warns about any body over 1 MiB sent as bytes, which is how botocore sends it.
@pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes:ResourceWarning")
async def test_quicksight_takes_a_payload_of_megabytes(emulator: RunningEmulator) -> None:
    """A 5 MB `InputPayload` (the API allows 7,000,000 characters) is read and validated, not refused as too large."""
    payload = json.dumps({"rows": ["x" * 100] * 50_000}, separators=(",", ":"))
    response = await call(emulator, "quicksight.StartAutomationJob", InputPayload=payload)
    assert response["Status"] == 200


@pytest.mark.asyncio
async def test_lookout_starts_an_ingestion_job(emulator: RunningEmulator) -> None:
    """Lookout for Equipment (JSON protocol) answers a 32-hex job id, in progress."""
    response = await call(emulator, "lookoutequipment.StartDataIngestionJob")
    assert re.fullmatch(r"[0-9a-f]{32}", response["JobId"])
    assert response["Status"] == "IN_PROGRESS"


@pytest.mark.asyncio
async def test_datazone_starts_a_data_source_run(emulator: RunningEmulator) -> None:
    """DataZone answers the run with its domain, data source, status and parsed timestamps."""
    response = await call(emulator, "datazone.StartDataSourceRun")
    assert response["domainId"] == "dzd_4p9n6sw4qt9xgn"
    assert response["dataSourceId"] == "5b5l2nkq0iyt4n"
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,36}", response["id"])
    assert (response["status"], response["type"]) == ("REQUESTED", "PRIORITIZED")
    assert isinstance(response["createdAt"], datetime)
    assert response["updatedAt"] == response["createdAt"]


@pytest.mark.asyncio
async def test_m2_starts_a_batch_job(emulator: RunningEmulator) -> None:
    """M2 answers a uuid execution id, the one the call log records."""
    response = await call(emulator, "m2.StartBatchJob")
    assert UUID.match(response["executionId"])
    [logged] = await calls_of(emulator, "m2.StartBatchJob")
    assert logged["job_id"] == response["executionId"]


@pytest.mark.asyncio
async def test_cleanrooms_starts_a_protected_job(emulator: RunningEmulator) -> None:
    """Clean Rooms answers a submitted protected job with every required member, in the caller's region."""
    async with aws_client(emulator, "cleanrooms", region="eu-west-1") as client:
        response = await client.start_protected_job(**VALID_CALLS["cleanrooms.StartProtectedJob"][2])
    job = response["protectedJob"]
    assert UUID.match(job["id"])
    assert job["membershipId"] == MEMBERSHIP_ID
    assert job["membershipArn"] == f"arn:aws:cleanrooms:eu-west-1:123456789012:membership/{MEMBERSHIP_ID}"
    assert job["status"] == "SUBMITTED"
    assert isinstance(job["createTime"], datetime)
    assert job["jobParameters"]["analysisTemplateArn"] == TEMPLATE_ARN


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "overrides", "code", "field"),
    [
        (
            "quicksight.StartAutomationJob",
            {"AwsAccountId": "abcdefghijkl"},
            "InvalidParameterValueException",
            "AwsAccountId",
        ),
        ("lookoutequipment.StartDataIngestionJob", {"DatasetName": "no spaces!"}, "ValidationException", "DatasetName"),
        (
            "datazone.StartDataSourceRun",
            {"domainIdentifier": "not-a-domain"},
            "ValidationException",
            "domainIdentifier",
        ),
        ("m2.StartBatchJob", {"applicationId": "two words"}, "ValidationException", "applicationId"),
        (
            "cleanrooms.StartProtectedJob",
            {"membershipIdentifier": "X" * 36},
            "ValidationException",
            "membershipIdentifier",
        ),
    ],
)
async def test_invalid_params_raise_the_modeled_validation_exception(
    emulator: RunningEmulator,
    routing_key: str,
    overrides: dict[str, Any],
    code: str,
    field: str,
) -> None:
    """Parameters botocore's model refuses raise the operation's modeled 400, naming the field."""
    service, method, params = VALID_CALLS[routing_key]
    async with aws_client(emulator, service) as client:
        with pytest.raises(getattr(client.exceptions, code)) as raised:
            await getattr(client, method)(**{**params, **overrides})
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"'{field}" in error["Error"]["Message"]
    [logged] = await calls_of(emulator, routing_key)
    assert (logged["outcome"], logged["error_code"], logged["new_job"]) == ("error", code, False)


@pytest.mark.asyncio
async def test_validation_exception_lists_the_failing_fields(emulator: RunningEmulator) -> None:
    """M2's `ValidationException` carries its modeled `fieldList` and `reason`."""
    async with aws_client(emulator, "m2") as client:
        with pytest.raises(client.exceptions.ValidationException) as raised:
            await client.start_batch_job(
                applicationId="has space",
                batchJobIdentifier={"scriptBatchJobIdentifier": {"scriptName": "RUN.sh"}},
                jobParams={"1bad": "x"},
            )
    error = raised.value.response
    assert error["reason"] == "fieldValidationFailed"
    names = sorted(field["name"] for field in error["fieldList"])
    assert len(names) == 2
    assert names[0] == "applicationId"
    assert names[1].startswith("jobParams.1bad")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "code", "status"),
    [
        ("quicksight.StartAutomationJob", "InternalFailureException", 500),
        ("lookoutequipment.StartDataIngestionJob", "InternalServerException", 500),
        ("lookoutequipment.StartDataIngestionJob", "AccessDeniedException", 400),
        ("datazone.StartDataSourceRun", "ServiceQuotaExceededException", 402),
        ("m2.StartBatchJob", "ConflictException", 409),
        ("cleanrooms.StartProtectedJob", "ResourceNotFoundException", 404),
    ],
)
async def test_injected_errors_parse_into_modeled_exceptions(
    emulator: RunningEmulator,
    routing_key: str,
    code: str,
    status: int,
) -> None:
    """An injected error raises its modeled exception class, with the model's HTTP status."""
    await set_faults(emulator, routing_key, error_rate=1.0, error_code=code)
    service, method, params = VALID_CALLS[routing_key]
    async with aws_client(emulator, service) as client:
        with pytest.raises(getattr(client.exceptions, code)) as raised:
            await getattr(client, method)(**params)
    metadata = raised.value.response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == status
    assert metadata["RequestId"]
    [logged] = await calls_of(emulator, routing_key)
    assert (logged["outcome"], logged["error_code"], logged["job_id"]) == ("error", code, None)


@pytest.mark.asyncio
async def test_default_injected_error_is_the_internal_error(emulator: RunningEmulator) -> None:
    """Without an `error_code`, the error rate answers the operation's own internal server error."""
    await set_faults(emulator, "cleanrooms.StartProtectedJob", error_rate=1.0)
    async with aws_client(emulator, "cleanrooms") as client:
        with pytest.raises(client.exceptions.InternalServerException) as raised:
            await client.start_protected_job(**VALID_CALLS["cleanrooms.StartProtectedJob"][2])
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "token_member", "id_member"),
    [
        ("lookoutequipment.StartDataIngestionJob", "ClientToken", "JobId"),
        ("datazone.StartDataSourceRun", "clientToken", "id"),
    ],
)
async def test_same_token_and_params_replay_the_same_job(
    emulator: RunningEmulator,
    routing_key: str,
    token_member: str,
    id_member: str,
) -> None:
    """A second call with the same token and parameters answers the first job and starts none."""
    first = await call(emulator, routing_key, **{token_member: "token-a"})
    second = await call(emulator, routing_key, **{token_member: "token-a"})
    assert second[id_member] == first[id_member]
    assert second["ResponseMetadata"]["HTTPStatusCode"] == 200
    logged = await calls_of(emulator, routing_key)
    assert [(entry["outcome"], entry["new_job"]) for entry in logged] == [("started", True), ("replayed", False)]
    assert {entry["idempotency_token"] for entry in logged} == {"token-a"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "token_member", "changed"),
    [
        ("lookoutequipment.StartDataIngestionJob", "ClientToken", {"DatasetName": "valves"}),
        ("datazone.StartDataSourceRun", "clientToken", {"dataSourceIdentifier": "otherSource"}),
    ],
)
async def test_same_token_with_other_params_conflicts(
    emulator: RunningEmulator,
    routing_key: str,
    token_member: str,
    changed: dict[str, Any],
) -> None:
    """Reusing a token with other parameters raises `ConflictException` and starts nothing."""
    await call(emulator, routing_key, **{token_member: "token-b"})
    service, method, params = VALID_CALLS[routing_key]
    async with aws_client(emulator, service) as client:
        with pytest.raises(client.exceptions.ConflictException):
            await getattr(client, method)(**{**params, token_member: "token-b", **changed})
    logged = await calls_of(emulator, routing_key)
    assert sum(entry["new_job"] for entry in logged) == 1


@pytest.mark.asyncio
async def test_operations_without_token_start_a_job_per_call(emulator: RunningEmulator) -> None:
    """M2 has no idempotency token: identical calls start distinct jobs."""
    first = await call(emulator, "m2.StartBatchJob")
    second = await call(emulator, "m2.StartBatchJob")
    assert first["executionId"] != second["executionId"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "status"),
    [("m2.StartBatchJob", 429), ("lookoutequipment.StartDataIngestionJob", 400)],
)
async def test_calls_above_the_rate_limit_are_throttled(
    emulator: RunningEmulator, routing_key: str, status: int
) -> None:
    """Beyond the burst, calls raise `ThrottlingException` with the model's status (M2 adds `Retry-After`)."""
    await set_faults(emulator, routing_key, rate_limit_per_s=0.5, rate_limit_burst=2)
    service, method, params = VALID_CALLS[routing_key]
    async with aws_client(emulator, service) as client:
        for _ in range(2):
            await getattr(client, method)(**params)
        with pytest.raises(client.exceptions.ThrottlingException) as raised:
            await getattr(client, method)(**params)
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    if service == "m2":
        assert int(error["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
        assert error["retryAfterSeconds"] >= 1


@pytest.mark.asyncio
async def test_error_rate_fails_a_share_of_calls(emulator: RunningEmulator) -> None:
    """An error rate of 30% fails some of 60 calls and lets the others start jobs."""
    await set_faults(emulator, "m2.StartBatchJob", error_rate=0.3, error_code="InternalServerException")
    service, method, params = VALID_CALLS["m2.StartBatchJob"]
    async with aws_client(emulator, service) as client:
        results = await asyncio.gather(*(getattr(client, method)(**params) for _ in range(60)), return_exceptions=True)
    failed = [result for result in results if isinstance(result, client.exceptions.InternalServerException)]
    started = [result for result in results if isinstance(result, dict)]
    assert len(failed) + len(started) == 60
    assert 6 <= len(failed) <= 30


@pytest.mark.asyncio
async def test_latency_delays_answers(emulator: RunningEmulator) -> None:
    """Fixed latency plus jitter delays an answer by at least the fixed part."""
    _, _, params = VALID_CALLS["m2.StartBatchJob"]
    async with aws_client(emulator, "m2") as client:
        await client.start_batch_job(**params)  # opens the connection before timing
        await set_faults(emulator, "m2.StartBatchJob", latency_ms=300, jitter_ms=100)
        started_s = time.monotonic()
        await client.start_batch_job(**params)
        elapsed_s = time.monotonic() - started_s
    assert 0.3 <= elapsed_s < 3


@pytest.mark.asyncio
async def test_drop_before_start_starts_no_job(emulator: RunningEmulator) -> None:
    """A connection dropped before the start raises `ConnectionClosedError` and leaves no job."""
    await set_faults(emulator, "m2.StartBatchJob", drop_rate=1.0, drop_phase="before_start")
    with pytest.raises(ConnectionClosedError):
        await call(emulator, "m2.StartBatchJob")
    [logged] = await calls_of(emulator, "m2.StartBatchJob")
    assert (logged["outcome"], logged["job_id"], logged["new_job"]) == ("dropped", None, False)


@pytest.mark.asyncio
async def test_drop_after_start_leaves_a_started_job(emulator: RunningEmulator) -> None:
    """A connection dropped after the start raises `ConnectionClosedError`, yet the log shows a new job."""
    await set_faults(emulator, "m2.StartBatchJob", drop_rate=1.0, drop_phase="after_start")
    with pytest.raises(ConnectionClosedError):
        await call(emulator, "m2.StartBatchJob")
    [logged] = await calls_of(emulator, "m2.StartBatchJob")
    assert logged["outcome"] == "dropped"
    assert logged["new_job"] is True
    assert UUID.match(logged["job_id"])


@pytest.mark.asyncio
async def test_retry_after_a_lost_answer_replays_the_tokened_job(emulator: RunningEmulator) -> None:
    """Retrying a token whose answer was lost answers the job already started; it was started once."""
    routing_key = "lookoutequipment.StartDataIngestionJob"
    await set_faults(emulator, routing_key, drop_rate=1.0, drop_phase="after_start")
    with pytest.raises(ConnectionClosedError):
        await call(emulator, routing_key)
    status, _ = await control(emulator, "DELETE", f"/faults/{routing_key}")
    assert status == 200
    response = await call(emulator, routing_key)
    logged = await calls_of(emulator, routing_key)
    assert [entry["job_id"] for entry in logged] == [response["JobId"]] * 2
    assert [entry["new_job"] for entry in logged] == [True, False]


@pytest.mark.asyncio
async def test_call_log_filters_by_operation_and_resets(emulator: RunningEmulator) -> None:
    """The call log numbers every call, filters by routing key, and is emptied by a reset."""
    await call(emulator, "m2.StartBatchJob")
    await call(emulator, "datazone.StartDataSourceRun")
    _, everything = await control(emulator, "GET", "/calls")
    assert everything["total"] == 2
    assert [entry["seq"] for entry in everything["calls"]] == [1, 2]
    assert [entry["routing_key"] for entry in await calls_of(emulator, "datazone.StartDataSourceRun")] == [
        "datazone.StartDataSourceRun",
    ]
    status, _ = await control(emulator, "POST", "/reset")
    assert status == 200
    _, after_reset = await control(emulator, "GET", "/calls")
    assert after_reset == {"total": 0, "calls": []}


@pytest.mark.asyncio
async def test_call_log_redacts_sensitive_params(emulator: RunningEmulator) -> None:
    """Parameters the model marks sensitive are shown redacted in the call log, the others as sent."""
    await call(emulator, "quicksight.StartAutomationJob")
    [logged] = await calls_of(emulator, "quicksight.StartAutomationJob")
    assert logged["params"]["InputPayload"] == "<redacted>"
    assert logged["params"]["AwsAccountId"] == "123456789012"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body", "complaint"),
    [
        ("/faults/s3.PutObject", {"error_rate": 0.5}, "serves no operation"),
        ("/faults/m2.StartBatchJob", {"error_rate": 1, "error_code": "TeapotException"}, "models no error"),
        ("/faults/m2.StartBatchJob", {"error_rate": 2}, "error_rate"),
        ("/faults", {"m2.StartBatchJob": {"latency": 5}}, "latency"),
    ],
)
async def test_control_api_refuses_bad_faults(
    emulator: RunningEmulator,
    path: str,
    body: dict[str, Any],
    complaint: str,
) -> None:
    """Faults naming an unknown operation, an unmodeled error or a bad setting answer 400 and change nothing."""
    status, answer = await control(emulator, "PUT", path, body)
    assert status == 400
    assert complaint in answer["error"]
    _, faults = await control(emulator, "GET", "/faults")
    assert faults == {}


@pytest.mark.asyncio
async def test_reset_restores_the_startup_faults(operations: tuple[EmulatedOperation, ...]) -> None:
    """A reset puts back the faults the emulator started with, dropping those set at run time."""
    startup = {"m2.StartBatchJob": FaultSettings(latency_ms=5)}
    async with start_emulator(operations=operations, faults=startup) as emulator:
        status, _ = await control(emulator, "PUT", "/faults", {"datazone.StartDataSourceRun": {"error_rate": 0.5}})
        assert status == 200
        _, during = await control(emulator, "GET", "/faults")
        assert during == {"datazone.StartDataSourceRun": {"error_rate": 0.5}}
        _, after = await control(emulator, "POST", "/reset")
        assert after == {"m2.StartBatchJob": {"latency_ms": 5.0}}


@pytest.mark.asyncio
async def test_unknown_json_target_is_an_unknown_operation(emulator: RunningEmulator) -> None:
    """A JSON-protocol call to an operation the emulator does not serve answers `UnknownOperationException`."""
    headers = {"X-Amz-Target": "AWSLookoutEquipmentFrontendService.DeleteDataset"}
    async with aiohttp.ClientSession() as http, http.post(emulator.url, data=b"{}", headers=headers) as response:
        body = await response.json(content_type=None)
        assert response.status == 400
        assert response.headers["x-amzn-RequestId"]
    assert body["__type"] == "UnknownOperationException"


class _EmrServerlessStartJobRunParams(BaseModel):
    """A stand-in for a generated model: just enough to validate."""

    model_config = ConfigDict(extra="allow")

    applicationId: str = Field(pattern=r"^[0-9a-z]+$")  # noqa: N815 - AWS's member name
    clientToken: str  # noqa: N815 - AWS's member name
    executionRoleArn: str  # noqa: N815 - AWS's member name


class _StandInEntry:
    """A `ParamsEntry` for an operation the registry does not hold."""

    params_model = _EmrServerlessStartJobRunParams
    idempotency_token_member = "clientToken"  # noqa: S105 - a member name, not a secret
    sensitive_paths = ()


@pytest.mark.asyncio
async def test_a_new_registry_entry_is_served_without_new_code() -> None:
    """An operation with no builder gets its route, validation, idempotency and a parseable answer from the model."""
    entries: dict[tuple[str, str], ParamsEntry] = {("emr-serverless", "StartJobRun"): _StandInEntry()}
    operations = load_operations([OperationSpec("emr-serverless", "StartJobRun")], entries)
    async with start_emulator(operations=operations) as emulator, aws_client(emulator, "emr-serverless") as client:
        params = {"applicationId": "00f1abc", "clientToken": "run-1", "executionRoleArn": "arn:aws:iam::1:role/r"}
        first = await client.start_job_run(**params)
        again = await client.start_job_run(**params)
        with pytest.raises(client.exceptions.ValidationException):
            await client.start_job_run(**{**params, "applicationId": "BAD_ID"})
    assert first["jobRunId"] == again["jobRunId"]
    assert first["jobRunId"] == emulator.state.calls.to_json()[0]["job_id"]
    assert first["arn"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_emulator_serves_until_signalled(tmp_path: Path, signum: signal.Signals) -> None:
    """`run_emulator` serves with the faults file's faults and exits cleanly on SIGTERM and SIGINT."""
    faults_file = tmp_path / "faults.json"
    faults_file.write_text(json.dumps({"m2.StartBatchJob": {"error_rate": 0.05}}))
    port = _free_port()
    code = (
        "from pathlib import Path; from dispatcher.emulator import run_emulator; "
        f"run_emulator('127.0.0.1', {port}, Path({str(faults_file)!r}))"
    )
    with subprocess.Popen([sys.executable, "-c", code]) as process:
        faults = asyncio.run(_wait_for_faults(f"http://127.0.0.1:{port}"))
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
    assert faults == {"m2.StartBatchJob": {"error_rate": 0.05}}


async def _wait_for_faults(url: str) -> Any:
    """Poll the control API until the emulator answers; its faults."""
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{url}/_emulator/faults") as response:
                    return await response.json()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    pytest.fail("the emulator never answered")
