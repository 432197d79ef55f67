"""Emulated jobs move through their statuses and are read back by real aiobotocore Describe/Get calls."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import aiohttp
import pytest
import pytest_asyncio
from botocore import xform_name
from botocore.exceptions import ConnectionClosedError
from pydantic import BaseModel, ConfigDict

from dispatcher.emulator import LifecycleSettings, load_operations, registered_operations, start_emulator
from dispatcher.operations import OPERATION_SPECS, Companion, JobOutcome, OperationSpec
from tests.integration.test_emulator import (
    MEMBERSHIP_ID,
    TEMPLATE_ARN,
    UUID,
    VALID_CALLS,
    aws_client,
    calls_of,
    control,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from dispatcher.emulator import EmulatedOperation, RunningEmulator
    from dispatcher.emulator.catalog import ParamsEntry

SPECS = {spec.routing_key: spec for spec in OPERATION_SPECS}
SHORT_S = 0.4
"""A job duration the tests wait out."""


@pytest.fixture(scope="module")
def operations() -> tuple[EmulatedOperation, ...]:
    """Every registered operation."""
    return registered_operations()


@pytest_asyncio.fixture
async def emulator(operations: tuple[EmulatedOperation, ...]) -> AsyncIterator[RunningEmulator]:
    """An emulator whose jobs end after `SHORT_S` seconds."""
    lifecycle = {"default": LifecycleSettings(duration_s=SHORT_S)}
    async with start_emulator(operations=operations, lifecycle=lifecycle) as running:
        yield running


class Followed:
    """One job started through a real client and read back through its Describe call."""

    def __init__(self, client: Any, routing_key: str, params: dict[str, Any], response: dict[str, Any]) -> None:
        self.client = client
        self.routing_key = routing_key
        self.spec = SPECS[routing_key]
        assert self.spec.companion is not None
        self.companion = self.spec.companion
        identifiers = self.companion.identifiers(params, response)
        assert identifiers is not None
        self.identifiers = identifiers
        self.response = response

    async def describe(self, **extra: Any) -> dict[str, Any]:
        """The Describe answer, as botocore parsed it."""
        method = getattr(self.client, xform_name(self.companion.operation))
        answer: dict[str, Any] = await method(**self.identifiers, **extra)
        return answer

    async def status(self) -> str | None:
        """The job's status, read where the registry says it is."""
        return self.companion.status_of(await self.describe())


@asynccontextmanager
async def started(emulator: RunningEmulator, routing_key: str, **overrides: Any) -> AsyncIterator[Followed]:
    """A job of `routing_key` started with its valid parameters; its client stays open for Describe calls."""
    service, method, params = VALID_CALLS[routing_key]
    params = {**params, **overrides}
    async with aws_client(emulator, service) as client:
        response = await getattr(client, method)(**params)
        yield Followed(client, routing_key, params, response)


async def settle() -> None:
    """Wait until jobs of `SHORT_S` have ended."""
    await asyncio.sleep(SHORT_S + 0.3)


async def put_lifecycle(emulator: RunningEmulator, key: str, **settings: Any) -> None:
    """Put lifecycle settings in force over the control API."""
    status, answer = await control(emulator, "PUT", f"/lifecycle/{key}", settings)
    assert status == 200, answer


@pytest.mark.asyncio
async def test_quicksight_job_is_queued_then_runs_then_succeeds(operations: tuple[EmulatedOperation, ...]) -> None:
    """A QuickSight job answers QUEUED, then RUNNING with `StartedAt`, then SUCCEEDED with `EndedAt`."""
    lifecycle = {"default": LifecycleSettings(duration_s=4)}
    async with (
        start_emulator(operations=operations, lifecycle=lifecycle) as emulator,
        started(emulator, "quicksight.StartAutomationJob") as job,
    ):
        queued = await job.describe()
        await asyncio.sleep(2.4)
        running = await job.describe()
        await asyncio.sleep(2.0)
        done = await job.describe()
    assert (queued["JobStatus"], "StartedAt" in queued, "EndedAt" in queued) == ("QUEUED", False, False)
    assert (running["JobStatus"], "EndedAt" in running) == ("RUNNING", False)
    assert done["JobStatus"] == "SUCCEEDED"
    assert queued["CreatedAt"] < running["StartedAt"] < done["EndedAt"]
    assert done["StartedAt"] == running["StartedAt"]
    assert (done["EndedAt"] - done["CreatedAt"]).total_seconds() == pytest.approx(4, abs=0.01)
    assert done["Arn"] == job.response["Arn"]
    assert done["RequestId"] == done["ResponseMetadata"]["RequestId"]


