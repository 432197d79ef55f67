"""End to end: a QuickSight `InputPayload` object reaches AWS with its numbers exactly as published.

The emulator's call log shows `InputPayload` redacted (the model marks it sensitive), so the test
reads what AWS received where the emulator reads it.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from dispatcher.emulator import calls
from dispatcher.examples import example_job

QUICKSIGHT = "quicksight.StartAutomationJob"
PAYLOAD = (
    b'{"n": 123456789012345678901234567890, "d": 0.1000000000000000055511151231257827, "e": 1e400,'
    b' "rows": [18446744073709551616, -1e-400, 2.50]}'
)
AS_SENT = (
    '{"n":123456789012345678901234567890,"d":0.1000000000000000055511151231257827,"e":1e400,'
    '"rows":[18446744073709551616,-1e-400,2.50]}'
)


async def test_big_and_precise_numbers_reach_aws_as_written(start_worker, broker, emulator, monkeypatch):
    """Integers beyond 64 bits, decimals beyond a double and exponents beyond its range arrive unchanged."""
    received: list[dict[str, Any]] = []
    read_params = calls.read_params

    async def recording(request: Any, operation: Any) -> dict[str, Any]:
        params = await read_params(request, operation)
        received.append(params)
        return params

    monkeypatch.setattr(calls, "read_params", recording)
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    job = example_job(QUICKSIGHT, job_id)
    job["params"]["InputPayload"] = "PAYLOAD"
    body = orjson.dumps(job).replace(b'"PAYLOAD"', PAYLOAD)
    await start_worker()
    await broker.publish(body, QUICKSIGHT)

    [result] = (await broker.collect_ids(broker.results_queue, [job_id]))[job_id]
    assert result.json()["outcome"] == "succeeded"
    [params] = received
    assert params["InputPayload"] == AS_SENT
