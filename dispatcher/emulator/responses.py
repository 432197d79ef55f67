"""What a started job looks like: made-up but realistic answers for each operation.

Each known operation has a builder whose values satisfy the patterns of its output shape (ids,
ARNs, statuses). An operation added to the registry without a builder gets every required member
filled by type, with its id-like members carrying the new job's id, so botocore still parses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from dispatcher.aws_regex import compile_java_pattern

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeAlias

    from botocore.model import Shape, StructureShape

    from dispatcher.emulator.catalog import EmulatedOperation

    OutputBuilder: TypeAlias = Callable[[Mapping[str, Any], "CallContext"], "NewJob"]

EMULATED_ACCOUNT_ID = "123456789012"
"""The account of ARNs whose account the request does not name."""
_PLACEHOLDER_SCALARS: dict[str, Any] = {
    "integer": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "boolean": False,
    "blob": b"",
}


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a builder may use besides the parameters."""

    region: str
    request_id: str
    now: datetime


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job's id and the output members (by member name) answered for it."""

    job_id: str
    output: dict[str, Any]


def _quicksight_automation_job(params: Mapping[str, Any], context: CallContext) -> NewJob:
    job_id = str(uuid4())
    arn = (
        f"arn:aws:quicksight:{context.region}:{params['AwsAccountId']}:automation-group/"
        f"{params['AutomationGroupId']}/automation/{params['AutomationId']}/job/{job_id}"
    )
    # `Status` is bound to the HTTP status code in the model.
    output = {"Arn": arn, "JobId": job_id, "RequestId": context.request_id, "Status": 200}
    return NewJob(job_id, output)


def _lookout_ingestion_job(_params: Mapping[str, Any], _context: CallContext) -> NewJob:
    job_id = uuid4().hex
    return NewJob(job_id, {"JobId": job_id, "Status": "IN_PROGRESS"})


def _datazone_data_source_run(params: Mapping[str, Any], context: CallContext) -> NewJob:
    run_id = uuid4().hex[:14]
    output = {
        "domainId": params["domainIdentifier"],
        "dataSourceId": params["dataSourceIdentifier"],
        "id": run_id,
        "projectId": uuid4().hex[:14],
        "status": "REQUESTED",
        "type": "PRIORITIZED",
        "createdAt": context.now,
        "updatedAt": context.now,
    }
    return NewJob(run_id, output)


def _m2_batch_job(_params: Mapping[str, Any], _context: CallContext) -> NewJob:
    execution_id = str(uuid4())
    return NewJob(execution_id, {"executionId": execution_id})


def _cleanrooms_protected_job(params: Mapping[str, Any], context: CallContext) -> NewJob:
    job_id = str(uuid4())
    membership_id = params["membershipIdentifier"]
    protected_job = {
        "id": job_id,
        "membershipId": membership_id,
        "membershipArn": f"arn:aws:cleanrooms:{context.region}:{EMULATED_ACCOUNT_ID}:membership/{membership_id}",
        "createTime": context.now,
        "jobParameters": params["jobParameters"],
        "status": "SUBMITTED",
        "resultConfiguration": params.get("resultConfiguration"),
        "computeConfiguration": params.get("computeConfiguration"),
        "jobComputePayerAccountId": params.get("jobComputePayerAccountId"),
    }
    return NewJob(job_id, {"protectedJob": protected_job})


OUTPUT_BUILDERS: Mapping[str, OutputBuilder] = {
    "quicksight.StartAutomationJob": _quicksight_automation_job,
    "lookoutequipment.StartDataIngestionJob": _lookout_ingestion_job,
    "datazone.StartDataSourceRun": _datazone_data_source_run,
    "m2.StartBatchJob": _m2_batch_job,
    "cleanrooms.StartProtectedJob": _cleanrooms_protected_job,
}


def new_job(operation: EmulatedOperation, params: Mapping[str, Any], context: CallContext) -> NewJob:
    """A freshly started job of `operation`: its id and the output to answer with."""
    builder = OUTPUT_BUILDERS.get(operation.routing_key)
    if builder is not None:
        return builder(params, context)
    return generic_job(operation.model.output_shape)


def generic_job(output_shape: StructureShape | None) -> NewJob:
    """A job for an operation without a builder: required members filled, ids set to the job's.

    The id is a uuid in the first spelling every id member's pattern and length accept.
    """
    if output_shape is None:
        return NewJob(str(uuid4()), {})
    id_members = [
        member
        for name, member in output_shape.members.items()
        if member.type_name == "string" and name.lower().endswith("id")
    ]
    job_id = _fitting_id(id_members)
    output: dict[str, Any] = placeholder(output_shape)
    for name, member in output_shape.members.items():
        if member in id_members:
            output[name] = job_id
    return NewJob(job_id, output)


def _fitting_id(members: list[Shape]) -> str:
    """A fresh uuid spelled so that all `members` accept it (with dashes, else without), if one does."""
    fresh = uuid4()
    spellings = [str(fresh), fresh.hex, fresh.hex[:16]]
    for spelling in spellings:
        if all(_accepts(member, spelling) for member in members):
            return spelling
    return spellings[0]


def _accepts(shape: Shape, value: str) -> bool:
    low, high = shape.metadata.get("min", 0), shape.metadata.get("max", len(value))
    pattern = shape.metadata.get("pattern")
    fits_pattern = pattern is None or compile_java_pattern(pattern).fullmatch(value) is not None
    return low <= len(value) <= high and fits_pattern


def placeholder(shape: Shape) -> Any:  # noqa: ANN401 - a value of the shape's type
    """A value of `shape`'s type, for a required member whose value no caller looks at."""
    if shape.type_name == "structure" and shape.metadata.get("union"):
        name, member = next(iter(shape.members.items()))  # a union carries exactly one member
        return {name: placeholder(member)}
    if shape.type_name == "structure":
        return {name: placeholder(shape.members[name]) for name in shape.required_members}
    if shape.type_name == "list":
        return []
    if shape.type_name == "map":
        return {}
    if shape.type_name == "timestamp":
        return datetime.now(UTC)
    if shape.type_name == "string":
        return shape.enum[0] if shape.enum else "emulated"
    return _PLACEHOLDER_SCALARS[shape.type_name]
