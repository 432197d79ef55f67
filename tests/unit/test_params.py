"""The parameter models of the five operations: AWS's constraints, the contract's rules, the dump."""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from dispatcher.operations import OPERATION_SPECS
from dispatcher.params import PARAMS_MODELS

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

QUICKSIGHT = ("quicksight", "StartAutomationJob")
LOOKOUT = ("lookoutequipment", "StartDataIngestionJob")
DATAZONE = ("datazone", "StartDataSourceRun")
M2 = ("m2", "StartBatchJob")
CLEANROOMS = ("cleanrooms", "StartProtectedJob")

ROLE_ARN = "arn:aws:iam::123456789012:role/LookoutIngest"
TEMPLATE_ARN = "arn:aws:cleanrooms:us-east-1:123456789012:membership/m-1/analysistemplate/t-1"

VALID_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    QUICKSIGHT: {
        "AwsAccountId": "123456789012",
        "AutomationGroupId": "0123abcd-ABCD-0000-ffff-0123456789ab",
        "AutomationId": "89abcdef-0000-1111-2222-333344445555",
        "InputPayload": '{"report":"daily"}',
    },
    LOOKOUT: {
        "DatasetName": "pump-telemetry",
        "IngestionInputConfiguration": {
            "S3InputConfiguration": {
                "Bucket": "sensor-data",
                "Prefix": "input/",
                "KeyPattern": "{prefix}/{component_name}/*",
            },
        },
        "RoleArn": ROLE_ARN,
        "ClientToken": "job-42",
    },
    DATAZONE: {"domainIdentifier": "dzd_abc123", "dataSourceIdentifier": "ds-1", "clientToken": "job-42"},
    M2: {
        "applicationId": "app-1",
        "authSecretsManagerArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:m2",
        "batchJobIdentifier": {
            "s3BatchJobIdentifier": {"bucket": "jobs", "identifier": {"scriptName": "run.groovy"}, "keyPrefix": "a/"},
        },
        "jobParams": {"Day": "2024-01-01", "Mode": ""},
    },
    CLEANROOMS: {
        "type": "PYSPARK",
        "membershipIdentifier": "0123abcd-0000-4000-8000-0123456789ab",
        "jobParameters": {"analysisTemplateArn": TEMPLATE_ARN, "parameters": {"run_date": "2024-01-01"}},
        "resultConfiguration": {"outputConfiguration": {"member": {"accountId": "123456789012"}}},
        "computeConfiguration": {
            "worker": {"type": "CR.4X", "number": 16, "properties": {"spark": {"spark.executor.memory": "8g"}}},
        },
        "jobComputePayerAccountId": "210987654321",
    },
}

M2_BATCH_JOB_FORMS: list[dict[str, Any]] = [
    {"fileBatchJobIdentifier": {"fileName": "JOB1.jcl", "folderPath": "jcl/"}},
    {"scriptBatchJobIdentifier": {"scriptName": "run.groovy"}},
    {"s3BatchJobIdentifier": {"bucket": "jobs", "identifier": {"fileName": "JOB1.jcl"}}},
    {
        "restartBatchJobIdentifier": {
            "executionId": "exec-1",
            "jobStepRestartMarker": {"fromStep": "STEP1", "skip": True, "stepCheckpoint": 3, "toStep": "STEP9"},
        },
    },
]


def _params(operation: tuple[str, str], path: tuple[str, ...] = (), value: object = None) -> dict[str, Any]:
    """A copy of the operation's valid params, with the member at `path` set to `value` if given."""
    params = copy.deepcopy(VALID_PARAMS[operation])
    if path:
        parent = params
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
        parent[path[-1]] = value
    return params


def _request(operation: tuple[str, str], params: dict[str, Any]) -> dict[str, Any]:
    """Validate as the worker does and return the keyword arguments it would pass to aiobotocore."""
    model = PARAMS_MODELS[operation].params_model.model_validate(params)
    request: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True)
    return request


def _errors(operation: tuple[str, str], params: dict[str, Any]) -> list[ErrorDetails]:
    with pytest.raises(ValidationError) as info:
        PARAMS_MODELS[operation].params_model.model_validate(params)
    return info.value.errors()


