"""The emulator is as strict as AWS: botocore's model, not the dispatcher's wider one, and AWS's route labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from dispatcher.emulator import EmulatedOperation, registered_operations, start_emulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from dispatcher.emulator import RunningEmulator

ACCOUNT = "123456789012"
GROUP = "7c1e9f3a-2b4d-4e6f-8a0b-1c2d3e4f5a6b"
AUTOMATION = "1f2e3d4c-5b6a-4789-9abc-def012345678"
LOOKOUT_PARAMS = {
    "DatasetName": "pumps",
    "IngestionInputConfiguration": {"S3InputConfiguration": {"Bucket": "sensor-data"}},
    "RoleArn": "arn:aws:iam::123456789012:role/lookout-ingestion",
}


@pytest.fixture(scope="module")
def operations() -> tuple[EmulatedOperation, ...]:
    """Every registered operation."""
    return registered_operations()


@pytest_asyncio.fixture
async def emulator(operations: tuple[EmulatedOperation, ...]) -> AsyncIterator[RunningEmulator]:
    """An emulator on an ephemeral loopback port."""
    async with start_emulator(operations=operations) as running:
        yield running


async def _client_call(emulator: RunningEmulator, service: str, method: str, **params: Any) -> dict[str, Any]:
    async with get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=emulator.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - the emulator ignores credentials
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as client:
        response: dict[str, Any] = await getattr(client, method)(**params)
        return response


async def _raw(
    emulator: RunningEmulator, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A request as no botocore client would send it: the status, headers and JSON answer."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{emulator.url}{path}", json=body, headers=headers or {}) as response,
    ):
        answer = await response.json(content_type=None)
        # The error message member is `Message` or `message` depending on the service.
        answer["_message"] = next((value for key, value in answer.items() if key.lower() == "message"), "")
        return response.status, dict(response.headers), answer


def _quicksight_path(account: str = ACCOUNT, group: str = GROUP, automation: str = AUTOMATION) -> str:
    labels = [quote(label, safe="") for label in (account, group, automation)]
    return "/accounts/{}/automation-groups/{}/automations/{}/jobs".format(*labels)


@pytest.mark.asyncio
async def test_m2_application_id_with_braces_starts_a_job(emulator: RunningEmulator) -> None:
    r"""`app{1}` matches M2's `^\S{1,80}$`; AWS takes it in the path, so the emulator must route it."""
    response = await _client_call(
        emulator,
        "m2",
        "start_batch_job",
        applicationId="app{1}",
        batchJobIdentifier={"fileBatchJobIdentifier": {"fileName": "PAYROLL.jcl"}},
    )
    assert response["executionId"]
    [logged] = emulator.state.calls.to_json("m2.StartBatchJob")
    assert (logged["outcome"], logged["params"]["applicationId"]) == ("started", "app{1}")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("account", "group"),
    [("12345678901{", GROUP), (ACCOUNT, "{7c1e9f3a-2b4d-4e6f-8a0b-1c2d3e4f5a6b}"), ("}", "{")],
)
async def test_quicksight_ids_with_braces_are_invalid_parameter_values(
    emulator: RunningEmulator, account: str, group: str
) -> None:
    """An id with `{` or `}` reaches validation: AWS's modeled 400 with a request id, not a bare 404."""
    status, headers, answer = await _raw(emulator, _quicksight_path(account, group), {"InputPayload": '{"a":1}'})
    assert status == 400
    assert headers["x-amzn-RequestId"]
    assert headers["x-amzn-ErrorType"].startswith("InvalidParameterValueException")
    assert "AwsAccountId" in answer["_message"] or "AutomationGroupId" in answer["_message"]


@pytest.mark.asyncio
async def test_lookout_call_without_client_token_is_refused(
    emulator: RunningEmulator, operations: tuple[EmulatedOperation, ...]
) -> None:
    """Lookout for Equipment's model requires `ClientToken`; botocore fills it, a hand-made call must send it."""
    [lookout] = [op for op in operations if op.routing_key == "lookoutequipment.StartDataIngestionJob"]
    target = f"{lookout.model.service_model.metadata['targetPrefix']}.StartDataIngestionJob"
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"}
    status, _, answer = await _raw(emulator, "/", LOOKOUT_PARAMS, headers)
    assert status == 400
    assert answer["__type"].endswith("ValidationException")
    assert "'ClientToken'" in answer["_message"]
    status, _, answer = await _raw(emulator, "/", {**LOOKOUT_PARAMS, "ClientToken": "token-1"}, headers)
    assert status == 200, answer


@pytest.mark.asyncio
async def test_quicksight_input_payload_object_on_the_wire_is_refused(emulator: RunningEmulator) -> None:
    """AWS takes `InputPayload` as a string; the object form is the dispatcher's, not the API's."""
    status, _, answer = await _raw(emulator, _quicksight_path(), {"InputPayload": {"a": 1}})
    assert status == 400
    assert "InputPayload" in answer["_message"]
    status, _, answer = await _raw(emulator, _quicksight_path(), {"InputPayload": '{"a":1}'})
    assert status == 200, answer
