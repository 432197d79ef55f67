"""The result messages: a job's start (contract section 3) and a followed job's end (section 8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from dispatcher import amqp_values

if TYPE_CHECKING:
    from dispatcher.errors import JobError

SUCCEEDED = "succeeded"
FAILED = "failed"


def rfc3339(moment: datetime) -> str:
    """UTC, with a `Z`, as every timestamp the dispatcher writes."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_json(document: dict[str, Any]) -> bytes:
    """A result body: AWS timestamps become RFC 3339 strings, bytes become text."""
    return orjson.dumps(document, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def _default(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """What a publisher gets back for a job, succeeded or failed."""

    job_id: str | None
    service: str | None
    operation: str | None
    outcome: str
    started_at: datetime
    finished_at: datetime
    attempts: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    response: dict[str, Any] | None = None
    error: JobError | None = None
    aws_request_id: str | None = None
    deduplicated: bool = False
    traceparent: str | None = None
    following: bool = False

    def to_document(self) -> dict[str, Any]:
        """The JSON object of the result message."""
        document: dict[str, Any] = {
            "job_id": self.job_id,
            "service": self.service,
            "operation": self.operation,
            "outcome": self.outcome,
            "metadata": self.metadata,
            "attempts": self.attempts,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
        }
        if self.response is not None:
            document["response"] = self.response
        if self.error is not None:
            document["error"] = self.error.as_dict()
        if self.aws_request_id is not None:
            document["aws_request_id"] = self.aws_request_id
        if self.deduplicated:
            document["deduplicated"] = True
        if self.traceparent is not None:
            document["traceparent"] = self.traceparent
        if self.following:
            document["following"] = True
        return document

    def to_json(self) -> bytes:
        """The body of the result message; AWS timestamps become RFC 3339 strings."""
        return to_json(self.to_document())

    def routing_key(self, fallback: str) -> str:
        """`<service>.<Operation>.<outcome>`, or the arrival routing key when the body named none."""
        base = f"{self.service}.{self.operation}" if self.service and self.operation else fallback
        return amqp_values.routing_key(base, f".{self.outcome}")


FINISHED = "finished"
PROGRESS = "progress"


@dataclass(frozen=True, slots=True)
class Completion:
    """What a publisher gets when a followed job ends (`phase` finished) or changes status (progress)."""

    phase: str
    job_id: str
    service: str
    operation: str
    metadata: dict[str, str]
    job_status: str | None
    describe: dict[str, Any] | None
    aws_job: dict[str, str]
    polls: int
    started_at: datetime
    finished_at: datetime
    job_outcome: str | None = None
    warning: str | None = None
    error: dict[str, str] | None = None
    traceparent: str | None = None

    def to_document(self) -> dict[str, Any]:
        """The JSON object of the completion or progress message."""
        document: dict[str, Any] = {
            "job_id": self.job_id,
            "service": self.service,
            "operation": self.operation,
            "metadata": self.metadata,
            "phase": self.phase,
            "job_status": self.job_status,
            "describe": self.describe,
            "aws_job": self.aws_job,
            "polls": self.polls,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
        }
        if self.job_outcome is not None:
            document["job_outcome"] = self.job_outcome
        if self.warning is not None:
            document["warning"] = self.warning
        if self.error is not None:
            document["error"] = self.error
        if self.traceparent is not None:
            document["traceparent"] = self.traceparent
        return document

    def to_json(self) -> bytes:
        """The body of the message."""
        return to_json(self.to_document())

    def routing_key(self) -> str:
        """`<service>.<Operation>.finished` or `.progress`: never matched by `*.*.succeeded`."""
        return amqp_values.routing_key(f"{self.service}.{self.operation}", f".{self.phase}")