def test_every_registered_operation_has_a_model() -> None:
    """`PARAMS_MODELS` holds exactly the operations of `OPERATION_SPECS`."""
    assert set(PARAMS_MODELS) == {(spec.service, spec.operation) for spec in OPERATION_SPECS}


@pytest.mark.parametrize("operation", list(VALID_PARAMS))
def test_valid_params_dump_to_the_same_request(operation: tuple[str, str]) -> None:
    """Validating and dumping gives back AWS's member names and values unchanged, nested ones too."""
    assert _request(operation, _params(operation)) == VALID_PARAMS[operation]


@pytest.mark.parametrize("form", M2_BATCH_JOB_FORMS)
def test_each_m2_batch_job_form_round_trips(form: dict[str, Any]) -> None:
    """Each of the four forms of M2's `batchJobIdentifier` union is accepted and dumped unchanged."""
    params = _params(M2, ("batchJobIdentifier",), form)
    assert _request(M2, params) == params


@pytest.mark.parametrize(
    ("operation", "path", "value", "error_type"),
    [
        (QUICKSIGHT, ("AwsAccountId",), "12345678901", "string_too_short"),
        (QUICKSIGHT, ("AwsAccountId",), "1234567890123", "string_too_long"),
        (QUICKSIGHT, ("InputPayload",), "", "string_too_short"),
        (QUICKSIGHT, ("InputPayload",), "[" + "1" * 6_999_999 + "]", "string_too_long"),
        (LOOKOUT, ("DatasetName",), "d" * 201, "string_too_long"),
        (LOOKOUT, ("DatasetName",), "", "string_too_short"),
        (LOOKOUT, ("ClientToken",), "t" * 257, "string_too_long"),
        (LOOKOUT, ("ClientToken",), "", "string_too_short"),
        (LOOKOUT, ("RoleArn",), ROLE_ARN + "r" * (2049 - len(ROLE_ARN)), "string_too_long"),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "Bucket"), "ab", "string_too_short"),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "Bucket"), "b" * 64, "string_too_long"),
        (
            LOOKOUT,
            ("IngestionInputConfiguration", "S3InputConfiguration", "Prefix"),
            "p" * 1024 + "/",
            "string_too_long",
        ),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "KeyPattern"), "", "string_too_short"),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "KeyPattern"), "k" * 2049, "string_too_long"),
        (M2, ("applicationId",), "a" * 81, "aws_pattern_mismatch"),
        (M2, ("authSecretsManagerArn",), "a" * 19, "string_too_short"),
        (M2, ("authSecretsManagerArn",), "a" * 2049, "string_too_long"),
        (M2, ("jobParams",), {f"P{index}": "v" for index in range(501)}, "too_long"),
        (M2, ("jobParams",), {"P" + "a" * 32: "v"}, "string_too_long"),
        (M2, ("jobParams",), {"P": "v"}, "aws_pattern_mismatch"),
        (M2, ("jobParams",), {"Param": "v" * 1025}, "string_too_long"),
        (CLEANROOMS, ("membershipIdentifier",), "0123abcd-0000-4000-8000-0123456789a", "string_too_short"),
        (
            CLEANROOMS,
            ("jobParameters", "analysisTemplateArn"),
            TEMPLATE_ARN + "x" * (201 - len(TEMPLATE_ARN)),
            "string_too_long",
        ),
        (CLEANROOMS, ("jobParameters", "parameters"), {"n" * 101: "v"}, "string_too_long"),
        (CLEANROOMS, ("jobParameters", "parameters"), {"name": "v" * 1001}, "string_too_long"),
        (CLEANROOMS, ("computeConfiguration", "worker", "number"), 3, "greater_than_equal"),
        (CLEANROOMS, ("computeConfiguration", "worker", "number"), 1025, "less_than_equal"),
        (
            CLEANROOMS,
            ("computeConfiguration", "worker", "properties", "spark"),
            {f"k{i}": "v" for i in range(51)},
            "too_long",
        ),
        (CLEANROOMS, ("computeConfiguration", "worker", "properties", "spark"), {"k" * 201: "v"}, "string_too_long"),
        (CLEANROOMS, ("computeConfiguration", "worker", "properties", "spark"), {"": "v"}, "string_too_short"),
        (CLEANROOMS, ("computeConfiguration", "worker", "properties", "spark"), {"k": "v" * 501}, "string_too_long"),
        (CLEANROOMS, ("jobComputePayerAccountId",), "1234567890123", "string_too_long"),
        (CLEANROOMS, ("type",), "pyspark", "literal_error"),
        (CLEANROOMS, ("computeConfiguration", "worker", "type"), "CR.2X", "literal_error"),
    ],
)
def test_constraint_just_past_its_limit_is_refused(
    operation: tuple[str, str], path: tuple[str, ...], value: object, error_type: str
) -> None:
    """A value one step past an AWS length, size, range or enum limit fails with that limit's error."""
    assert error_type in {error["type"] for error in _errors(operation, _params(operation, path, value))}


