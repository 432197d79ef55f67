"""Decoding stage: raw AMQP delivery -> a validated job, or the reason it is not one."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from dispatcher.errors import ExpiredJob, InvalidJob, MalformedJob, UnroutableJob
from dispatcher.params import has_json_payload, with_exact_json_payload
from dispatcher.redact import redact_loc
from dispatcher.regions import region_refusal
from dispatcher.settings import MAX_FOLLOW_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pydantic_core import ErrorDetails

    from dispatcher.operations import Operation
    from dispatcher.registry import Registry

JobId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
_JOB_ID: TypeAdapter[str] = TypeAdapter(JobId)
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Token derivation namespace: fixed forever, or redelivered jobs would get new tokens.
TOKEN_NAMESPACE = uuid.UUID("5f0c8f0e-4d4b-4a8e-9d7c-6a1f3c2b9e10")


class FollowRequest(BaseModel):
    """`follow` as an object: how long to follow the job, and whether to report each status change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_FOLLOW_TIMEOUT_S,
        description="Seconds after AWS accepted the job when the follow ends as `timed-out`; "
        "default from the settings.",
    )
    progress: StrictBool | None = Field(
        default=None, description="Publish a `progress` message on each status change; default from the settings."
    )


@dataclass(frozen=True, slots=True)
class FollowOptions:
    """How a started job is followed: resolved from the job's `follow` and the settings."""

    timeout_s: float
    progress: bool


@dataclass(frozen=True, slots=True)
class FollowDefaults:
    """The settings' part of `follow`: which operations are followed when a job does not say."""

    operations: frozenset[str] = frozenset()
    timeout_s: float = 24 * 3600.0
    progress: bool = False

    def resolve(self, operation: Operation, asked: FollowRequest | bool | None) -> FollowOptions | None:  # noqa: FBT001
        """The follow of a job of `operation` that asked `asked`; raises `InvalidJob` if it cannot be followed."""
        if asked is False or (asked is None and operation.routing_key not in self.operations):
            return None
        if operation.companion is None:
            raise InvalidJob("FollowNotSupported", f"follow: {operation.routing_key} has no status call to follow with")
        request = asked if isinstance(asked, FollowRequest) else FollowRequest()
        return FollowOptions(
            timeout_s=request.timeout_s if request.timeout_s is not None else self.timeout_s,
            progress=request.progress if request.progress is not None else self.progress,
        )