@pytest.mark.asyncio
async def test_quicksight_describe_includes_payloads_on_request(emulator: RunningEmulator) -> None:
    """`IncludeInputPayload` answers the payload the job started with; a succeeded job has an output payload."""
    async with started(emulator, "quicksight.StartAutomationJob") as job:
        running = await job.describe(IncludeInputPayload=True, IncludeOutputPayload=True)
        await settle()
        done = await job.describe(IncludeInputPayload=True, IncludeOutputPayload=True)
        without = await job.describe()
    assert running["InputPayload"] == VALID_CALLS["quicksight.StartAutomationJob"][2]["InputPayload"]
    assert "OutputPayload" not in running
    assert json.loads(done["OutputPayload"]) == {"emulated": True}
    assert "InputPayload" not in without
    assert "OutputPayload" not in without


@pytest.mark.asyncio
async def test_lookout_ingestion_job_reports_its_dataset_and_summary(emulator: RunningEmulator) -> None:
    """Lookout answers the started job's dataset, input and role, and its ingestion summary once SUCCESS."""
    async with started(emulator, "lookoutequipment.StartDataIngestionJob") as job:
        going = await job.describe()
        await settle()
        done = await job.describe()
    params = VALID_CALLS["lookoutequipment.StartDataIngestionJob"][2]
    assert going["JobId"] == job.response["JobId"]
    assert going["Status"] in {"IN_PROGRESS", "IMPORT_IN_PROGRESS"}
    assert "IngestedFilesSummary" not in going
    assert going["DatasetArn"].startswith("arn:aws:lookoutequipment:us-east-1:123456789012:dataset/pumps/")
    assert done["DatasetArn"] == going["DatasetArn"]
    assert done["IngestionInputConfiguration"] == params["IngestionInputConfiguration"]
    assert done["RoleArn"] == params["RoleArn"]
    assert done["Status"] == "SUCCESS"
    assert done["IngestedFilesSummary"]["IngestedNumberOfFiles"] == done["IngestedFilesSummary"]["TotalNumberOfFiles"]
    assert done["DataQualitySummary"]["MissingSensorData"]["AffectedSensorCount"] == 0
    assert done["DataStartTime"] < done["DataEndTime"] < done["CreatedAt"]


@pytest.mark.asyncio
async def test_datazone_run_keeps_its_ids_and_reports_its_times(emulator: RunningEmulator) -> None:
    """DataZone answers the run's domain, data source and project as started, and its run times."""
    async with started(emulator, "datazone.StartDataSourceRun") as job:
        await settle()
        done = await job.describe()
    start = job.response
    same = ("domainId", "dataSourceId", "id", "projectId", "type", "createdAt")
    assert {name: done[name] for name in same} == {name: start[name] for name in same}
    assert done["status"] == "SUCCESS"
    assert done["createdAt"] < done["startedAt"] < done["stoppedAt"]
    assert done["updatedAt"] == done["stoppedAt"]
    assert done["runStatisticsForAssets"]["added"] == 1
    assert "errorMessage" not in done


