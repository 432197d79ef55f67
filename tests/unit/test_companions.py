"""Each operation's companion call agrees with botocore's model: parameters, status, terminal statuses."""

from __future__ import annotations

import botocore.session
import pytest

from dispatcher.operations import OPERATION_SPECS, Companion, JobOutcome, OperationSpec, dig

SESSION = botocore.session.get_session()
FOLLOWED = [spec for spec in OPERATION_SPECS if spec.companion is not None]
# The statuses in which a job is still going, per operation: written down so that a status a new
# botocore adds fails here and gets a decision (terminal or not) instead of being polled forever.
STILL_GOING = {
    "quicksight.StartAutomationJob": {"QUEUED", "RUNNING"},
    "lookoutequipment.StartDataIngestionJob": {"IN_PROGRESS", "IMPORT_IN_PROGRESS"},
    "datazone.StartDataSourceRun": {"REQUESTED", "RUNNING"},
    "m2.StartBatchJob": {"Submitting", "Holding", "Dispatching", "Running", "Cancelling"},
    "cleanrooms.StartProtectedJob": {"SUBMITTED", "STARTED", "CANCELLING"},
}


def _models(spec: OperationSpec):
    service = SESSION.get_service_model(spec.service)
    assert spec.companion is not None
    return service.operation_model(spec.operation), service.operation_model(spec.companion.operation)


def _shape_at(shape, path: str):
    for part in path.split("."):
        assert shape.type_name == "structure", f"{path}: {part} is below a {shape.type_name}"
        assert part in shape.members, f"{path}: no member {part}"
        shape = shape.members[part]
    return shape


def test_every_operation_has_a_companion():
    """All five operations can be followed."""
    assert list(OPERATION_SPECS) == FOLLOWED


@pytest.mark.parametrize("spec", FOLLOWED, ids=lambda spec: spec.routing_key)
def test_status_enum_is_mapped_exactly(spec: OperationSpec):
    """Every status of the model is terminal or known to be still going; no status is invented."""
    _, describe = _models(spec)
    assert spec.companion is not None
    status_shape = _shape_at(describe.output_shape, spec.companion.status)
    enum = set(status_shape.enum)
    terminal = set(spec.companion.terminal)
    assert terminal <= enum, terminal - enum
    assert spec.companion.warnings <= terminal
    assert enum - terminal == STILL_GOING[spec.routing_key]
    assert set(spec.companion.terminal.values()) <= {JobOutcome.SUCCEEDED, JobOutcome.FAILED, JobOutcome.CANCELLED}
    assert JobOutcome.SUCCEEDED in spec.companion.terminal.values()
    assert JobOutcome.FAILED in spec.companion.terminal.values()


@pytest.mark.parametrize("spec", FOLLOWED, ids=lambda spec: spec.routing_key)
def test_parameters_come_from_the_start_call(spec: OperationSpec):
    """Each Describe member is required or mapped, and each source is a member of the start call's shapes."""
    start, describe = _models(spec)
    assert spec.companion is not None
    mapped = {member for member, _ in spec.companion.parameters}
    assert set(describe.input_shape.required_members) <= mapped
    assert mapped <= set(describe.input_shape.members)
    for member, source in spec.companion.parameters:
        root, _, path = source.partition(".")
        shape = _shape_at(start.input_shape if root == "request" else start.output_shape, path)
        assert shape.type_name == "string", (member, source)
        assert describe.input_shape.members[member].type_name == "string"


def test_identifiers_read_request_and_response():
    """The Describe request is built from the start request and response; a missing id gives None."""
    companion = Companion(
        "GetThing",
        parameters=(("app", "request.applicationId"), ("id", "response.job.id")),
        status="job.status",
        terminal={"DONE": JobOutcome.SUCCEEDED},
    )
    assert companion.identifiers({"applicationId": "a1"}, {"job": {"id": "j1"}}) == {"app": "a1", "id": "j1"}
    assert companion.identifiers({"applicationId": "a1"}, {"job": {}}) is None
    assert companion.identifiers({"applicationId": ""}, {"job": {"id": "j1"}}) is None
    assert companion.status_of({"job": {"status": "DONE"}}) == "DONE"
    assert companion.status_of({"job": "DONE"}) is None
    assert dig({"a": {"b": 1}}, "a.b") == 1