@pytest.mark.parametrize(
    ("operation", "path", "value"),
    [
        (QUICKSIGHT, ("InputPayload",), "[" + "1" * 6_999_998 + "]"),
        (LOOKOUT, ("DatasetName",), "d" * 200),
        (LOOKOUT, ("ClientToken",), "t" * 256),
        (LOOKOUT, ("RoleArn",), ROLE_ARN + "r" * (2048 - len(ROLE_ARN))),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "Bucket"), "abc"),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "Bucket"), "b" * 63),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "Prefix"), "p" * 1023 + "/"),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "Prefix"), ""),
        (LOOKOUT, ("IngestionInputConfiguration", "S3InputConfiguration", "KeyPattern"), "k" * 2048),
        (M2, ("applicationId",), "a" * 80),
        (M2, ("authSecretsManagerArn",), "a" * 20),
        (M2, ("authSecretsManagerArn",), "a" * 2048),
        (M2, ("jobParams",), {f"P{index}": "v" for index in range(500)}),
        (M2, ("jobParams",), {}),
        (M2, ("jobParams",), {"P" + "a" * 31: "v" * 1024}),
        (CLEANROOMS, ("jobParameters", "analysisTemplateArn"), TEMPLATE_ARN + "x" * (200 - len(TEMPLATE_ARN))),
        (CLEANROOMS, ("jobParameters", "parameters"), {"n" * 100: "v" * 1000}),
        (CLEANROOMS, ("computeConfiguration", "worker", "number"), 4),
        (CLEANROOMS, ("computeConfiguration", "worker", "number"), 1024),
        (CLEANROOMS, ("computeConfiguration", "worker", "properties", "spark"), {f"k{i}": "v" for i in range(50)}),
        (CLEANROOMS, ("computeConfiguration", "worker", "properties", "spark"), {"k" * 200: "v" * 500}),
        (CLEANROOMS, ("computeConfiguration", "worker", "type"), "CR.1X"),
    ],
)
def test_constraint_at_its_limit_is_accepted(operation: tuple[str, str], path: tuple[str, ...], value: object) -> None:
    """A value exactly at an AWS length, size, range or enum limit passes and is sent unchanged."""
    params = _params(operation, path, value)
    assert _request(operation, params) == params


def test_nested_error_is_reported_at_its_location() -> None:
    """A bad nested member is reported with its full path of AWS member names."""
    batch_job = {"s3BatchJobIdentifier": {"bucket": 5, "identifier": {"fileName": "JOB1.jcl"}}}
    (error,) = _errors(M2, _params(M2, ("batchJobIdentifier",), batch_job))
    assert error["loc"] == ("batchJobIdentifier", "s3BatchJobIdentifier", "bucket")
    assert error["type"] == "string_type"


def test_bad_map_key_is_reported_as_a_key() -> None:
    """A map key that breaks its pattern is reported at the key, not at its value."""
    (error,) = _errors(M2, _params(M2, ("jobParams",), {"1abc": "v"}))
    assert error["loc"] == ("jobParams", "1abc", "[key]")


@pytest.mark.parametrize(
    ("operation", "path", "members"),
    [
        (M2, ("batchJobIdentifier",), {}),
        (M2, ("batchJobIdentifier",), {**M2_BATCH_JOB_FORMS[0], **M2_BATCH_JOB_FORMS[1]}),
        (M2, ("batchJobIdentifier", "s3BatchJobIdentifier", "identifier"), {"fileName": "a", "scriptName": "b"}),
        (CLEANROOMS, ("resultConfiguration", "outputConfiguration"), {}),
        (CLEANROOMS, ("computeConfiguration",), {}),
        (CLEANROOMS, ("computeConfiguration", "worker", "properties"), {"spark": None}),
    ],
)
def test_union_needs_exactly_one_member(operation: tuple[str, str], path: tuple[str, ...], members: object) -> None:
    """A union with no member or several members set fails at the union, naming its members."""
    (error,) = _errors(operation, _params(operation, path, members))
    assert error["type"] == "aws_union"
    assert error["loc"] == path


