"""`docs/schemas/completion.schema.json` says what `Completion.to_document` writes, for each phase and outcome."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from dispatcher.operations import JobOutcome
from dispatcher.results import FINISHED, PROGRESS, Completion, Result
from tools.write_schemas import ASYNCAPI, COMPLETION_SCHEMA, DOCS, RESULT_SCHEMA, render

STARTED = datetime(2026, 11, 23, 18, 20, 3, 60048, tzinfo=UTC)
ENDED = datetime(2026, 11, 23, 18, 41, 17, 87816, tzinfo=UTC)
AWS_JOB = {"applicationId": "app-billing", "executionId": "5478ecb1-6edc-4f58-8229-6a1a52906b80"}


def describe(status: str) -> dict[str, Any]:
    """A GetBatchJobExecution answer as the worker keeps it: AWS timestamps are still datetimes."""
    return {**AWS_JOB, "status": status, "startTime": STARTED, "jobName": "NIGHTLY"}


def completion(phase: str, status: str | None, outcome: JobOutcome | None, **fields: Any) -> Completion:
    """A completion or progress message of a followed m2 job."""
    return Completion(
        phase=phase,
        job_id="billing-nightly-2026-11-23",
        service="m2",
        operation="StartBatchJob",
        metadata={"team": "billing"},
        job_status=status,
        describe=None if status is None else describe(status),
        aws_job=AWS_JOB,
        polls=7,
        started_at=STARTED,
        finished_at=ENDED,
        job_outcome=None if outcome is None else str(outcome),
        **fields,
    )


REFUSED = {"code": "AccessDeniedException", "message": "GetBatchJobExecution was refused 5 times in a row"}
MESSAGES = {
    "succeeded": completion(FINISHED, "Succeeded", JobOutcome.SUCCEEDED),
    "succeeded with a warning": completion(
        FINISHED, "Succeeded With Warning", JobOutcome.SUCCEEDED, warning="AWS reported Succeeded With Warning"
    ),
    "failed": completion(FINISHED, "Failed", JobOutcome.FAILED),
    "cancelled": completion(FINISHED, "Cancelled", JobOutcome.CANCELLED),
    "timed-out while running": completion(FINISHED, "Running", JobOutcome.TIMED_OUT),
    "timed-out before any answer": completion(FINISHED, None, JobOutcome.TIMED_OUT),
    "unknown before any answer": completion(FINISHED, None, JobOutcome.UNKNOWN, error=REFUSED),
    "unknown after answers": completion(FINISHED, "Running", JobOutcome.UNKNOWN, error=REFUSED),
    "progress": completion(PROGRESS, "Running", None),
    "with a traceparent": completion(
        FINISHED,
        "Succeeded",
        JobOutcome.SUCCEEDED,
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
}


def schema(path: str) -> dict[str, Any]:
    """A committed schema."""
    return json.loads((DOCS / path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def validator(path: str = COMPLETION_SCHEMA) -> Draft202012Validator:
    """A validator of a committed schema, checking the formats this environment can check."""
    return Draft202012Validator(schema(path), format_checker=Draft202012Validator.FORMAT_CHECKER)


def body(message: Completion) -> dict[str, Any]:
    """The message as a consumer reads it: the JSON body the worker publishes."""
    return orjson.loads(message.to_json())  # type: ignore[no-any-return]


def test_the_committed_schema_is_a_valid_2020_12_schema() -> None:
    """The schema itself is well-formed."""
    Draft202012Validator.check_schema(schema(COMPLETION_SCHEMA))


def test_every_outcome_is_covered() -> None:
    """Each job_outcome, and both phases, have a message here."""
    outcomes = {message.job_outcome for message in MESSAGES.values()}
    assert outcomes == {*map(str, JobOutcome), None}
    assert {message.phase for message in MESSAGES.values()} == {FINISHED, PROGRESS}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_what_the_worker_publishes_is_valid(name: str) -> None:
    """The body of every kind of completion and progress message passes the committed schema."""
    errors = [error.message for error in validator().iter_errors(body(MESSAGES[name]))]
    assert errors == []


@pytest.mark.parametrize("field", schema(COMPLETION_SCHEMA)["required"])
def test_a_message_missing_a_required_field_fails(field: str) -> None:
    """Each required field is needed, in both phases."""
    for message in (MESSAGES["succeeded"], MESSAGES["progress"]):
        document = body(message)
        del document[field]
        assert not validator().is_valid(document), field


def test_required_is_what_to_document_always_writes() -> None:
    """The fields every message has are the required ones; the others are the optional ones."""
    always = set.intersection(*(set(body(message)) for message in MESSAGES.values()))
    everything = set.union(*(set(body(message)) for message in MESSAGES.values()))
    committed = schema(COMPLETION_SCHEMA)
    assert always == set(committed["required"])
    assert everything == set(committed["properties"])


@pytest.mark.parametrize(
    ("base", "change"),
    [
        ("progress", {"job_outcome": "succeeded"}),  # progress carries no outcome
        ("progress", {"warning": "AWS reported Succeeded With Warning"}),
        ("succeeded", {"job_outcome": None}),  # a completion always has one
        ("succeeded", {"job_outcome": "done"}),
        ("succeeded", {"phase": "ended"}),
        ("unknown before any answer", {"error": None}),  # unknown says why
        ("failed", {"error": {"code": "X", "message": "y"}}),  # only unknown has an error
        ("failed", {"warning": "AWS reported Failed"}),  # only a success has a warning
        ("succeeded", {"polls": -1}),
        ("succeeded", {"started_at": 1764440403}),  # RFC 3339 text, not a number
        ("succeeded", {"metadata": {"team": 1}}),
        ("succeeded", {"aws_job": {"executionId": None}}),
        ("succeeded", {"outcome": "succeeded"}),  # a start result's field
        ("unknown before any answer", {"error": {"code": "X"}}),
    ],
)
def test_what_the_worker_never_publishes_fails(base: str, change: dict[str, Any]) -> None:
    """The schema is as strict as the code: fields out of place or of the wrong type are refused."""
    document = body(MESSAGES[base])
    for field, value in change.items():
        if value is None:
            document.pop(field, None)
        else:
            document[field] = value
    assert not validator().is_valid(document)


def test_the_start_result_of_a_followed_job_is_valid() -> None:
    """`following: true` is in the result schema."""
    result = Result(
        job_id="j-1",
        service="m2",
        operation="StartBatchJob",
        outcome="succeeded",
        started_at=STARTED,
        finished_at=ENDED,
        attempts=1,
        response={"executionId": AWS_JOB["executionId"]},
        following=True,
    )
    document = orjson.loads(result.to_json())
    assert document["following"] is True
    assert validator(RESULT_SCHEMA).is_valid(document)
    assert not validator(RESULT_SCHEMA).is_valid({**document, "following": "yes"})
    assert "following" not in replace(result, following=False).to_document()


def test_asyncapi_completion_and_progress_examples_are_valid() -> None:
    """The AsyncAPI document's completion and progress messages: their examples pass their own payload schema."""
    document = yaml.safe_load(render()[ASYNCAPI])
    resource = Resource.from_contents(schema(COMPLETION_SCHEMA))
    registry = Registry().with_resource(f"./{COMPLETION_SCHEMA}", resource)
    for name, phase in (("completion", FINISHED), ("progress", PROGRESS)):
        message = document["components"]["messages"][name]
        checker = Draft202012Validator(message["payload"]["schema"], registry=registry)
        assert message["examples"]
        for example in message["examples"]:
            assert example["payload"]["phase"] == phase
            assert list(checker.iter_errors(example["payload"])) == [], example["name"]
        assert not checker.is_valid({**message["examples"][0]["payload"], "phase": "other"})
    results = document["channels"]["results"]
    assert {"completion", "progress"} <= set(results["messages"])
    assert {FINISHED, PROGRESS} <= set(results["parameters"]["outcome"]["enum"])
