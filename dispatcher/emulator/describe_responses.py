"""What a Describe/Get call answers about a job: the start's values, the status and times of now.

Each known operation has a builder that answers every member AWS answers in the job's current
status (times, return codes, errors, results), reusing the ids and values its start call answered.
An operation added to the registry without a builder gets its output shape's required members
filled by type, the members named like a start parameter or start output member copied from it,
and the status at the companion's `status` path, so botocore parses it and the dispatcher can
follow it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from dispatcher.emulator.responses import EMULATED_ACCOUNT_ID, placeholder
from dispatcher.operations import JobOutcome

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeAlias

    from botocore.model import StructureShape

    from dispatcher.emulator.catalog import CompanionOperation
    from dispatcher.emulator.course import Moment
    from dispatcher.emulator.responses import CallContext

    DescribeBuilder: TypeAlias = Callable[["DescribedJob"], dict[str, Any]]

QUICKSIGHT_OUTPUT_PAYLOAD = '{"emulated":true}'
"""The output payload of a succeeded QuickSight automation job (the pattern wants a JSON object)."""
_FAILURE = "The emulator made this job fail."
_CANCELLED = "The job was cancelled."
_M2_RETURN_CODES = {"Succeeded": "0000", "Succeeded With Warning": "0004", "Failed": "0012"}
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class DescribedJob:
    """A job as one Describe call sees it: its start call, its status now, the Describe request."""

    start_params: Mapping[str, Any]
    start_output: Mapping[str, Any]
    moment: Moment
    outcome: JobOutcome | None
    """The outcome of its terminal status; `None` while it is going."""
    warning: bool
    request: Mapping[str, Any]
    context: CallContext

    @property
    def created_at(self) -> datetime:
        """When the job was started."""
        return _at(self.moment.created_at)

    @property
    def running_since(self) -> datetime | None:
        """When it left its first status."""
        return None if self.moment.running_since is None else _at(self.moment.running_since)

    @property
    def ended_at(self) -> datetime | None:
        """When it reached its terminal status."""
        return None if self.moment.ended_at is None else _at(self.moment.ended_at)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _quicksight_automation_job(job: DescribedJob) -> dict[str, Any]:
    output: dict[str, Any] = {
        "Arn": job.start_output["Arn"],
        "CreatedAt": job.created_at,
        "StartedAt": job.running_since,
        "EndedAt": job.ended_at,
        "JobStatus": job.moment.status,
        "RequestId": job.context.request_id,
    }
    if job.request.get("IncludeInputPayload"):
        output["InputPayload"] = job.start_params.get("InputPayload")
    if job.request.get("IncludeOutputPayload") and job.outcome is JobOutcome.SUCCEEDED:
        output["OutputPayload"] = QUICKSIGHT_OUTPUT_PAYLOAD
    return output


def _lookout_ingestion_job(job: DescribedJob) -> dict[str, Any]:
    params = job.start_params
    role_account = params["RoleArn"].split(":")[4]
    account = role_account if re.fullmatch(r"[0-9]{12}", role_account) else EMULATED_ACCOUNT_ID
    dataset = params["DatasetName"]
    dataset_arn = f"arn:aws:lookoutequipment:{job.context.region}:{account}:dataset/{dataset}/{_stable_uuid(dataset)}"
    output: dict[str, Any] = {
        "JobId": job.start_output["JobId"],
        "DatasetArn": dataset_arn,
        "IngestionInputConfiguration": params["IngestionInputConfiguration"],
        "RoleArn": params["RoleArn"],
        "CreatedAt": job.created_at,
        "Status": job.moment.status,
    }
    if job.outcome is JobOutcome.FAILED:
        output["FailedReason"] = _FAILURE
    elif job.outcome is JobOutcome.SUCCEEDED:
        output.update(
            DataQualitySummary={
                "InsufficientSensorData": {
                    "MissingCompleteSensorData": {"AffectedSensorCount": 0},
                    "SensorsWithShortDateRange": {"AffectedSensorCount": 0},
                },
                "MissingSensorData": {"AffectedSensorCount": 0, "TotalNumberOfMissingValues": 0},
                "InvalidSensorData": {"AffectedSensorCount": 0, "TotalNumberOfInvalidValues": 0},
                "UnsupportedTimestamps": {"TotalNumberOfUnsupportedTimestamps": 0},
                "DuplicateTimestamps": {"TotalNumberOfDuplicateTimestamps": 0},
            },
            IngestedFilesSummary={"TotalNumberOfFiles": 1, "IngestedNumberOfFiles": 1, "DiscardedFiles": []},
            IngestedDataSize=1_048_576,
            DataStartTime=job.created_at - timedelta(days=30),
            DataEndTime=job.created_at - timedelta(days=1),
        )
    return output


def _datazone_data_source_run(job: DescribedJob) -> dict[str, Any]:
    start = job.start_output
    output: dict[str, Any] = {
        **{name: start[name] for name in ("domainId", "dataSourceId", "id", "projectId", "type", "createdAt")},
        "status": job.moment.status,
        "updatedAt": _at(job.moment.changed_at),
        "startedAt": job.running_since,
        "stoppedAt": job.ended_at,
    }
    if job.outcome is not None:
        imported = job.outcome is JobOutcome.SUCCEEDED
        failed = 1 if job.warning or not imported else 0
        added = 1 if imported else 0
        output["runStatisticsForAssets"] = {
            "added": added,
            "updated": 0,
            "unchanged": 0,
            "skipped": 0,
            "failed": failed,
        }
    if job.outcome is JobOutcome.FAILED:
        output["errorMessage"] = {"errorType": "INTERNAL_SERVER_EXCEPTION", "errorDetail": _FAILURE}
    return output


def _m2_batch_job_execution(job: DescribedJob) -> dict[str, Any]:
    identifier = job.start_params["batchJobIdentifier"]
    execution_id = job.start_output["executionId"]
    output: dict[str, Any] = {
        "applicationId": job.start_params["applicationId"],
        "executionId": execution_id,
        "batchJobIdentifier": identifier,
        "jobId": f"JOB{_stable_uuid(execution_id).int % 100_000:05d}",
        "jobName": _m2_job_name(identifier),
        "startTime": job.created_at,
        "endTime": job.ended_at,
        "status": job.moment.status,
        "returnCode": _M2_RETURN_CODES.get(job.moment.status),
    }
    if "fileBatchJobIdentifier" in identifier or "s3BatchJobIdentifier" in identifier:
        output.update(jobType="JES2", jobUser="M2USER")
    if job.outcome is JobOutcome.FAILED:
        output["statusReason"] = _FAILURE
    elif job.outcome is JobOutcome.CANCELLED:
        output["statusReason"] = _CANCELLED
    return output


def _m2_job_name(identifier: Mapping[str, Any]) -> str:
    """The JCL job name AWS reports: the file or script name without its extension, at most 8 characters."""
    named = (
        identifier.get("fileBatchJobIdentifier")
        or identifier.get("scriptBatchJobIdentifier")
        or identifier.get("s3BatchJobIdentifier", {}).get("identifier")
        or {}
    )
    name = named.get("fileName") or named.get("scriptName") or "RESTART"
    return _WHITESPACE.sub("", name.rsplit(".", 1)[0]).upper()[:8] or "JOB"


def _cleanrooms_protected_job(job: DescribedJob) -> dict[str, Any]:
    protected_job = {**job.start_output["protectedJob"], "status": job.moment.status}
    ended_at = job.moment.ended_at
    if ended_at is not None:
        duration_ms = round((ended_at - job.moment.created_at) * 1000)
        protected_job["statistics"] = {
            "totalDurationInMillis": duration_ms,
            "billedResourceUtilization": {"units": 1.0},
        }
    if job.outcome is JobOutcome.SUCCEEDED:
        protected_job["result"] = {"output": _cleanrooms_result_output(protected_job)}
    elif job.outcome is JobOutcome.FAILED:
        protected_job["error"] = {"code": "JobFailed", "message": _FAILURE}
    return {"protectedJob": protected_job}


def _cleanrooms_result_output(protected_job: Mapping[str, Any]) -> dict[str, Any]:
    """Where the results went: the member the start call named, else the emulated account."""
    configuration = (protected_job.get("resultConfiguration") or {}).get("outputConfiguration", {})
    account = configuration.get("member", {}).get("accountId") or EMULATED_ACCOUNT_ID
    return {"memberList": [{"accountId": account}]}


DESCRIBE_BUILDERS: Mapping[str, DescribeBuilder] = {
    "quicksight.DescribeAutomationJob": _quicksight_automation_job,
    "lookoutequipment.DescribeDataIngestionJob": _lookout_ingestion_job,
    "datazone.GetDataSourceRun": _datazone_data_source_run,
    "m2.GetBatchJobExecution": _m2_batch_job_execution,
    "cleanrooms.GetProtectedJob": _cleanrooms_protected_job,
}
"""By companion routing key."""


def describe_output(operation: CompanionOperation, job: DescribedJob) -> dict[str, Any]:
    """The output members a Describe call of `operation` answers about `job`."""
    builder = DESCRIBE_BUILDERS.get(operation.routing_key)
    if builder is not None:
        return builder(job)
    return generic_describe(operation, job)


def generic_describe(operation: CompanionOperation, job: DescribedJob) -> dict[str, Any]:
    """An answer for an operation without a builder: its required members, its ids and its status."""
    shape = operation.model.output_shape
    output: dict[str, Any] = placeholder(shape)
    _copy_known_strings(shape, output, (job.request, job.start_output, job.start_params))
    *parents, last = operation.companion.status.split(".")
    holder = output
    for part in parents:
        holder = holder.setdefault(part, {})
    holder[last] = job.moment.status
    return output


def _copy_known_strings(shape: StructureShape, value: dict[str, Any], sources: tuple[Mapping[str, Any], ...]) -> None:
    """Set the string members of `value` (and of its structures) named like a top-level member of a source."""
    for name, member in shape.members.items():
        if member.type_name == "structure" and isinstance(value.get(name), dict):
            _copy_known_strings(member, value[name], sources)
        elif member.type_name == "string":
            known = next((source[name] for source in sources if isinstance(source.get(name), str)), None)
            if known is not None:
                value[name] = known


def _stable_uuid(name: str) -> UUID:
    """The same uuid for the same name, so that repeated Describe calls answer the same values."""
    return uuid5(NAMESPACE_URL, name)