def test_union_error_names_the_members_set() -> None:
    """The union error says which members may be set and which ones were."""
    batch_job = {**M2_BATCH_JOB_FORMS[0], **M2_BATCH_JOB_FORMS[1]}
    (error,) = _errors(M2, _params(M2, ("batchJobIdentifier",), batch_job))
    assert error["msg"] == (
        "Exactly one of fileBatchJobIdentifier, restartBatchJobIdentifier, s3BatchJobIdentifier, "
        "scriptBatchJobIdentifier must be set, got fileBatchJobIdentifier, scriptBatchJobIdentifier"
    )


def test_union_member_given_as_null_counts_as_unset() -> None:
    """A union member given as null is not set, and is left out of the request."""
    batch_job = {"fileBatchJobIdentifier": None, **M2_BATCH_JOB_FORMS[1]}
    assert _request(M2, _params(M2, ("batchJobIdentifier",), batch_job))["batchJobIdentifier"] == M2_BATCH_JOB_FORMS[1]


@pytest.mark.parametrize(
    ("path", "value", "error_type"),
    [
        (("Unknown",), "x", "extra_forbidden"),
        (("batchJobIdentifier", "scriptBatchJobIdentifier", "Unknown"), "x", "extra_forbidden"),
        (("applicationId",), 5, "string_type"),
        (
            ("batchJobIdentifier",),
            {
                "restartBatchJobIdentifier": {
                    "executionId": "e",
                    "jobStepRestartMarker": {"fromStep": "S", "stepCheckpoint": "3"},
                }
            },
            "int_type",
        ),
        (
            ("batchJobIdentifier",),
            {
                "restartBatchJobIdentifier": {
                    "executionId": "e",
                    "jobStepRestartMarker": {"fromStep": "S", "skip": "true"},
                }
            },
            "bool_type",
        ),
        (
            ("batchJobIdentifier",),
            {
                "restartBatchJobIdentifier": {
                    "executionId": "e",
                    "jobStepRestartMarker": {"fromStep": "S", "stepCheckpoint": True},
                }
            },
            "int_type",
        ),
        (("batchJobIdentifier",), {"scriptBatchJobIdentifier": {}}, "missing"),
    ],
)
def test_unknown_members_and_wrong_types_are_refused(path: tuple[str, ...], value: object, error_type: str) -> None:
    """Unknown members, a missing required member and any type coercion ("3" for 3) are errors."""
    assert error_type in {error["type"] for error in _errors(M2, _params(M2, path, value))}


def test_number_given_as_a_string_is_refused() -> None:
    """Strict validation refuses "16" where Clean Rooms wants the integer 16."""
    (error,) = _errors(CLEANROOMS, _params(CLEANROOMS, ("computeConfiguration", "worker", "number"), "16"))
    assert error["loc"] == ("computeConfiguration", "worker", "number")
    assert error["type"] == "int_type"


def test_missing_required_member_is_refused() -> None:
    """A member the model requires must be present."""
    params = _params(CLEANROOMS)
    del params["jobParameters"]
    (error,) = _errors(CLEANROOMS, params)
    assert (error["loc"], error["type"]) == (("jobParameters",), "missing")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"report": "daily", "rows": [1, 2.5, None, True]}, '{"report":"daily","rows":[1,2.5,null,true]}'),
        ([{"a": "multi\nline"}], '[{"a":"multi\\nline"}]'),
        ({"text": "caf\u00e9 \u2028 \x85"}, '{"text":"caf\u00e9 \\u2028 \\u0085"}'),
        ({}, "{}"),
    ],
)
def test_input_payload_object_or_array_is_sent_as_compact_json(payload: object, expected: str) -> None:
    """A JSON object or array `InputPayload` becomes one compact line with Java's line terminators escaped."""
    request = _request(QUICKSIGHT, _params(QUICKSIGHT, ("InputPayload",), payload))
    assert request["InputPayload"] == expected
    assert json.loads(request["InputPayload"]) == payload


