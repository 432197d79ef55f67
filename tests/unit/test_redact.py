"""Members botocore marks `sensitive` are left out of AWS responses and of error messages."""

from __future__ import annotations

import copy
import functools

import botocore.session
import orjson
import pytest
from botocore.model import ShapeResolver

from dispatcher.envelope import validate_params
from dispatcher.errors import InvalidJob
from dispatcher.examples import example_job
from dispatcher.operations import OPERATION_SPECS
from dispatcher.redact import REDACTED, ResponseRedactor, redact_loc
from dispatcher.registry import default_registry

HIDDEN_VALUE = "hidden-v4lue"
HIDDEN_NAME = "hiddenName"


@functools.cache
def output_shape(service: str, operation: str):
    """botocore's output shape of an operation (loading models is slow, so once)."""
    return botocore.session.get_session().get_service_model(service).operation_model(operation).output_shape


def redactor(service: str, operation: str) -> ResponseRedactor:
    """The redactor of an operation that has sensitive output members."""
    built = ResponseRedactor.for_shape(output_shape(service, operation))
    assert built is not None
    return built


def protected_job_response() -> dict:
    """A StartProtectedJob answer as botocore parses it."""
    return {
        "protectedJob": {
            "id": "job-1",
            "membershipId": "m-1",
            "jobParameters": {"analysisTemplateArn": "arn:aws:cleanrooms:x", "parameters": {HIDDEN_NAME: HIDDEN_VALUE}},
            "status": "SUBMITTED",
        }
    }


def test_clean_rooms_parameters_are_replaced_and_the_rest_is_kept():
    """StartProtectedJob's output holds the sensitive `jobParameters.parameters`: only that becomes the marker."""
    response = protected_job_response()
    original = copy.deepcopy(response)

    redacted = redactor("cleanrooms", "StartProtectedJob").redact(response)

    assert redacted["protectedJob"]["jobParameters"] == {
        "analysisTemplateArn": "arn:aws:cleanrooms:x",
        "parameters": REDACTED,
    }
    assert {k: v for k, v in redacted["protectedJob"].items() if k != "jobParameters"} == {
        k: v for k, v in original["protectedJob"].items() if k != "jobParameters"
    }
    text = orjson.dumps(redacted).decode()
    assert HIDDEN_VALUE not in text
    assert HIDDEN_NAME not in text
    assert response == original, "the response it was given is left as it was"


def test_a_response_without_the_sensitive_member_is_unchanged():
    """Absent sensitive members are not added; values of other types pass through."""
    response = {"protectedJob": {"id": "job-1", "jobParameters": {"analysisTemplateArn": "arn"}, "status": "RUNNING"}}
    assert redactor("cleanrooms", "StartProtectedJob").redact(response) == response


@pytest.mark.parametrize("spec", [s for s in OPERATION_SPECS if s.routing_key != "cleanrooms.StartProtectedJob"])
def test_outputs_without_sensitive_members_get_no_redactor(spec):
    """The other start operations' outputs hold nothing sensitive, so their responses are never walked."""
    assert ResponseRedactor.for_shape(output_shape(spec.service, spec.operation)) is None


def test_no_output_shape_gets_no_redactor():
    """An operation without output has nothing to redact."""
    assert ResponseRedactor.for_shape(None) is None


def test_lists_and_maps_on_the_way_are_walked():
    """DataZone Search: `items` is a list of unions whose members hold sensitive names and descriptions."""
    response = {
        "items": [
            {"assetItem": {"name": HIDDEN_VALUE, "identifier": "a-1", "description": HIDDEN_VALUE}},
            {"glossaryItem": {"name": HIDDEN_VALUE, "id": "g-1"}},
        ],
        "totalMatchCount": 2,
    }
    redacted = redactor("datazone", "Search").redact(response)
    assert redacted == {
        "items": [
            {"assetItem": {"name": REDACTED, "identifier": "a-1", "description": REDACTED}},
            {"glossaryItem": {"name": REDACTED, "id": "g-1"}},
        ],
        "totalMatchCount": 2,
    }


def test_recursive_shapes_are_walked_to_any_depth():
    """QuickSight's hierarchy tree holds itself (`Children`); every level's sensitive values are replaced."""
    tree = {"ParentValue": f"{HIDDEN_VALUE}-3"}
    for depth in (2, 1, 0):
        tree = {"ParentValue": f"{HIDDEN_VALUE}-{depth}", "HierarchyValues": [HIDDEN_VALUE], "Children": [tree]}
    response = {
        "DashboardId": "d-1",
        "Definition": {"FilterGroups": [{"Filters": [{"HierarchyFilter": {"HierarchyTree": tree}}]}]},
    }
    redacted = redactor("quicksight", "DescribeDashboardDefinition").redact(response)
    assert HIDDEN_VALUE not in orjson.dumps(redacted).decode()
    inner = redacted["Definition"]["FilterGroups"][0]["Filters"][0]["HierarchyFilter"]["HierarchyTree"]
    assert inner["ParentValue"] == REDACTED
    assert inner["Children"][0]["Children"][0]["Children"][0] == {"ParentValue": REDACTED}
    assert redacted["DashboardId"] == "d-1"