@pytest.mark.asyncio
async def test_m2_execution_reports_the_batch_job_it_runs(emulator: RunningEmulator) -> None:
    """M2 answers the application, the execution, the batch job identifier and a return code once ended."""
    async with started(emulator, "m2.StartBatchJob") as job:
        await settle()
        done = await job.describe()
    params = VALID_CALLS["m2.StartBatchJob"][2]
    assert (done["applicationId"], done["executionId"]) == (params["applicationId"], job.response["executionId"])
    assert done["batchJobIdentifier"] == params["batchJobIdentifier"]
    assert (done["jobName"], done["jobType"]) == ("PAYROLL", "JES2")
    assert done["jobId"].startswith("JOB")
    assert (done["status"], done["returnCode"]) == ("Succeeded", "0000")
    assert (done["endTime"] - done["startTime"]).total_seconds() == pytest.approx(SHORT_S, abs=0.01)


@pytest.mark.asyncio
async def test_cleanrooms_job_reports_statistics_and_result(emulator: RunningEmulator) -> None:
    """Clean Rooms answers the protected job as started, then its statistics and result once SUCCESS."""
    async with started(emulator, "cleanrooms.StartProtectedJob") as job:
        await settle()
        done = (await job.describe())["protectedJob"]
    start = job.response["protectedJob"]
    assert {key: done[key] for key in start} == {**start, "status": "SUCCESS"}
    assert done["membershipId"] == MEMBERSHIP_ID
    assert done["jobParameters"]["analysisTemplateArn"] == TEMPLATE_ARN
    assert done["statistics"]["totalDurationInMillis"] == pytest.approx(SHORT_S * 1000, abs=10)
    assert done["result"]["output"]["memberList"] == [{"accountId": "123456789012"}]
    assert UUID.match(done["id"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "settings", "status", "outcome"),
    [
        ("quicksight.StartAutomationJob", {"failure_rate": 1}, "FAILED", JobOutcome.FAILED),
        ("quicksight.StartAutomationJob", {"cancel_rate": 1}, "STOPPED", JobOutcome.CANCELLED),
        ("lookoutequipment.StartDataIngestionJob", {"failure_rate": 1}, "FAILED", JobOutcome.FAILED),
        ("datazone.StartDataSourceRun", {"warning_rate": 1}, "PARTIALLY_SUCCEEDED", JobOutcome.SUCCEEDED),
        ("datazone.StartDataSourceRun", {"failure_rate": 1}, "FAILED", JobOutcome.FAILED),
        ("m2.StartBatchJob", {"warning_rate": 1}, "Succeeded With Warning", JobOutcome.SUCCEEDED),
        ("m2.StartBatchJob", {"failure_rate": 1}, "Failed", JobOutcome.FAILED),
        ("m2.StartBatchJob", {"cancel_rate": 1}, "Cancelled", JobOutcome.CANCELLED),
        ("cleanrooms.StartProtectedJob", {"failure_rate": 1}, "FAILED", JobOutcome.FAILED),
        ("cleanrooms.StartProtectedJob", {"cancel_rate": 1}, "CANCELLED", JobOutcome.CANCELLED),
    ],
)
async def test_jobs_end_as_the_lifecycle_settings_say(
    emulator: RunningEmulator,
    routing_key: str,
    settings: dict[str, Any],
    status: str,
    outcome: JobOutcome,
) -> None:
    """A share of 1 makes every job end in that way, in a terminal status the registry maps to the outcome."""
    await put_lifecycle(emulator, routing_key, duration_s=SHORT_S, **settings)
    async with started(emulator, routing_key) as job:
        await settle()
        answer = await job.describe()
    assert job.companion.status_of(answer) == status
    assert job.companion.terminal[status] is outcome


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "member", "expected"),
    [
        ("lookoutequipment.StartDataIngestionJob", "FailedReason", "The emulator made this job fail."),
        ("datazone.StartDataSourceRun", "errorMessage", {"errorType": "INTERNAL_SERVER_EXCEPTION"}),
        ("m2.StartBatchJob", "returnCode", "0012"),
        ("cleanrooms.StartProtectedJob", "protectedJob.error", {"code": "JobFailed"}),
    ],
)
async def test_failed_jobs_say_why(emulator: RunningEmulator, routing_key: str, member: str, expected: Any) -> None:
    """A failed job carries its operation's failure member."""
    await put_lifecycle(emulator, routing_key, duration_s=0, failure_rate=1)
    async with started(emulator, routing_key) as job:
        answer = await job.describe()
    value = answer
    for part in member.split("."):
        value = value[part]
    if isinstance(expected, dict):
        assert {key: value[key] for key in expected} == expected
    else:
        assert value == expected


