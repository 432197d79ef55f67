"""The operation registry: a sixth operation is one entry plus its generated model."""

from __future__ import annotations

import orjson
import pytest

from dispatcher.envelope import Decoder
from dispatcher.errors import JobError
from dispatcher.operations import OPERATION_SPECS, Operation, OperationSpec
from dispatcher.registry import Registry, default_registry
from tests.unit.test_generated_params_fresh import _generated


def test_default_registry_serves_the_five_contract_routing_keys():
    """The registry holds exactly the contract's five routing keys, tokens where the APIs have them."""
    registry = default_registry()
    assert registry.routing_keys == (
        "quicksight.StartAutomationJob",
        "lookoutequipment.StartDataIngestionJob",
        "datazone.StartDataSourceRun",
        "m2.StartBatchJob",
        "cleanrooms.StartProtectedJob",
    )
    tokens = {op.routing_key: op.idempotency_token_member for op in registry}
    assert tokens == {
        "quicksight.StartAutomationJob": None,
        "lookoutequipment.StartDataIngestionJob": "ClientToken",
        "datazone.StartDataSourceRun": "clientToken",
        "m2.StartBatchJob": None,
        "cleanrooms.StartProtectedJob": None,
    }
    assert len(registry) == len(OPERATION_SPECS)


def test_an_operation_outside_the_five_registers_and_validates_a_job():
    """Glue StartJobRun, registered with its generated model, decodes a job and rejects a bad one."""
    spec = OperationSpec("glue", "StartJobRun")
    registry = default_registry()
    registry.register(
        Operation(spec=spec, params_model=_generated("glue", "StartJobRun"), idempotency_token_member=None)
    )
    decoder = Decoder(registry, "us-east-1", ("us-east-1",), max_message_bytes=10_000)
    body = {"job_id": "g-1", "service": "glue", "operation": "StartJobRun", "params": {"JobName": "nightly"}}

    job = decoder.decode(orjson.dumps(body), "glue.StartJobRun", None)
    assert job.request == {"JobName": "nightly"}
    assert job.operation.iam_actions == ("glue:StartJobRun",)

    body["params"] = {"JobName": "nightly", "NumberOfWorkers": "ten"}
    with pytest.raises(JobError, match=r"params\.NumberOfWorkers"):
        decoder.decode(orjson.dumps(body), "glue.StartJobRun", None)


def test_a_routing_key_registers_once():
    """Registering the same operation twice is refused."""
    registry = Registry(default_registry())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(next(iter(default_registry())))