class JobMessage(BaseModel):
    """The body of a job message (contract section 2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: JobId | None = Field(default=None, description="The job's identity and idempotency key.")
    service: str = Field(description="botocore's service name, e.g. `m2`.")
    operation: str = Field(description="The operation exactly as in the AWS API reference.")
    params: dict[str, Any] = Field(description="The request parameters exactly as in the AWS API reference.")
    region: Region | None = Field(default=None, description="Overrides the configured region for this job.")
    not_after: AwareDatetime | None = Field(
        default=None, description="A job not started by then is dead-lettered as `expired`."
    )
    metadata: dict[str, str] = Field(default_factory=dict, description="Echoed untouched in the result.")
    follow: StrictBool | FollowRequest | None = Field(
        default=None,
        description="Follow the AWS job to its end and publish a completion result (contract section 8): "
        "`true`, `false` (not even by the operation's default), or `{timeout_s, progress}`.",
    )


@dataclass(frozen=True, slots=True)
class Job:
    """A validated job, ready for AWS: `request` is exactly the kwargs of the client method."""

    job_id: str
    operation: Operation
    request: dict[str, Any]
    region: str
    not_after: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
    follow: FollowOptions | None = None

    def expired(self, now: datetime) -> bool:
        """True once `not_after` has passed: the job must not be started late."""
        return self.not_after is not None and now >= self.not_after


@dataclass(frozen=True, slots=True)
class Decoder:
    """Turns a delivery's body and routing key into a `Job`, raising a `JobError` for bad input."""

    registry: Registry
    default_region: str
    enabled_regions: tuple[str, ...]  # an allow-list; empty: any region of the default's partition
    max_message_bytes: int
    follow_defaults: FollowDefaults = field(default_factory=FollowDefaults)

    def decode(
        self, body: bytes, routing_key: str, message_id: str | None, now: datetime | None = None, *, expire: bool = True
    ) -> Job:
        """Validate everything the contract asks of a job before AWS is called.

        `expire=False` leaves `not_after` to the caller: the pipeline asks the ledger first, since a
        job AWS already started is not expired, whatever the clock says.
        """
        document = self._parse(body)
        try:
            message = JobMessage.model_validate(document)
        except ValidationError as exc:
            # Every failing field at once: the params too, when they can be told apart.
            problems = [describe_errors(exc.errors()), self._params_problems(document)]
            raise InvalidJob("InvalidJobMessage", "; ".join(p for p in problems if p)) from None

        job_id = message.job_id or _valid_message_id(message_id)
        operation = self.registry.get(f"{message.service}.{message.operation}")
        if operation is None:
            raise UnroutableJob(
                "UnknownOperation",
                f"no operation {message.service}.{message.operation} is registered; "
                f"known: {', '.join(self.registry.routing_keys)}",
            )
        if operation.routing_key != routing_key:
            raise InvalidJob(
                "RoutingKeyMismatch",
                f"the body names {operation.routing_key} but the message was published "
                f"with routing key {routing_key!r}",
            )
        region = message.region or self.default_region
        refusal = region_refusal(region, self.default_region, self.enabled_regions)
        if refusal is not None:
            raise InvalidJob("RegionNotEnabled", refusal)
        follow = self.follow_defaults.resolve(operation, message.follow)
        request = validate_params(operation, message.params)
        if operation.idempotency_token_member and not request.get(operation.idempotency_token_member):
            request[operation.idempotency_token_member] = idempotency_token(job_id)
        job = Job(job_id, operation, request, region, message.not_after, message.metadata, follow)
        if expire and job.expired(now or datetime.now(UTC)):
            raise ExpiredJob("JobExpired", f"not_after {message.not_after} passed before the job was started")
        return job

    def _params_problems(self, document: object) -> str:
        """The params' errors of a job whose envelope failed, if its operation is known; else ''."""
        if not isinstance(document, dict) or not isinstance(document.get("params"), dict):
            return ""
        operation = self.registry.get(f"{document.get('service')}.{document.get('operation')}")
        if operation is None:
            return ""
        try:
            validate_params(operation, document["params"])
        except InvalidJob as exc:
            return exc.message
        return ""

    def _parse(self, body: bytes) -> object:
        if len(body) > self.max_message_bytes:
            raise MalformedJob(
                "MessageTooLarge",
                f"the body is {len(body)} bytes, over the limit of {self.max_message_bytes} "
                "(DISPATCHER_MAX_MESSAGE_BYTES)",
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedJob("NotUtf8", f"the body is not UTF-8: byte {exc.start} cannot be decoded") from None
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # orjson refuses a number beyond a double (`1e400`), which a JSON `InputPayload` may hold.
            document = with_exact_json_payload(text)
            if document is None:
                raise MalformedJob("NotJson", f"the body is not JSON: {exc}") from None
        else:
            if isinstance(document, dict) and has_json_payload(document):
                # The rare path: read again for the payload's numbers as written. It fails only past
                # Python's recursion depth, far beyond the nesting the payload's validator accepts.
                document = with_exact_json_payload(text) or document
        if not isinstance(document, dict):
            raise MalformedJob("NotAnObject", f"the body is JSON {type(document).__name__}, not an object")
        return document


def validate_params(operation: Operation, params: dict[str, Any]) -> dict[str, Any]:
    """Check params against the operation's model and return the exact AWS request."""
    try:
        model = operation.params_model.model_validate(params)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        message = describe_errors(errors, prefix=("params",), sensitive_paths=operation.sensitive_paths)
        raise InvalidJob("InvalidParameters", message) from None
    request: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True)
    return request


def _valid_message_id(message_id: str | None) -> str:
    if not message_id:
        raise InvalidJob("MissingJobId", "job_id: required (in the body, or as the AMQP message_id property)")
    try:
        return _JOB_ID.validate_python(message_id)
    except ValidationError:
        raise InvalidJob(
            "InvalidJobId", "message_id: must be 1-128 of [A-Za-z0-9._:-] to serve as the job_id"
        ) from None


def idempotency_token(job_id: str) -> str:
    """The token AWS sees for a job: derived from `job_id`, so a redelivery reuses it."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, job_id))


def describe_errors(
    errors: list[ErrorDetails], prefix: tuple[str | int, ...] = (), sensitive_paths: Iterable[str] = ()
) -> str:
    """Every failing field as `path: problem`, joined into one sentence a person can act on.

    The sentence reaches logs, results and dead-letter headers, so a path stops at a member in
    `sensitive_paths` and says `<redacted key>`/`<redacted value>` for the map key or value below it.
    """
    parts = []
    for error in errors:
        loc, redacted = redact_loc(tuple(error["loc"]), sensitive_paths)
        path = json_path((*prefix, *loc))
        problem = f"{redacted}: {error['msg']}" if redacted else error["msg"]
        parts.append(f"{path}: {problem}" if path else problem)
    return "; ".join(parts)


def json_path(loc: tuple[str | int, ...]) -> str:
    """`("params", "jobs", 0, "name")` -> `params.jobs[0].name`; a map key that is no name is quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (the key)"
        elif _NAME.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{orjson.dumps(part).decode()}]"
    return out