@pytest.mark.asyncio
async def test_m2_cancelled_job_passes_through_cancelling(emulator: RunningEmulator) -> None:
    """An M2 job to be cancelled answers `Cancelling` before `Cancelled`, and never `Succeeded`."""
    await put_lifecycle(emulator, "m2.StartBatchJob", duration_s=1.0, cancel_rate=1)
    seen = []
    async with started(emulator, "m2.StartBatchJob") as job:
        for _ in range(14):
            seen.append(await job.status())
            await asyncio.sleep(0.1)
    path = ["Submitting", "Holding", "Dispatching", "Running", "Cancelling", "Cancelled"]
    distinct = list(dict.fromkeys(seen))
    assert distinct == [status for status in path if status in distinct]
    assert "Cancelling" in distinct
    assert distinct[-1] == "Cancelled"


@pytest.mark.asyncio
async def test_never_ending_jobs_stay_running(emulator: RunningEmulator) -> None:
    """A job that never ends stays in its last running status after its duration, with no end time."""
    await put_lifecycle(emulator, "m2.StartBatchJob", duration_s=0.2, never_end_rate=1)
    async with started(emulator, "m2.StartBatchJob") as job:
        await settle()
        answer = await job.describe()
    assert answer["status"] == "Running"
    assert "endTime" not in answer
    assert "returnCode" not in answer


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "unknown_id", "status"),
    [
        ("quicksight.StartAutomationJob", str(uuid4()), 404),
        ("lookoutequipment.StartDataIngestionJob", uuid4().hex, 400),
        ("datazone.StartDataSourceRun", "neverstarted1", 404),
        ("m2.StartBatchJob", str(uuid4()), 404),
        ("cleanrooms.StartProtectedJob", str(uuid4()), 404),
    ],
)
async def test_unknown_jobs_raise_the_modeled_not_found(
    emulator: RunningEmulator, routing_key: str, unknown_id: str, status: int
) -> None:
    """A Describe of a job never started raises `ResourceNotFoundException` with the model's status."""
    async with started(emulator, routing_key) as job:
        job_member, _ = job.companion.parameters[-1]
        job.identifiers = {**job.identifiers, job_member: unknown_id}
        with pytest.raises(job.client.exceptions.ResourceNotFoundException) as raised:
            await job.describe()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    logged = await calls_of(emulator, job.spec.companion_routing_key or "")
    assert [(entry["outcome"], entry["error_code"]) for entry in logged] == [("error", "ResourceNotFoundException")]


@pytest.mark.asyncio
async def test_a_job_of_another_parent_is_not_found(emulator: RunningEmulator) -> None:
    """M2 finds an execution only under the application that started it."""
    async with started(emulator, "m2.StartBatchJob") as job:
        job.identifiers = {**job.identifiers, "applicationId": "other-app"}
        with pytest.raises(job.client.exceptions.ResourceNotFoundException):
            await job.describe()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "bad", "code"),
    [
        ("quicksight.StartAutomationJob", {"JobId": "not-a-uuid"}, "InvalidParameterValueException"),
        ("lookoutequipment.StartDataIngestionJob", {"JobId": "not-hex"}, "ValidationException"),
        ("m2.StartBatchJob", {"executionId": "two words"}, "ValidationException"),
        ("cleanrooms.StartProtectedJob", {"protectedJobIdentifier": "X" * 36}, "ValidationException"),
    ],
)
async def test_invalid_describe_params_raise_the_modeled_validation_error(
    emulator: RunningEmulator, routing_key: str, bad: dict[str, str], code: str
) -> None:
    """Identifiers the Describe model refuses answer its validation error, naming the member."""
    async with started(emulator, routing_key) as job:
        job.identifiers = {**job.identifiers, **bad}
        with pytest.raises(getattr(job.client.exceptions, code)) as raised:
            await job.describe()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"'{next(iter(bad))}'" in raised.value.response["Error"]["Message"]


