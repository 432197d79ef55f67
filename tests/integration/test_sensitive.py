"""End to end: what botocore marks `sensitive` stays out of results, the ledger and error messages.

Clean Rooms `StartProtectedJob` echoes `jobParameters` in its answer (the emulator does, as the
output shape says AWS does), and `jobParameters.parameters` is sensitive in both directions.
"""

from __future__ import annotations

import uuid

import orjson
import pytest
from redis.asyncio import Redis

from dispatcher.examples import example_job
from dispatcher.redact import REDACTED

CLEAN_ROOMS = "cleanrooms.StartProtectedJob"


def hidden() -> tuple[str, str]:
    """A parameter name and value no other test uses, so finding either anywhere is a leak."""
    tag = uuid.uuid4().hex[:10]
    return f"hiddenName_{tag}", f"hidden-value-{tag}"


def clean_rooms_job(job_id: str, parameters: dict[str, object]) -> dict[str, object]:
    """A Clean Rooms job with these `jobParameters.parameters`."""
    job = example_job(CLEAN_ROOMS, job_id)
    job["params"]["jobParameters"]["parameters"] = parameters  # type: ignore[index]
    return job


async def test_parameters_are_redacted_in_the_result_and_its_ledger_replay(start_worker, broker, emulator):
    """The AWS answer echoes the parameters; the result, and the result replayed from the ledger, do not."""
    name, value = hidden()
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    await start_worker()
    await broker.publish(clean_rooms_job(job_id, {name: value}), CLEAN_ROOMS)
    [first] = (await broker.collect_ids(broker.results_queue, [job_id]))[job_id]
    await broker.publish(clean_rooms_job(job_id, {name: value}), CLEAN_ROOMS)
    [replayed] = (await broker.collect_ids(broker.results_queue, [job_id]))[job_id]

    [call] = emulator.state.calls.to_json()
    assert call["outcome"] == "started", "AWS was called once; the second result came from the ledger"
    assert replayed.json().get("deduplicated") is True
    for message in (first, replayed):
        result = message.json()
        assert result["outcome"] == "succeeded"
        job_parameters = result["response"]["protectedJob"]["jobParameters"]
        assert job_parameters["parameters"] == REDACTED
        assert job_parameters["analysisTemplateArn"].startswith("arn:aws:cleanrooms:")
        assert name not in message.body.decode()
        assert value not in message.body.decode()


@pytest.mark.redis
async def test_the_redis_ledger_entry_holds_the_redacted_response(start_worker, broker, redis_url, prefix):
    """The shared ledger keeps the response for days: it is the redacted one."""
    name, value = hidden()
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    await start_worker(redis_url=redis_url)
    await broker.publish(clean_rooms_job(job_id, {name: value}), CLEAN_ROOMS)
    await broker.collect_ids(broker.results_queue, [job_id])

    redis = Redis.from_url(redis_url)
    try:
        key = f"{prefix}.jobs:ledger:{job_id}"
        entry = await redis.get(key)
        await redis.delete(key)
    finally:
        await redis.aclose()
    assert entry is not None, "no ledger entry, so this test proved nothing"
    assert orjson.loads(entry)["response"]["protectedJob"]["jobParameters"]["parameters"] == REDACTED
    assert name.encode() not in entry
    assert value.encode() not in entry


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("key", "params.jobParameters.parameters: <redacted key>: "),
        ("value", "params.jobParameters.parameters: <redacted value>: "),
    ],
)
async def test_an_invalid_parameter_is_reported_without_its_key(start_worker, broker, emulator, bad, says):
    """The error names the sensitive map, never the key (or value) that failed; the body is kept as sent."""
    name, value = hidden()
    parameters = {f"{name}-not-a-name": value} if bad == "key" else {name: "x" * 1001 + value}
    await start_worker()
    body = orjson.dumps(clean_rooms_job(f"job-{uuid.uuid4().hex[:12]}", parameters))
    await broker.publish(body, CLEAN_ROOMS)

    [dead] = await broker.collect(broker.dead_queue, 1)
    [result] = await broker.collect(broker.results_queue, 1)
    message = dead.headers["x-dispatcher-error-message"]
    message = message.decode() if isinstance(message, bytes) else message
    assert dead.body == body
    assert message.startswith(says)
    assert result.json()["error"]["message"] == message
    for text in (message, result.body.decode()):
        assert name not in text
        assert value not in text
    assert emulator.state.calls.to_json() == []
