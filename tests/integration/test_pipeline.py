"""End to end: jobs published to RabbitMQ start AWS jobs on the emulator, or are dead-lettered with why."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from dispatcher.emulator import parse_faults
from dispatcher.examples import example_job
from dispatcher.operations import OPERATION_SPECS

ROUTING_KEYS = [spec.routing_key for spec in OPERATION_SPECS]


def new_id() -> str:
    """A fresh job id."""
    return f"job-{uuid.uuid4().hex[:12]}"


async def test_every_operation_succeeds_end_to_end(start_worker, broker, emulator):
    """One job of each operation ends as a succeeded result carrying the AWS response."""
    await start_worker()
    ids = {key: new_id() for key in ROUTING_KEYS}
    for key, job_id in ids.items():
        await broker.publish(example_job(key, job_id, metadata={"team": "billing"}), key)

    results = await broker.collect_ids(broker.results_queue, ids.values())

    for key, job_id in ids.items():
        [message] = results[job_id]
        result = message.json()
        assert message.routing_key == f"{key}.succeeded"
        assert message.properties["message_id"] == job_id
        assert result["outcome"] == "succeeded"
        assert (result["service"], result["operation"]) == tuple(key.split("."))
        assert result["attempts"] == 1
        assert result["metadata"] == {"team": "billing"}
        assert result["response"], key
        assert "ResponseMetadata" not in result["response"]
        assert result["aws_request_id"]
    calls = emulator.state.calls.to_json()
    assert sorted(call["routing_key"] for call in calls) == sorted(ROUTING_KEYS)


async def test_quicksight_payload_object_is_sent_compact(start_worker, broker, emulator):
    """An InputPayload given as an object reaches AWS as compact JSON text."""
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job("quicksight.StartAutomationJob", job_id), "quicksight.StartAutomationJob")
    results = await broker.collect_ids(broker.results_queue, [job_id])
    # The emulator checks InputPayload against the API's pattern, which refuses a newline.
    assert results[job_id][0].json()["outcome"] == "succeeded"
    [call] = emulator.state.calls.to_json()
    assert call["outcome"] == "started"


async def test_token_is_derived_from_job_id_so_a_second_worker_starts_no_second_job(start_worker, broker, emulator):
    """The same job run by two workers (no shared ledger) reaches AWS with one token: one AWS job."""
    key = "lookoutequipment.StartDataIngestionJob"
    job_id = new_id()
    first = await start_worker()
    await broker.publish(example_job(key, job_id), key)
    await broker.collect_ids(broker.results_queue, [job_id])
    first.stop()
    await start_worker()
    await broker.publish(example_job(key, job_id), key)
    results = await broker.collect_ids(broker.results_queue, [job_id])

    calls = emulator.state.calls.to_json()
    assert len(calls) == 2
    assert calls[0]["idempotency_token"] == calls[1]["idempotency_token"]
    assert sum(1 for call in calls if call["new_job"]) == 1
    assert results[job_id][0].json()["outcome"] == "succeeded"


async def test_reply_to_receives_the_result_with_correlation_id(start_worker, broker):
    """A job with reply_to gets its result on that queue, correlated."""
    await start_worker()
    reply = await broker.channel.declare_queue(f"{broker.prefix}.replies", exclusive=True)
    job_id = new_id()
    await broker.publish(
        example_job("m2.StartBatchJob", job_id), "m2.StartBatchJob", reply_to=reply.name, correlation_id="corr-7"
    )
    [message] = await broker.collect(reply.name, 1)
    assert message.properties["correlation_id"] == "corr-7"
    assert message.json()["job_id"] == job_id
    assert message.json()["outcome"] == "succeeded"


def _bad_cases() -> list[tuple[str, bytes, str, dict[str, object], str, str, str]]:
    """(name, body, routing key, properties, category, error code, text the message must contain)."""
    m2 = "m2.StartBatchJob"
    good = example_job(m2, "job-bad")
    params = dict(good["params"])

    def body(**changes: object) -> bytes:
        return orjson.dumps({**good, **changes})

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return [
        ("not-utf8", b'{"job_id": "\xff"}', m2, {}, "malformed", "NotUtf8", "UTF-8"),
        ("not-json", b"{job_id: 1", m2, {}, "malformed", "NotJson", "not JSON"),
        ("not-object", b"[1, 2]", m2, {}, "malformed", "NotAnObject", "not an object"),
        ("too-large", b'{"x": "' + b"a" * 70_000 + b'"}', m2, {}, "malformed", "MessageTooLarge", "over the limit"),
        ("unknown-routing-key", body(), "m2.StopBatchJob", {}, "unroutable", "UnknownRoutingKey", "m2.StopBatchJob"),
        (
            "unknown-operation",
            body(operation="StopBatchJob"),
            m2,
            {},
            "unroutable",
            "UnknownOperation",
            "m2.StopBatchJob",
        ),
        (
            "routing-mismatch",
            orjson.dumps(example_job("datazone.StartDataSourceRun", "job-bad")),
            m2,
            {},
            "invalid",
            "RoutingKeyMismatch",
            "datazone.StartDataSourceRun",
        ),
        ("unknown-field", body(priority="high"), m2, {}, "invalid", "InvalidJobMessage", "priority"),
        (
            "constraint",
            body(params={**params, "jobParams": {"9bad": "x"}}),
            m2,
            {},
            "invalid",
            "InvalidParameters",
            "params.jobParams",
        ),
        (
            "union-two-members",
            body(
                params={
                    **params,
                    "batchJobIdentifier": {
                        "fileBatchJobIdentifier": {"fileName": "a"},
                        "scriptBatchJobIdentifier": {"scriptName": "b"},
                    },
                }
            ),
            m2,
            {},
            "invalid",
            "InvalidParameters",
            "params.batchJobIdentifier",
        ),
        ("expired", body(not_after=past), m2, {}, "expired", "JobExpired", "not_after"),
    ]


@pytest.mark.parametrize(
    ("body", "routing_key", "properties", "category", "code", "text"),
    [case[1:] for case in _bad_cases()],
    ids=[case[0] for case in _bad_cases()],
)
async def test_bad_input_is_dead_lettered_with_reason_and_identical_body(
    start_worker, broker, emulator, body, routing_key, properties, category, code, text
):
    """Each kind of bad input ends in the dead-letter queue, byte-identical, with category, code and reason."""
    await start_worker(max_message_bytes=64 * 1024)
    message_id = properties.pop("message_id", new_id())
    await broker.publish(body, routing_key, message_id=message_id or None, **properties)

    [dead] = await broker.collect(broker.dead_queue, 1)
    assert dead.body == body
    assert dead.headers["x-dispatcher-category"] == category
    assert dead.headers["x-dispatcher-error-code"] == code
    assert text in dead.headers["x-dispatcher-error-message"]
    assert dead.headers["x-dispatcher-attempts"] == 0
    assert dead.headers["x-dispatcher-original-routing-key"] == routing_key
    assert datetime.fromisoformat(dead.headers["x-dispatcher-dead-lettered-at"])
    assert dead.properties["message_id"] == (message_id or None)

    [result] = await broker.collect(broker.results_queue, 1)
    assert result.json()["outcome"] == "failed"
    assert result.json()["error"]["category"] == category
    assert emulator.state.calls.to_json() == []


async def test_worker_keeps_serving_after_bad_input(start_worker, broker):
    """Garbage first, then a good job: the good job still succeeds."""
    await start_worker()
    for garbage in (b"\x00\x01", b"null", b"{}"):
        await broker.publish(garbage, "m2.StartBatchJob")
    job_id = new_id()
    await broker.publish(example_job("m2.StartBatchJob", job_id), "m2.StartBatchJob")
    results = await broker.collect_ids(broker.results_queue, [job_id])
    assert results[job_id][0].json()["outcome"] == "succeeded"


async def test_aws_validation_error_is_rejected_with_request_id(start_worker, broker, emulator):
    """A non-retryable AWS error dead-letters at once as `rejected`, with the AWS request id and status."""
    emulator.state.replace_faults(
        parse_faults({"datazone.StartDataSourceRun": {"error_rate": 1.0, "error_code": "AccessDeniedException"}})
    )
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job("datazone.StartDataSourceRun", job_id), "datazone.StartDataSourceRun")
    [dead] = await broker.collect(broker.dead_queue, 1)
    assert dead.headers["x-dispatcher-category"] == "rejected"
    assert dead.headers["x-dispatcher-error-code"] == "AccessDeniedException"
    assert dead.headers["x-dispatcher-http-status"] == 403
    assert dead.headers["x-dispatcher-aws-request-id"]
    assert dead.headers["x-dispatcher-attempts"] == 1
    assert len(emulator.state.calls.to_json()) == 1


async def test_retryable_errors_are_retried_then_exhausted(start_worker, broker, emulator):
    """5xx answers are retried through the retry queues; after the last attempt the job is `exhausted`."""
    emulator.state.replace_faults(
        parse_faults({"m2.StartBatchJob": {"error_rate": 1.0, "error_code": "InternalServerException"}})
    )
    await start_worker(retry_delays=[0.1, 0.2])
    job_id = new_id()
    await broker.publish(example_job("m2.StartBatchJob", job_id), "m2.StartBatchJob")
    [dead] = await broker.collect(broker.dead_queue, 1, timeout_s=30)
    assert dead.headers["x-dispatcher-category"] == "exhausted"
    assert dead.headers["x-dispatcher-attempts"] == 3
    message = dead.headers["x-dispatcher-error-message"]
    assert "InternalServerException, InternalServerException, InternalServerException" in message
    assert dead.body == orjson.dumps(example_job("m2.StartBatchJob", job_id))
    assert len(emulator.state.calls.to_json()) == 3


async def test_lost_answer_of_tokenless_job_is_unknown_outcome(start_worker, broker, emulator):
    """A connection dropped after M2 started the job is dead-lettered `unknown-outcome`, never retried."""
    emulator.state.replace_faults(parse_faults({"m2.StartBatchJob": {"drop_rate": 1.0, "drop_phase": "after_start"}}))
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job("m2.StartBatchJob", job_id), "m2.StartBatchJob")
    [dead] = await broker.collect(broker.dead_queue, 1)
    assert dead.headers["x-dispatcher-category"] == "unknown-outcome"
    assert "no idempotency token" in dead.headers["x-dispatcher-error-message"]
    assert len(emulator.state.calls.to_json()) == 1


async def test_lost_answer_of_token_job_is_retried_with_the_same_token(start_worker, broker, emulator):
    """DataZone has a token: after a dropped answer it is retried, and AWS sees one job."""
    emulator.state.replace_faults(
        parse_faults({"datazone.StartDataSourceRun": {"drop_rate": 1.0, "drop_phase": "after_start"}})
    )
    await start_worker(retry_delays=[0.3])
    job_id = new_id()
    await broker.publish(example_job("datazone.StartDataSourceRun", job_id), "datazone.StartDataSourceRun")
    await _wait_for_calls(emulator, 1)
    emulator.state.replace_faults({})
    results = await broker.collect_ids(broker.results_queue, [job_id])
    assert results[job_id][0].json()["outcome"] == "succeeded"
    calls = emulator.state.calls.to_json()
    assert len({call["idempotency_token"] for call in calls}) == 1
    assert sum(1 for call in calls if call["new_job"]) == 1


async def _wait_for_calls(emulator, count: int) -> None:
    async with asyncio.timeout(10):
        while len(emulator.state.calls.to_json()) < count:
            await asyncio.sleep(0.02)