@pytest.mark.asyncio
async def test_describe_calls_are_logged_as_described(emulator: RunningEmulator) -> None:
    """A Describe call is one call log entry under its own routing key, naming the job."""
    async with started(emulator, "m2.StartBatchJob") as job:
        await job.describe()
    [logged] = await calls_of(emulator, "m2.GetBatchJobExecution")
    assert (logged["outcome"], logged["job_id"], logged["http_status"]) == (
        "described",
        job.response["executionId"],
        200,
    )
    assert logged["params"] == job.identifiers


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("routing_key", "code", "status"),
    [
        ("m2.GetBatchJobExecution", "AccessDeniedException", 403),
        ("quicksight.DescribeAutomationJob", "AccessDeniedException", 401),
        ("datazone.GetDataSourceRun", "ResourceNotFoundException", 404),
        ("lookoutequipment.DescribeDataIngestionJob", "InternalServerException", 500),
    ],
)
async def test_faults_apply_to_describe_calls(
    emulator: RunningEmulator, routing_key: str, code: str, status: int
) -> None:
    """Faults keyed by the Describe routing key inject its modeled errors, and leave the start alone."""
    status_code, answer = await control(
        emulator, "PUT", f"/faults/{routing_key}", {"error_rate": 1, "error_code": code}
    )
    assert status_code == 200, answer
    start_key = next(key for key, spec in SPECS.items() if spec.companion_routing_key == routing_key)
    async with started(emulator, start_key) as job:
        with pytest.raises(getattr(job.client.exceptions, code)) as raised:
            await job.describe()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    [logged] = await calls_of(emulator, routing_key)
    assert (logged["outcome"], logged["error_code"]) == ("error", code)


@pytest.mark.asyncio
async def test_describe_calls_are_throttled_and_dropped(emulator: RunningEmulator) -> None:
    """A Describe rate limit throttles with the model's 429; a drop closes the connection."""
    key = "cleanrooms.GetProtectedJob"
    async with started(emulator, "cleanrooms.StartProtectedJob") as job:
        status, _ = await control(emulator, "PUT", f"/faults/{key}", {"rate_limit_per_s": 0.1, "rate_limit_burst": 1})
        assert status == 200
        await job.describe()
        with pytest.raises(job.client.exceptions.ThrottlingException) as raised:
            await job.describe()
        status, _ = await control(emulator, "PUT", f"/faults/{key}", {"drop_rate": 1, "drop_phase": "after_start"})
        assert status == 200
        with pytest.raises(ConnectionClosedError):
            await job.describe()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    logged = await calls_of(emulator, key)
    # aiohttp sends an idempotent GET again once when a reused connection closes, so 1 or 2 drops.
    outcomes = [entry["outcome"] for entry in logged]
    assert outcomes[:2] == ["described", "error"]
    assert set(outcomes[2:]) == {"dropped"}
    assert logged[-1]["job_id"] == job.response["protectedJob"]["id"]


@pytest.mark.asyncio
async def test_describe_faults_are_checked_against_the_describe_model(emulator: RunningEmulator) -> None:
    """An error the Describe call does not model is refused, even if the start models it."""
    status, answer = await control(
        emulator, "PUT", "/faults/m2.GetBatchJobExecution", {"error_rate": 1, "error_code": "ConflictException"}
    )
    assert status == 400
    assert "models no error 'ConflictException'" in answer["error"]


