"""JSON Schema of the job and result messages, generated from the models the worker uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from dispatcher.envelope import JobMessage
from dispatcher.errors import Category

if TYPE_CHECKING:
    from dispatcher.registry import Registry

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def job_schema(registry: Registry) -> dict[str, Any]:
    """The job message, with `params` tied to each operation's own parameter schema."""
    schema = JobMessage.model_json_schema()
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    branches = []
    for operation in registry:
        params = TypeAdapter(operation.params_model).json_schema(ref_template="#/$defs/{model}")
        defs.update(params.pop("$defs", {}))
        name = operation.params_model.__name__
        defs[name] = params
        branches.append(
            {
                "if": {
                    "properties": {
                        "service": {"const": operation.service},
                        "operation": {"const": operation.name},
                    },
                    "required": ["service", "operation"],
                },
                "then": {"properties": {"params": {"$ref": f"#/$defs/{name}"}}},
            }
        )
    schema["properties"]["service"]["enum"] = sorted(registry.services)
    schema["properties"]["operation"]["enum"] = sorted({op.name for op in registry})
    schema["allOf"] = branches
    schema["description"] = (
        "A start-job message for the dispatcher. `job_id` may instead be given as the AMQP message_id."
    )
    return {"$schema": SCHEMA_DIALECT, "$id": "urn:job-dispatcher:job:v1", **schema}


def result_schema() -> dict[str, Any]:
    """The result message (contract section 3)."""
    error = {
        "type": "object",
        "required": ["category", "code", "message", "retryable"],
        "properties": {
            "category": {"enum": [str(c) for c in Category]},
            "code": {"type": "string"},
            "message": {"type": "string"},
            "retryable": {"type": "boolean"},
        },
        "additionalProperties": False,
    }
    timestamp = {"type": "string", "format": "date-time"}
    nullable_text = {"type": ["string", "null"]}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "urn:job-dispatcher:result:v1",
        "title": "Result",
        "description": "The outcome of a job, published to dispatcher.results and to reply_to.",
        "type": "object",
        "required": ["job_id", "service", "operation", "outcome", "metadata", "attempts", "started_at", "finished_at"],
        "properties": {
            "job_id": nullable_text,
            "service": nullable_text,
            "operation": nullable_text,
            "outcome": {"enum": ["succeeded", "failed"]},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "attempts": {"type": "integer", "minimum": 0},
            "started_at": timestamp,
            "finished_at": timestamp,
            "response": {"type": "object", "description": "On success: the AWS response without ResponseMetadata."},
            "error": error,
            "aws_request_id": {"type": "string"},
            "deduplicated": {
                "type": "boolean",
                "description": "True when AWS had already started this job and the result was published again.",
            },
            "traceparent": {"type": "string"},
        },
        "additionalProperties": False,
    }
