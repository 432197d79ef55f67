"""The generator: the committed module is what botocore gives today, and it works beyond the five."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from dispatcher.aws_regex import UnsupportedJavaRegexError
from dispatcher.operations import OPERATION_SPECS, OperationSpec
from tools.generate_params import GENERATED_MODULE, GenerationError, main, render_module


def _generated(service: str, operation: str) -> type[BaseModel]:
    """Render, execute and return the parameter model of one operation, as adding it would."""
    source = render_module([OperationSpec(service, operation)])
    # `dont_inherit`: this file's `from __future__ import annotations` must not turn annotations into strings.
    code = compile(source, f"<generated {service}.{operation}>", "exec", dont_inherit=True)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own generated source
    model: type[BaseModel] = namespace["GENERATED_OPERATIONS"][service, operation].params_model
    return model


def test_committed_module_is_what_botocore_gives() -> None:
    """`params_generated.py` equals a fresh render, so a botocore upgrade cannot change the models silently."""
    assert render_module(OPERATION_SPECS) == GENERATED_MODULE.read_text(), (
        "params_generated.py is stale: run `uv run python tools/generate_params.py`"
    )


def test_check_mode_passes_on_the_committed_module(capsys: pytest.CaptureFixture[str]) -> None:
    """`--check` exits 0 and prints nothing when the committed module is fresh."""
    assert main(["--check"]) == 0
    assert capsys.readouterr().out == ""


def test_operation_outside_the_registry_gets_a_working_model() -> None:
    """Glue's StartJobRun renders to a model that validates and dumps a job run request."""
    model = _generated("glue", "StartJobRun")
    params = {
        "JobName": "nightly-etl \U0001f319",
        "Arguments": {"--day": "2024-01-01"},
        "WorkerType": "G.1X",
        "NumberOfWorkers": 10,
        "Timeout": 60,
        "MaxCapacity": 2.5,
        "NotificationProperty": {"NotifyDelayAfter": 5},
    }
    assert model.model_validate(params).model_dump(by_alias=True, exclude_none=True) == params


@pytest.mark.parametrize(
    ("member", "value", "error_type"),
    [
        ("JobName", "line\nbreak", "aws_pattern_mismatch"),
        ("JobName", "", "string_too_short"),
        ("WorkerType", "G.3X", "literal_error"),
        ("Timeout", 0, "greater_than_equal"),
        ("MaxCapacity", "2.5", "float_type"),
        ("Unknown", 1, "extra_forbidden"),
    ],
)
def test_operation_outside_the_registry_enforces_its_constraints(member: str, value: object, error_type: str) -> None:
    """The rendered Glue model enforces Glue's pattern, length, enum and range constraints strictly."""
    model = _generated("glue", "StartJobRun")
    params = {"JobName": "nightly-etl", member: value}
    with pytest.raises(ValidationError) as info:
        model.model_validate(params)
    assert [(error["loc"], error["type"]) for error in info.value.errors()] == [((member,), error_type)]


def test_lists_and_timestamps_are_modelled() -> None:
    """CloudWatch's GetMetricStatistics gets list size limits, enum items and RFC 3339 timestamps."""
    model = _generated("cloudwatch", "GetMetricStatistics")
    params = {
        "Namespace": "AWS/EC2",
        "MetricName": "CPUUtilization",
        "Dimensions": [{"Name": "InstanceId", "Value": "i-0123"}],
        "StartTime": "2024-01-01T00:00:00Z",
        "EndTime": "2024-01-02T00:00:00Z",
        "Period": 300,
        "Statistics": ["Average", "Maximum"],
    }
    request = model.model_validate(params).model_dump(by_alias=True, exclude_none=True)
    assert request["StartTime"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert request["Dimensions"] == params["Dimensions"]
    for statistics, error_type in (([], "too_short"), (["Sum"] * 6, "too_long"), (["Median"], "literal_error")):
        with pytest.raises(ValidationError) as info:
            model.model_validate({**params, "Statistics": statistics})
        assert {error["type"] for error in info.value.errors()} == {error_type}


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        ("personalize", "CreateSchema", {"name": "events", "schema": '{"type":"record"}'}),
        ("logs", "CreateExportTask", {"logGroupName": "app", "from": 0, "to": 1, "destination": "bucket"}),
    ],
)
def test_member_named_like_a_keyword_or_model_attribute_keeps_its_aws_name(
    service: str, operation: str, params: dict[str, Any]
) -> None:
    """A member called `schema` or `from` is renamed in Python only: it is read and dumped by AWS's name."""
    model = _generated(service, operation)
    assert model.model_validate(params).model_dump(by_alias=True, exclude_none=True) == params


@pytest.mark.parametrize(
    ("service", "operation", "error"),
    [
        ("kms", "Encrypt", GenerationError),
        ("comprehend", "DescribeDocumentClassificationJob", UnsupportedJavaRegexError),
    ],
)
def test_what_cannot_be_modelled_faithfully_fails_generation(
    service: str, operation: str, error: type[Exception]
) -> None:
    """A blob member or a pattern with Unicode properties stops generation instead of being guessed."""
    with pytest.raises(error):
        render_module([OperationSpec(service, operation)])


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({"type": "integer"}, ["Field(ge=-2147483648, le=2147483647)"]),
        ({"type": "integer", "min": 0}, ["Field(ge=0, le=2147483647)"]),
        ({"type": "integer", "min": 4, "max": 1024}, ["Field(ge=4, le=1024)"]),
        ({"type": "long"}, ["Field(ge=-9223372036854775808, le=9223372036854775807)"]),
        ({"type": "long", "max": 10}, ["Field(ge=-9223372036854775808, le=10)"]),
        ({"type": "float"}, ["Field(ge=-3.4028234663852886e+38, le=3.4028234663852886e+38, allow_inf_nan=False)"]),
        ({"type": "float", "min": 0.5}, ["Field(ge=0.5, le=3.4028234663852886e+38, allow_inf_nan=False)"]),
        ({"type": "double"}, ["Field(allow_inf_nan=False)"]),
        ({"type": "double", "min": 1}, ["Field(ge=1, allow_inf_nan=False)"]),
    ],
)
def test_every_number_shape_is_bounded_by_its_java_type(shape: dict[str, Any], expected: list[str]) -> None:
    """`integer` is 32-bit, `long` 64-bit, `float` finite within Float.MAX_VALUE, `double` finite."""
    from botocore.model import Shape  # noqa: PLC0415

    from tools.generate_params import _ModuleWriter  # noqa: PLC0415

    assert _ModuleWriter()._constraints(Shape("Number", shape)) == expected