@pytest.mark.asyncio
async def test_jobs_are_listed_with_their_status_and_end(emulator: RunningEmulator) -> None:
    """`GET /jobs` lists each job's ids, Describe identifiers, status, start and, once ended, end."""
    async with started(emulator, "m2.StartBatchJob") as job:
        pass
    async with started(emulator, "datazone.StartDataSourceRun"):
        pass
    _, going = await control(emulator, "GET", "/jobs?routing_key=m2.StartBatchJob")
    await settle()
    _, ended = await control(emulator, "GET", "/jobs")
    [listed] = going["jobs"]
    assert listed["job_id"] == job.response["executionId"]
    assert listed["identifiers"] == job.identifiers
    assert listed["status"] in {"Submitting", "Holding", "Dispatching", "Running"}
    assert listed["ended_at"] is None
    assert [entry["routing_key"] for entry in ended["jobs"]] == ["m2.StartBatchJob", "datazone.StartDataSourceRun"]
    m2_job = ended["jobs"][0]
    assert m2_job["status"] == "Succeeded"
    took = datetime.fromisoformat(m2_job["ended_at"]) - datetime.fromisoformat(m2_job["started_at"])
    assert took.total_seconds() == pytest.approx(SHORT_S, abs=0.01)


@pytest.mark.asyncio
async def test_a_replayed_token_follows_the_same_job(emulator: RunningEmulator) -> None:
    """A start replayed by its idempotency token adds no job: both answers describe the same one."""
    async with started(emulator, "lookoutequipment.StartDataIngestionJob", ClientToken="same"):
        pass
    async with started(emulator, "lookoutequipment.StartDataIngestionJob", ClientToken="same") as again:
        assert (await again.describe())["JobId"] == again.response["JobId"]
    _, listed = await control(emulator, "GET", "/jobs")
    assert [entry["job_id"] for entry in listed["jobs"]] == [again.response["JobId"]]


@pytest.mark.asyncio
async def test_a_forced_status_holds_from_then_on(emulator: RunningEmulator) -> None:
    """A forced running status outlives the job's duration; a forced terminal status ends it now."""
    async with started(emulator, "cleanrooms.StartProtectedJob") as job:
        path = f"/jobs/cleanrooms.StartProtectedJob/{job.response['protectedJob']['id']}"
        status, forced = await control(emulator, "PUT", path, {"status": "STARTED"})
        assert (status, forced["status"], forced["forced"]) == (200, "STARTED", True)
        await settle()
        held = await job.status()
        status, ended = await control(emulator, "PUT", path, {"status": "CANCELLED"})
        assert status == 200
        answer = (await job.describe())["protectedJob"]
    assert held == "STARTED"
    assert answer["status"] == "CANCELLED"
    assert ended["ended_at"] is not None
    assert "statistics" in answer


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body", "status", "complaint"),
    [
        ("/jobs/m2.StartBatchJob/{job_id}", {"status": "SUCCEEDED"}, 400, "no status 'SUCCEEDED'"),
        ("/jobs/m2.StartBatchJob/{job_id}", {"state": "Failed"}, 400, "status"),
        ("/jobs/m2.StartBatchJob/no-such-job", {"status": "Failed"}, 404, "no job"),
        ("/jobs/s3.PutObject/{job_id}", {"status": "Failed"}, 404, "no job"),
    ],
)
async def test_forcing_a_status_refuses_what_the_model_lacks(
    emulator: RunningEmulator, path: str, body: dict[str, Any], status: int, complaint: str
) -> None:
    """A status outside the model's enum answers 400, an unknown job 404, and nothing changes."""
    async with started(emulator, "m2.StartBatchJob") as job:
        answer_status, answer = await control(emulator, "PUT", path.format(job_id=job.response["executionId"]), body)
    assert answer_status == status
    assert complaint in answer["error"]
    _, listed = await control(emulator, "GET", "/jobs")
    assert listed["jobs"][0]["forced"] is False