def test_a_map_with_sensitive_keys_is_replaced_whole():
    """Chime's `MessageAttributeMap` marks its keys sensitive, not its values: the keys are data too."""
    response = {"ChannelMessage": {"MessageId": "m-1", "MessageAttributes": {HIDDEN_NAME: {"StringValues": ["x"]}}}}
    redacted = redactor("chime-sdk-messaging", "GetChannelMessage").redact(response)
    assert redacted["ChannelMessage"] == {"MessageId": "m-1", "MessageAttributes": REDACTED}


def test_sensitive_on_the_member_reference_counts_too():
    """botocore merges a member reference's traits into the shape: `sensitive` there is honoured."""
    resolver = ShapeResolver(
        {
            "Output": {
                "type": "structure",
                "members": {"token": {"shape": "Text", "sensitive": True}, "id": {"shape": "Text"}},
            },
            "Text": {"type": "string"},
        }
    )
    redacted = ResponseRedactor.for_shape(resolver.get_shape_by_name("Output"))
    assert redacted is not None
    assert redacted.redact({"token": HIDDEN_VALUE, "id": "i-1"}) == {"token": REDACTED, "id": "i-1"}


def test_a_recursive_shape_without_sensitive_members_gets_no_redactor():
    """A shape that holds itself but nothing sensitive settles on no redactor at all."""
    resolver = ShapeResolver(
        {
            "Output": {"type": "structure", "members": {"tree": {"shape": "Node"}}},
            "Node": {"type": "structure", "members": {"value": {"shape": "Text"}, "children": {"shape": "Nodes"}}},
            "Nodes": {"type": "list", "member": {"shape": "Node"}},
            "Text": {"type": "string"},
        }
    )
    assert ResponseRedactor.for_shape(resolver.get_shape_by_name("Output")) is None


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("jobParameters", "parameters", HIDDEN_NAME, "[key]"), (("jobParameters", "parameters"), "<redacted key>")),
        (("jobParameters", "parameters", HIDDEN_NAME), (("jobParameters", "parameters"), "<redacted value>")),
        (("jobParameters", "parameters"), (("jobParameters", "parameters"), None)),
        (("jobParameters", "analysisTemplateArn"), (("jobParameters", "analysisTemplateArn"), None)),
        (("items", 3, "secret", "x"), (("items", 3, "secret"), "<redacted value>")),
    ],
)
def test_error_locations_stop_at_a_sensitive_member(loc, expected):
    """Below a sensitive member (`*` matching any item) nothing is named; above it, everything is."""
    assert redact_loc(loc, ("jobParameters.parameters", "items.*.secret")) == expected


def _clean_rooms_error(parameters: object) -> str:
    """The error message of a Clean Rooms job with these `jobParameters.parameters`."""
    operation = default_registry().get("cleanrooms.StartProtectedJob")
    params = example_job(operation.routing_key, "job-1")["params"]
    params["jobParameters"] = {**params["jobParameters"], "parameters": parameters}
    with pytest.raises(InvalidJob) as raised:
        validate_params(operation, params)
    return raised.value.message


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({f"{HIDDEN_NAME}-bad!": HIDDEN_VALUE}, "params.jobParameters.parameters: <redacted key>: String should match"),
        (
            {HIDDEN_NAME: HIDDEN_VALUE * 100},
            "params.jobParameters.parameters: <redacted value>: String should have at most",
        ),
        ({HIDDEN_NAME: 7}, "params.jobParameters.parameters: <redacted value>: Input should be a valid string"),
    ],
)
def test_invalid_parameters_are_described_without_their_keys_or_values(parameters, says):
    """A bad key or value of the sensitive map is reported at the map, naming neither."""
    message = _clean_rooms_error(parameters)
    assert says in message
    assert HIDDEN_NAME not in message
    assert HIDDEN_VALUE not in message


def test_an_error_at_the_sensitive_member_itself_names_it():
    """The member's own name is the model's, not data: it is said."""
    assert _clean_rooms_error("not a map") == "params.jobParameters.parameters: Input should be a valid dictionary"
