"""Write `docs/schemas/*.schema.json` and `docs/asyncapi.yaml` from the code that defines the messages.

The JSON Schemas are `job_schema`, `result_schema` and `completion_schema`; the AsyncAPI 3.0
document describes the broker topology of the operation registry with the default names of the
contract. `uv run python tools/write_schemas.py` (`make schemas`) writes them; `--check` exits 1
with a diff when a committed file is stale. Tests call `main` and `render` directly.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from dispatcher.errors import Category, JobError
from dispatcher.examples import example_job
from dispatcher.operations import JobOutcome
from dispatcher.poll_schedule import PollSchedule
from dispatcher.registry import default_registry
from dispatcher.results import FINISHED, PROGRESS, Completion
from dispatcher.schema import completion_schema, job_schema, result_schema
from dispatcher.settings import Settings
from dispatcher.settle import dead_letter_headers
from dispatcher.topology import Names

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dispatcher.operations import Operation
    from dispatcher.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
JOB_SCHEMA = "schemas/job.schema.json"
RESULT_SCHEMA = "schemas/result.schema.json"
COMPLETION_SCHEMA = "schemas/completion.schema.json"
ASYNCAPI = "asyncapi.yaml"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
AMQP_BINDING_VERSION = "0.3.0"
DEAD_LETTER_HEADER_DESCRIPTIONS = {
    "x-dispatcher-category": "Why the job was dead-lettered.",
    "x-dispatcher-error-code": "The AWS error code (ValidationException, ...) or the dispatcher's own code.",
    "x-dispatcher-error-message": "A human sentence; for `invalid`, every failing field with its path.",
    "x-dispatcher-attempts": "AWS calls made for the job.",
    "x-dispatcher-dead-lettered-at": "When it was dead-lettered (RFC 3339).",
    "x-dispatcher-original-routing-key": "The routing key it was published with, so a replay can send it back.",
    "x-dispatcher-aws-request-id": "AWS's request id, when AWS answered.",
    "x-dispatcher-http-status": "AWS's HTTP status, when AWS answered.",
}


def default_names() -> Names:
    """The contract's names (the settings' defaults, whatever this shell's DISPATCHER_* say)."""
    fields = Settings.model_fields
    return Names(fields["jobs_exchange"].default, fields["results_exchange"].default, fields["dead_exchange"].default)


def default_poll_waits() -> tuple[float, ...]:
    """The poll waits of the default settings: one wait queue each."""
    fields = Settings.model_fields
    delays = fields["follow_poll_delays"].get_default(call_default_factory=True)
    return PollSchedule(tuple(delays), fields["follow_poll_jitter"].default).waits_s


def render() -> dict[str, str]:
    """Every generated file, by path under docs/, as it should be committed."""
    registry = default_registry()
    return {
        JOB_SCHEMA: _json(job_schema(registry)),
        RESULT_SCHEMA: _json(result_schema()),
        COMPLETION_SCHEMA: _json(completion_schema()),
        ASYNCAPI: _yaml(asyncapi(registry, default_names())),
    }