@pytest.mark.asyncio
async def test_lifecycle_settings_are_read_set_and_cleared(emulator: RunningEmulator) -> None:
    """The lifecycle API answers the settings in force with every value; `{}` puts back the built-in default."""
    _, startup = await control(emulator, "GET", "/lifecycle")
    settings = {"duration_s": {"min": 1, "max": 2}, "failure_rate": 0.25, "warning_rate": 0.5}
    status, changed = await control(emulator, "PUT", "/lifecycle/m2.StartBatchJob", settings)
    assert status == 200
    _, cleared = await control(emulator, "PUT", "/lifecycle", {})
    assert startup == {
        "default": {
            "duration_s": SHORT_S,
            "failure_rate": 0.0,
            "cancel_rate": 0.0,
            "never_end_rate": 0.0,
            "warning_rate": 0.0,
        },
    }
    assert changed["m2.StartBatchJob"] == {
        "duration_s": {"min": 1.0, "max": 2.0},
        "failure_rate": 0.25,
        "cancel_rate": 0.0,
        "never_end_rate": 0.0,
        "warning_rate": 0.5,
    }
    assert cleared == {"default": {**startup["default"], "duration_s": 5.0}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body", "complaint"),
    [
        ("/lifecycle/lookoutequipment.StartDataIngestionJob", {"cancel_rate": 0.1}, "cancel_rate"),
        ("/lifecycle/quicksight.StartAutomationJob", {"warning_rate": 0.1}, "warning_rate"),
        ("/lifecycle/m2.StartBatchJob", {"failure_rate": 0.6, "cancel_rate": 0.6}, "above 1"),
        ("/lifecycle/m2.StartBatchJob", {"duration_s": {"min": 3, "max": 1}}, "above max"),
        ("/lifecycle/m2.StartBatchJob", {"duration_s": -1}, "duration_s"),
        ("/lifecycle/m2.StartBatchJob", {"fail_rate": 0.1}, "fail_rate"),
        ("/lifecycle/m2.GetBatchJobExecution", {"failure_rate": 0.1}, "no followed operation"),
        ("/lifecycle", {"default": {"duration_s": 1}, "s3.PutObject": {}}, "no followed operation"),
    ],
)
async def test_lifecycle_api_refuses_bad_settings(
    emulator: RunningEmulator, path: str, body: dict[str, Any], complaint: str
) -> None:
    """Settings an operation cannot have, or that are malformed, answer 400 and change nothing."""
    _, before = await control(emulator, "GET", "/lifecycle")
    status, answer = await control(emulator, "PUT", path, body)
    _, after = await control(emulator, "GET", "/lifecycle")
    assert status == 400
    assert complaint in answer["error"]
    assert after == before


@pytest.mark.asyncio
async def test_default_shares_an_operation_lacks_become_successes(emulator: RunningEmulator) -> None:
    """A `default` cancel share cancels jobs that can be cancelled; Lookout's, which cannot, succeed."""
    status, _ = await control(emulator, "PUT", "/lifecycle", {"default": {"duration_s": 0, "cancel_rate": 1}})
    assert status == 200
    async with started(emulator, "lookoutequipment.StartDataIngestionJob") as lookout:
        lookout_status = await lookout.status()
    async with started(emulator, "m2.StartBatchJob") as m2:
        m2_status = await m2.status()
    assert (lookout_status, m2_status) == ("SUCCESS", "Cancelled")


@pytest.mark.asyncio
async def test_reset_forgets_jobs_and_restores_startup_lifecycle(emulator: RunningEmulator) -> None:
    """A reset forgets every job (a Describe no longer finds it) and puts back the start-up settings."""
    _, startup = await control(emulator, "GET", "/lifecycle")
    async with started(emulator, "m2.StartBatchJob") as job:
        await put_lifecycle(emulator, "default", duration_s=60)
        status, _ = await control(emulator, "POST", "/reset")
        assert status == 200
        with pytest.raises(job.client.exceptions.ResourceNotFoundException):
            await job.describe()
    _, listed = await control(emulator, "GET", "/jobs")
    _, after = await control(emulator, "GET", "/lifecycle")
    assert listed == {"jobs": []}
    assert after == startup


@pytest.mark.asyncio
async def test_health_lists_the_describe_operations(emulator: RunningEmulator) -> None:
    """Health names the Describe calls served besides the start operations."""
    _, health = await control(emulator, "GET", "/health")
    assert health["describe_operations"] == [spec.companion_routing_key for spec in OPERATION_SPECS]