def test_pretty_printed_input_payload_string_is_refused() -> None:
    """An `InputPayload` string with line breaks inside the JSON fails AWS's pattern, as AWS would."""
    pretty = json.dumps({"report": "daily"}, indent=2)
    (error,) = _errors(QUICKSIGHT, _params(QUICKSIGHT, ("InputPayload",), pretty))
    assert (error["loc"], error["type"]) == (("InputPayload",), "aws_pattern_mismatch")


def test_input_payload_string_is_sent_as_given() -> None:
    """A compact `InputPayload` string is checked and sent byte for byte, not re-serialised."""
    payload = '{ "report" : "daily" }\n'
    assert _request(QUICKSIGHT, _params(QUICKSIGHT, ("InputPayload",), payload))["InputPayload"] == payload


def test_input_payload_that_json_cannot_carry_is_a_validation_error() -> None:
    """An object JSON cannot encode (an integer beyond 64 bits) is a validation error, not a crash."""
    (error,) = _errors(QUICKSIGHT, _params(QUICKSIGHT, ("InputPayload",), {"n": 2**64}))
    assert (error["loc"], error["type"]) == (("InputPayload",), "json_payload_unserialisable")


def test_input_payload_schema_offers_string_object_and_array() -> None:
    """The JSON Schema of `InputPayload` admits the AWS string and, per the contract, objects and arrays."""
    schema = PARAMS_MODELS[QUICKSIGHT].params_model.model_json_schema()["properties"]["InputPayload"]
    assert [branch.get("type") for branch in schema["anyOf"]] == ["string", "object", "array", "null"]
    assert schema["anyOf"][0]["pattern"] == r"^(?:[\s\S]*[{\[].*[}\]]\s*)$"


@pytest.mark.parametrize(
    ("operation", "member"),
    [(QUICKSIGHT, None), (LOOKOUT, "ClientToken"), (DATAZONE, "clientToken"), (M2, None), (CLEANROOMS, None)],
)
def test_idempotency_token_member_is_recorded(operation: tuple[str, str], member: str | None) -> None:
    """Only Lookout for Equipment and DataZone have an idempotency-token member."""
    assert PARAMS_MODELS[operation].idempotency_token_member == member


@pytest.mark.parametrize("operation", [LOOKOUT, DATAZONE])
def test_idempotency_token_may_be_left_out(operation: tuple[str, str]) -> None:
    """A publisher may omit the token: the worker derives one from the job id instead of botocore's random one."""
    params = _params(operation)
    del params[PARAMS_MODELS[operation].idempotency_token_member or ""]
    assert _request(operation, params) == params


@pytest.mark.parametrize(
    ("operation", "paths"),
    [
        (QUICKSIGHT, ("InputPayload",)),
        (LOOKOUT, ()),
        (DATAZONE, ()),
        (M2, ()),
        (CLEANROOMS, ("jobParameters.parameters",)),
    ],
)
def test_sensitive_members_are_recorded(operation: tuple[str, str], paths: tuple[str, ...]) -> None:
    """The members botocore marks `sensitive` are listed, so logs and errors can leave them out."""
    assert PARAMS_MODELS[operation].sensitive_paths == paths


def _m2_restart_at(step_checkpoint: int) -> dict[str, Any]:
    marker = {"fromStep": "STEP1", "stepCheckpoint": step_checkpoint}
    restart = {"restartBatchJobIdentifier": {"executionId": "exec-1", "jobStepRestartMarker": marker}}
    return _params(M2, ("batchJobIdentifier",), restart)


@pytest.mark.parametrize(("value", "error_type"), [(2**31, "less_than_equal"), (-(2**31) - 1, "greater_than_equal")])
def test_integer_beyond_32_bits_is_refused(value: int, error_type: str) -> None:
    """botocore's `integer` is Java's 32-bit int: M2's `stepCheckpoint` cannot hold 2147483648 or -2147483649."""
    assert error_type in {error["type"] for error in _errors(M2, _m2_restart_at(value))}


@pytest.mark.parametrize("value", [2**31 - 1, -(2**31), 0])
def test_integer_within_32_bits_is_accepted(value: int) -> None:
    """The 32-bit limits themselves pass unchanged."""
    params = _m2_restart_at(value)
    assert _request(M2, params) == params