def asyncapi(registry: Registry, names: Names) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the dispatcher: what it receives and what it sends, where."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for operation in registry:
        key = _identifier(operation.routing_key)
        messages[f"job_{key}"] = _job_message(operation)
        message = {f"job_{key}": {"$ref": f"#/components/messages/job_{key}"}}
        channels[f"jobs_{key}"] = {
            "address": operation.routing_key,
            "title": f"Publish {operation.routing_key} jobs",
            "description": (
                f"Publishers send {operation.routing_key} jobs to the exchange `{names.jobs_exchange}` with "
                f"routing key `{operation.routing_key}`; they are queued in `{names.job_queue(operation.routing_key)}`."
            ),
            "messages": message,
            "bindings": {"amqp": _routing_key_binding(names.jobs_exchange, "topic")},
        }
        channels[f"jobQueue_{key}"] = {
            "address": names.job_queue(operation.routing_key),
            "title": f"{operation.routing_key} work queue",
            "description": (
                "Quorum queue of one operation, with its own consumer, prefetch and rate limit. A message "
                f"that keeps crashing workers goes to `{names.dead_queue}` after the delivery limit."
            ),
            "messages": message,
            "bindings": {"amqp": _queue_binding(names.job_queue(operation.routing_key))},
        }
        operations[f"start_{key}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/jobQueue_{key}"},
            "summary": f"Validate a {operation.routing_key} job and start it on AWS.",
            "description": (
                "Each job ends as one result (succeeded or failed); a job that cannot be started is also "
                "dead-lettered. A job is acked only after its outcome is confirmed by the broker."
            ),
            "messages": [{"$ref": f"#/channels/jobQueue_{key}/messages/job_{key}"}],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }
    channels.update(_result_channels(names))
    channels.update(_follow_channels(registry, names))
    channels.update(_dead_letter_channels(names))
    operations.update(_send_operations())
    messages["result"] = _result_message()
    messages["completion"] = _completion_message(FINISHED)
    messages["progress"] = _completion_message(PROGRESS)
    messages["deadLetter"] = _dead_letter_message()
    return {
        "asyncapi": "3.0.0",
        "id": "urn:job-dispatcher",
        "info": {
            "title": "job-dispatcher",
            "version": "1.0.0",
            "description": (
                "Starts AWS jobs from RabbitMQ messages: validated, rate-limited, retried durably, never lost. "
                "Generated by tools/write_schemas.py from the code; the contract is docs/publishers.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ 3.10 or newer (DISPATCHER_AMQP_URL).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _job_message(operation: Operation) -> dict[str, Any]:
    params_ref = f"./{JOB_SCHEMA}#/$defs/{operation.params_model.__name__}"
    return {
        "name": f"{operation.routing_key} job",
        "title": f"Start {operation.service} {operation.name}",
        "contentType": "application/json",
        "summary": "Publish persistent (delivery_mode 2), mandatory, with publisher confirms; message_id = job_id.",
        "headers": {
            "type": "object",
            "properties": {
                "traceparent": {"type": "string", "description": "W3C trace context, carried into the logs."},
                "x-dispatcher-replays": {
                    "type": "integer",
                    "description": "How many times `dispatcher dlq replay` sent this job back.",
                },
            },
        },
        "payload": {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {
                "allOf": [
                    {"$ref": f"./{JOB_SCHEMA}"},
                    {
                        "properties": {
                            "service": {"const": operation.service},
                            "operation": {"const": operation.name},
                            "params": {"$ref": params_ref},
                        }
                    },
                ]
            },
        },
        "examples": [
            {"name": "example", "payload": example_job(operation.routing_key, "job-0001")},
            {
                "name": "followed",
                "summary": "Followed to its end: a completion result (and progress messages) will follow.",
                "payload": example_job(operation.routing_key, "job-0002", follow={"timeout_s": 7200, "progress": True}),
            },
        ],
    }


def _result_channels(names: Names) -> dict[str, Any]:
    result = {
        "result": {"$ref": "#/components/messages/result"},
        "completion": {"$ref": "#/components/messages/completion"},
        "progress": {"$ref": "#/components/messages/progress"},
    }
    return {
        "results": {
            "address": "{service}.{operation}.{outcome}",
            "title": "Results",
            "description": (
                f"Every outcome, published to the exchange `{names.results_exchange}`: the start result "
                f"(`*.*.succeeded`, `*.*.failed`) and, for a followed job, its completion (`*.*.{FINISHED}`) and "
                f"progress messages (`*.*.{PROGRESS}`). A binding to `*.*.succeeded` never sees a completion."
            ),
            "parameters": {
                "service": {"description": "The job's service."},
                "operation": {"description": "The job's (start) operation."},
                "outcome": {
                    "enum": ["succeeded", "failed", FINISHED, PROGRESS],
                    "description": (
                        f"How the job's start ended; `{FINISHED}` or `{PROGRESS}` for a followed job's "
                        "completion or progress message."
                    ),
                },
            },
            "messages": result,
            "bindings": {"amqp": _routing_key_binding(names.results_exchange, "topic")},
        },
        "resultsQueue": {
            "address": names.results_queue,
            "title": "Results queue",
            "description": "Bound with `#`: keeps every outcome until someone reads it (can be switched off).",
            "messages": result,
            "bindings": {"amqp": _queue_binding(names.results_queue)},
        },
        "replies": {
            "address": None,
            "title": "Replies",
            "description": (
                "The queue a job named in `reply_to`, reached through the default exchange; the result, "
                "and a followed job's completion and progress messages, carry the job's correlation_id "
                "(or, lacking one, its message_id or job_id)."
            ),
            "messages": result,
        },
    }


def _follow_channels(registry: Registry, names: Names) -> dict[str, Any]:
    """The follow queues: internal, written and read by workers only; listed so nobody else uses them."""
    channels: dict[str, Any] = {}
    for operation in registry:
        if operation.companion is None:
            continue
        key = _identifier(operation.routing_key)
        queue = names.follow_queue(operation.routing_key)
        channels[f"followQueue_{key}"] = {
            "address": queue,
            "title": f"{operation.routing_key} follow queue (internal)",
            "description": (
                f"Internal. Follow messages of followed {operation.routing_key} jobs, due for a "
                f"{operation.companion.operation} call: signed by the workers, routed by the direct exchange "
                f"`{names.follow_exchange}`. Nothing else may publish or consume here; a message that keeps "
                f"crashing workers goes to `{names.dead_queue}` after the delivery limit, without a result."
            ),
            "bindings": {"amqp": _queue_binding(queue)},
        }
    waits = default_poll_waits()
    channels["followWaitQueues"] = {
        "address": f"{names.follow_exchange}.wait.{{wait}}",
        "title": "Follow wait queues (internal)",
        "description": (
            "Internal. One quorum queue per poll wait, each behind a fanout exchange of the same name: follow "
            f"messages wait there (queue TTL) and are dead-lettered back into `{names.follow_exchange}`. "
            f"The default settings make {len(waits)} of them, `{names.follow_wait_queue(waits[0])}` to "
            f"`{names.follow_wait_queue(waits[-1])}`."
        ),
        "parameters": {
            "wait": {"description": "The wait, in seconds with an `s`: one per poll delay and jitter step."}
        },
    }
    return channels


def _dead_letter_channels(names: Names) -> dict[str, Any]:
    dead_letter = {"deadLetter": {"$ref": "#/components/messages/deadLetter"}}
    return {
        "deadLetters": {
            "address": "{originalRoutingKey}",
            "title": "Dead letters",
            "description": f"Jobs that could not be started, published to the fanout exchange `{names.dead_exchange}`.",
            "parameters": {"originalRoutingKey": {"description": "The routing key the job was published with."}},
            "messages": dead_letter,
            "bindings": {"amqp": _routing_key_binding(names.dead_exchange, "fanout")},
        },
        "deadLetterQueue": {
            "address": names.dead_queue,
            "title": "Dead-letter queue",
            "description": (
                "Every job that could not be started, with why; no delivery or length limit. "
                "Operate it with `dispatcher dlq` (docs/operators.md)."
            ),
            "messages": dead_letter,
            "bindings": {"amqp": _queue_binding(names.dead_queue)},
        },
    }


def _send_operations() -> dict[str, Any]:
    persistent = {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}
    return {
        "publishResult": {
            "action": "send",
            "channel": {"$ref": "#/channels/results"},
            "summary": "Publish the outcome of every job, confirmed before the job is acked.",
            "messages": [{"$ref": "#/channels/results/messages/result"}],
            "bindings": {"amqp": persistent},
        },
        "replyResult": {
            "action": "send",
            "channel": {"$ref": "#/channels/replies"},
            "summary": "Send the outcome to the job's reply_to queue, when it named one.",
            "messages": [{"$ref": "#/channels/replies/messages/result"}],
        },
        "publishCompletion": {
            "action": "send",
            "channel": {"$ref": "#/channels/results"},
            "summary": "Publish a followed job's end (and, when it asked, each status change).",
            "description": (
                "The completion result comes once AWS reports a terminal status, the follow timeout passes "
                "(`timed-out`) or the Describe/Get call keeps being refused (`unknown`)."
            ),
            "messages": [
                {"$ref": "#/channels/results/messages/completion"},
                {"$ref": "#/channels/results/messages/progress"},
            ],
            "bindings": {"amqp": persistent},
        },
        "replyCompletion": {
            "action": "send",
            "channel": {"$ref": "#/channels/replies"},
            "summary": "Send a followed job's completion and progress messages to its reply_to queue.",
            "messages": [
                {"$ref": "#/channels/replies/messages/completion"},
                {"$ref": "#/channels/replies/messages/progress"},
            ],
        },
        "publishDeadLetter": {
            "action": "send",
            "channel": {"$ref": "#/channels/deadLetters"},
            "summary": "Dead-letter a job that could not be started: its body byte for byte, with why.",
            "messages": [{"$ref": "#/channels/deadLetters/messages/deadLetter"}],
            "bindings": {"amqp": persistent},
        },
    }


def _result_message() -> dict[str, Any]:
    return {
        "name": "result",
        "title": "Result",
        "contentType": "application/json",
        "summary": "Persistent; message_id = job_id. Delivered at least once: deduplicate on job_id.",
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"./{RESULT_SCHEMA}"}},
    }


def _completion_message(phase: str) -> dict[str, Any]:
    """The completion (`finished`) or progress message of a followed job, with examples `Completion` wrote."""
    if phase == FINISHED:
        title, summary = "Completion", f"Routing key `<service>.<Operation>.{FINISHED}`: how a followed job ended."
        examples = [
            ("succeeded", _example_completion(FINISHED, "Succeeded", JobOutcome.SUCCEEDED)),
            (
                "succeeded with a warning",
                _example_completion(
                    FINISHED,
                    "Succeeded With Warning",
                    JobOutcome.SUCCEEDED,
                    warning="AWS reported Succeeded With Warning",
                ),
            ),
            ("failed", _example_completion(FINISHED, "Failed", JobOutcome.FAILED)),
            ("timed out before any answer", _example_completion(FINISHED, None, JobOutcome.TIMED_OUT)),
            (
                "unknown",
                _example_completion(
                    FINISHED,
                    None,
                    JobOutcome.UNKNOWN,
                    error={
                        "code": "AccessDeniedException",
                        "message": "GetBatchJobExecution was refused 5 times in a row, last with "
                        "AccessDeniedException: ... (check the worker's IAM permission for it and that the job "
                        "exists in us-east-1; the AWS job itself was left alone)",
                    },
                ),
            ),
        ]
    else:
        title, summary = "Progress", f"Routing key `<service>.<Operation>.{PROGRESS}`: a followed job's status changed."
        examples = [("running", _example_completion(PROGRESS, "Running", None))]
    return {
        "name": "completion" if phase == FINISHED else "progress",
        "title": title,
        "contentType": "application/json",
        "summary": f"{summary} Persistent; message_id = job_id. Delivered at least once: deduplicate on "
        "(job_id, phase).",
        "payload": {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {"allOf": [{"$ref": f"./{COMPLETION_SCHEMA}"}, {"properties": {"phase": {"const": phase}}}]},
        },
        "examples": [{"name": name, "payload": payload} for name, payload in examples],
    }


def _example_completion(
    phase: str,
    status: str | None,
    outcome: JobOutcome | None,
    *,
    warning: str | None = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A followed m2.StartBatchJob job's message, as `Completion.to_document` writes it."""
    started = datetime(2026, 11, 23, 18, 20, 3, tzinfo=UTC)
    ended = datetime(2026, 11, 23, 18, 41, 17, tzinfo=UTC) if status != "Running" else started.replace(minute=21)
    aws_job = {"applicationId": "app-billing", "executionId": "5478ecb1-6edc-4f58-8229-6a1a52906b80"}
    describe = None
    if status is not None:
        describe = {
            **aws_job,
            "batchJobIdentifier": {"fileBatchJobIdentifier": {"fileName": "NIGHTLY.JCL", "folderPath": "jcl/"}},
            "jobName": "NIGHTLY",
            "jobType": "JES2",
            "startTime": "2026-11-23T18:20:04Z",
            "status": status,
        }
        if phase == FINISHED:
            describe.update({"endTime": "2026-11-23T18:41:02Z", "returnCode": "0004" if warning else "0000"})
    completion = Completion(
        phase=phase,
        job_id="job-0002",
        service="m2",
        operation="StartBatchJob",
        metadata={"team": "billing"},
        job_status=status,
        describe=describe,
        aws_job=aws_job,
        polls=1 if phase == PROGRESS else 9,
        started_at=started,
        finished_at=ended,
        job_outcome=None if outcome is None else str(outcome),
        warning=warning,
        error=error,
    )
    return completion.to_document()


def _dead_letter_message() -> dict[str, Any]:
    sample = dead_letter_headers(JobError("Code", "message", aws_request_id="id", http_status=400), 1, "a.B")
    properties = {
        name: {
            "type": "integer" if isinstance(value, int) else "string",
            "description": DEAD_LETTER_HEADER_DESCRIPTIONS[name],
        }
        for name, value in sample.items()
    }
    properties["x-dispatcher-category"]["enum"] = [str(category) for category in Category]
    properties["x-dispatcher-dead-lettered-at"]["format"] = "date-time"
    return {
        "name": "deadLetter",
        "title": "Dead letter",
        "summary": "The job's body byte for byte and its AMQP properties, with headers that say why.",
        "headers": {
            "type": "object",
            "required": [
                name for name in sample if name not in {"x-dispatcher-aws-request-id", "x-dispatcher-http-status"}
            ],
            "properties": properties,
        },
        "payload": {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {"description": "The job's body as it was published (it may not even be JSON)."},
        },
    }


def _routing_key_binding(exchange: str, kind: str) -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {"name": exchange, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"},
        "bindingVersion": AMQP_BINDING_VERSION,
    }


def _queue_binding(queue: str) -> dict[str, Any]:
    return {
        "is": "queue",
        "queue": {"name": queue, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"},
        "bindingVersion": AMQP_BINDING_VERSION,
    }


def _identifier(routing_key: str) -> str:
    return routing_key.replace(".", "_")


def _json(document: dict[str, Any]) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


class _PlainDumper(yaml.SafeDumper):
    """Writes a structure used twice in full both times: no YAML anchors for a reader to chase."""

    def ignore_aliases(self, data: object) -> bool:  # noqa: ARG002
        return True


def _yaml(document: dict[str, Any]) -> str:
    header = "# Generated by tools/write_schemas.py from the code (`make schemas`); do not edit.\n"
    return header + yaml.dump(document, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=110)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the files, or with `--check` print a diff of each stale one and return 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff if a committed file is stale")
    arguments = parser.parse_args(argv)
    stale = False
    for relative_path, rendered in render().items():
        path = DOCS / relative_path
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        if rendered == committed:
            continue
        if arguments.check:
            stale = True
            sys.stdout.writelines(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    rendered.splitlines(keepends=True),
                    fromfile=f"docs/{relative_path} (committed)",
                    tofile=f"docs/{relative_path} (from the code)",
                )
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered, encoding="utf-8")
    if stale:
        print("stale: run `make schemas`", file=sys.stderr)
    return int(stale)


if __name__ == "__main__":
    sys.exit(main())