class _EmrServerlessStartJobRunParams(BaseModel):
    """A stand-in for a generated model: just enough to validate."""

    model_config = ConfigDict(extra="allow")

    applicationId: str  # noqa: N815 - AWS's member name


class _StandInEntry:
    """A `ParamsEntry` for an operation the registry does not hold."""

    params_model = _EmrServerlessStartJobRunParams
    idempotency_token_member = "clientToken"  # noqa: S105 - a member name, not a secret
    sensitive_paths = ()


@pytest.mark.asyncio
async def test_a_new_companion_is_followed_without_new_code() -> None:
    """A registry entry with a companion but no builder is described from its model: ids, status, parseable."""
    companion = Companion(
        "GetJobRun",
        parameters=(("applicationId", "request.applicationId"), ("jobRunId", "response.jobRunId")),
        status="jobRun.state",
        terminal={"SUCCESS": JobOutcome.SUCCEEDED, "FAILED": JobOutcome.FAILED, "CANCELLED": JobOutcome.CANCELLED},
    )
    spec = OperationSpec("emr-serverless", "StartJobRun", companion)
    entries: dict[tuple[str, str], ParamsEntry] = {("emr-serverless", "StartJobRun"): _StandInEntry()}
    operations = load_operations([spec], entries)
    lifecycle = {"default": LifecycleSettings(duration_s=SHORT_S)}
    params = {"applicationId": "00f1abc", "clientToken": "run-1", "executionRoleArn": "arn:aws:iam::1:role/r"}
    async with (
        start_emulator(operations=operations, lifecycle=lifecycle) as emulator,
        aws_client(emulator, "emr-serverless") as client,
    ):
        response = await client.start_job_run(**params)
        first = await client.get_job_run(applicationId="00f1abc", jobRunId=response["jobRunId"])
        await settle()
        done = await client.get_job_run(applicationId="00f1abc", jobRunId=response["jobRunId"])
    assert first["jobRun"]["state"] in {"SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED"}
    assert done["jobRun"]["state"] == "SUCCESS"
    assert (done["jobRun"]["applicationId"], done["jobRun"]["jobRunId"]) == ("00f1abc", response["jobRunId"])


def test_emulator_command_reads_a_lifecycle_file(tmp_path: Path) -> None:
    """`dispatcher emulator --lifecycle FILE` serves with the file's settings in force."""
    lifecycle_file = tmp_path / "lifecycle.json"
    lifecycle_file.write_text(json.dumps({"m2.StartBatchJob": {"duration_s": 30, "failure_rate": 0.1}}))
    port = _free_port()
    command = [sys.executable, "-m", "dispatcher", "emulator", "--port", str(port), "--lifecycle", str(lifecycle_file)]
    with subprocess.Popen(command) as process:
        try:
            settings = asyncio.run(_wait_for_lifecycle(f"http://127.0.0.1:{port}"))
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0
    assert settings["m2.StartBatchJob"]["duration_s"] == 30
    assert settings["m2.StartBatchJob"]["failure_rate"] == 0.1
    assert settings["default"]["duration_s"] == 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_for_lifecycle(url: str) -> Any:
    """Poll the control API until the emulator answers; its lifecycle settings."""
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            try:
                async with http.get(f"{url}/_emulator/lifecycle") as response:
                    return await response.json()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    pytest.fail("the emulator never answered")


def test_emulator_command_refuses_a_lifecycle_file_that_cannot_work(tmp_path: Path) -> None:
    """A share an operation cannot have is a usage error: exit 2 and one sentence naming it."""
    lifecycle_file = tmp_path / "lifecycle.json"
    lifecycle_file.write_text(json.dumps({"lookoutequipment.StartDataIngestionJob": {"cancel_rate": 0.2}}))
    command = [sys.executable, "-m", "dispatcher", "emulator", "--port", "0", "--lifecycle", str(lifecycle_file)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert finished.returncode == 2
    assert "lookoutequipment.StartDataIngestionJob has no status for cancel_rate" in finished.stderr
