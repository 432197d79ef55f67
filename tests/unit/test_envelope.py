"""Decoding a job message: every rule of contract section 2, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from dispatcher.envelope import Decoder, idempotency_token, json_path
from dispatcher.errors import Category, InvalidJob, JobError
from dispatcher.examples import example_job
from dispatcher.registry import default_registry

REGISTRY = default_registry()
DECODER = Decoder(REGISTRY, "us-east-1", ("us-east-1", "eu-west-1"), max_message_bytes=10_000)
M2 = "m2.StartBatchJob"
LOOKOUT = "lookoutequipment.StartDataIngestionJob"


def decode(body: dict[str, object] | bytes, routing_key: str = M2, message_id: str | None = None):
    """Decode a body given as a dict or raw bytes."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return DECODER.decode(raw, routing_key, message_id)


def failure(body: dict[str, object] | bytes, routing_key: str = M2, message_id: str | None = None) -> JobError:
    """The error decoding raises."""
    with pytest.raises(JobError) as caught:
        decode(body, routing_key, message_id)
    return caught.value


def test_good_job_becomes_the_exact_request():
    """A valid job decodes to the kwargs of the client call, region defaulted."""
    job = decode(example_job(M2, "j-1"))
    assert job.job_id == "j-1"
    assert job.region == "us-east-1"
    assert job.request["batchJobIdentifier"] == {
        "fileBatchJobIdentifier": {"fileName": "NIGHTLY.JCL", "folderPath": "jcl/"}
    }


def test_job_id_falls_back_to_message_id_and_is_required():
    """Without job_id the AMQP message_id is the identity; without both the job is invalid."""
    body = {k: v for k, v in example_job(M2, "x").items() if k != "job_id"}
    assert decode(body, message_id="msg-9").job_id == "msg-9"
    error = failure(body)
    assert (error.category, error.code) == (Category.INVALID, "MissingJobId")
    assert failure(body, message_id="has space").code == "InvalidJobId"


def test_token_derived_from_job_id_is_stable_and_publisher_token_wins():
    """Lookout gets a token derived from job_id; the same job_id always gives the same token."""
    job = decode(example_job(LOOKOUT, "j-7"), LOOKOUT)
    assert (
        job.request["ClientToken"]
        == idempotency_token("j-7")
        == decode(example_job(LOOKOUT, "j-7"), LOOKOUT).request["ClientToken"]
    )
    assert idempotency_token("j-8") != idempotency_token("j-7")
    own = example_job(LOOKOUT, "j-7")
    own["params"] = {**own["params"], "ClientToken": "mine"}
    assert decode(own, LOOKOUT).request["ClientToken"] == "mine"


def test_an_allow_list_restricts_regions():
    """With DISPATCHER_AWS_REGIONS set, a job may name only the regions listed."""
    assert decode(example_job(M2, "j", region="eu-west-1")).region == "eu-west-1"
    error = failure(example_job(M2, "j", region="ap-south-1"))
    assert error.code == "RegionNotEnabled"
    assert "DISPATCHER_AWS_REGIONS" in error.message


@pytest.mark.parametrize("region", ["ap-south-1", "eu-west-3", "me-central-1", "ap-southeast-9"])
def test_without_an_allow_list_any_region_of_the_partition_works(region):
    """Contract section 2: any region of the partition unless the deployment restricts regions."""
    anywhere = Decoder(REGISTRY, "us-east-1", (), max_message_bytes=10_000)
    body = orjson.dumps(example_job(M2, "j", region=region))
    assert anywhere.decode(body, M2, None).region == region


@pytest.mark.parametrize(("region", "why"), [("zz-north-1", "not an AWS region"), ("cn-north-1", "aws-cn partition")])
def test_names_that_are_no_region_of_the_partition_are_refused(region, why):
    """A made-up region, or one of another partition than the deployment's, never reaches AWS."""
    anywhere = Decoder(REGISTRY, "us-east-1", (), max_message_bytes=10_000)
    with pytest.raises(InvalidJob) as raised:
        anywhere.decode(orjson.dumps(example_job(M2, "j", region=region)), M2, None)
    assert raised.value.code == "RegionNotEnabled"
    assert why in raised.value.message


def test_expired_and_naive_not_after():
    """A passed not_after is `expired`; a timestamp without a zone is invalid."""
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert failure(example_job(M2, "j", not_after=past)).category is Category.EXPIRED
    assert failure(example_job(M2, "j", not_after="2030-01-01T00:00:00")).category is Category.INVALID


def test_every_failing_field_is_named_by_path():
    """All errors are reported at once, each with its JSON path."""
    body = example_job(M2, "j", metadata={"k": 1})
    body["params"] = {"applicationId": "a b", "jobParams": {"x": "y" * 2000}}
    envelope_error = failure(body)
    assert "metadata.k" in envelope_error.message
    body["metadata"] = {}
    error = failure(body)
    for path in ("params.applicationId", "params.batchJobIdentifier", "params.jobParams.x"):
        assert path in error.message


def test_size_limit_is_checked_before_parsing():
    """An oversized body is malformed without being parsed."""
    assert failure(b"{" * 20_000).code == "MessageTooLarge"


def test_json_path_quotes_keys_that_are_not_names():
    """Map keys with punctuation are quoted so the path stays readable."""
    assert json_path(("params", "jobParams", "9-x", "[key]")) == 'params.jobParams["9-x"] (the key)'
    assert json_path(("a", 0, "b")) == "a[0].b"


def test_envelope_error_does_not_hide_the_params_errors():
    """An unknown field and invalid params are reported together: every failing field at once."""
    body = {**example_job(M2, "j-1"), "colour": "red"}
    body["params"] = {k: v for k, v in body["params"].items() if k != "applicationId"}
    error = failure(body)
    assert (error.category, error.code) == (Category.INVALID, "InvalidJobMessage")
    assert "colour: Extra inputs are not permitted" in error.message
    assert "params.applicationId: Field required" in error.message


def test_envelope_error_of_an_unknown_operation_reports_the_envelope_alone():
    """With no known operation there are no params rules to apply: only the envelope's errors."""
    body = {**example_job(M2, "j-1"), "operation": "Nope", "colour": "red"}
    error = failure(body)
    assert error.code == "InvalidJobMessage"
    assert error.message == "colour: Extra inputs are not permitted"
