"""The emulator's job lifecycles: status paths against botocore's models, courses, settings, job memory."""

from __future__ import annotations

import random
from typing import Any

import botocore.session
import pytest
from pydantic import ValidationError

from dispatcher.emulator.catalog import CompanionOperation, companion_operations, registered_operations
from dispatcher.emulator.course import Course, forced_moment
from dispatcher.emulator.followed import FollowedJobs, LifecycleConfigError
from dispatcher.emulator.jobs import StartedJob
from dispatcher.emulator.lifecycle import LifecycleSettings, parse_lifecycle, unsupported_shares
from dispatcher.emulator.shapes import shape_problems
from dispatcher.emulator.statuses import Fate, StatusPaths, status_paths
from dispatcher.emulator.tracking import JobTracker, TrackedJob
from dispatcher.operations import OPERATION_SPECS, JobOutcome

FATE_OUTCOMES = {
    Fate.SUCCEEDED: JobOutcome.SUCCEEDED,
    Fate.WARNING: JobOutcome.SUCCEEDED,
    Fate.FAILED: JobOutcome.FAILED,
    Fate.CANCELLED: JobOutcome.CANCELLED,
}


@pytest.fixture(scope="module")
def companions() -> dict[str, CompanionOperation]:
    """The Describe call of every registered operation, by its start routing key."""
    return {companion.start_routing_key: companion for companion in companion_operations(registered_operations())}


def test_every_registered_operation_has_a_served_companion(companions: dict[str, CompanionOperation]) -> None:
    """Each spec with a companion gets its Describe call, under the spec's companion routing key."""
    expected = {spec.routing_key: spec.companion_routing_key for spec in OPERATION_SPECS if spec.companion}
    assert {key: companion.routing_key for key, companion in companions.items()} == expected


@pytest.mark.parametrize("routing_key", [spec.routing_key for spec in OPERATION_SPECS if spec.companion])
def test_every_status_path_uses_only_model_statuses_and_ends_in_a_terminal_one(
    companions: dict[str, CompanionOperation], routing_key: str
) -> None:
    """Every status of every fate's path is in the model's enum; ends are terminal with the fate's outcome."""
    companion = companions[routing_key]
    paths = status_paths(companion)
    terminal = companion.companion.terminal
    enum = set(botocore_status_enum(companion))
    for fate in paths.fates:
        path = paths.path(fate)
        assert set(path) <= enum, (fate, path)
        assert not set(path[:-1]) & set(terminal), (fate, path)
        if fate is Fate.NEVER_ENDS:
            assert path[-1] not in terminal
        else:
            assert terminal[path[-1]] is FATE_OUTCOMES[fate]
            assert (path[-1] in companion.companion.warnings) is (fate is Fate.WARNING)


def botocore_status_enum(companion: CompanionOperation) -> list[str]:
    """The status enum read straight from botocore, not through the catalog."""
    model = botocore.session.get_session().get_service_model(companion.spec.service)
    shape = model.operation_model(companion.companion.operation).output_shape
    for part in companion.companion.status.split("."):
        shape = shape.members[part]
    return list(shape.enum)


@pytest.mark.parametrize(
    ("routing_key", "fate", "path"),
    [
        ("quicksight.StartAutomationJob", Fate.SUCCEEDED, ("QUEUED", "RUNNING", "SUCCEEDED")),
        ("quicksight.StartAutomationJob", Fate.CANCELLED, ("QUEUED", "RUNNING", "STOPPED")),
        ("lookoutequipment.StartDataIngestionJob", Fate.FAILED, ("IN_PROGRESS", "IMPORT_IN_PROGRESS", "FAILED")),
        ("datazone.StartDataSourceRun", Fate.WARNING, ("REQUESTED", "RUNNING", "PARTIALLY_SUCCEEDED")),
        (
            "m2.StartBatchJob",
            Fate.CANCELLED,
            ("Submitting", "Holding", "Dispatching", "Running", "Cancelling", "Cancelled"),
        ),
        (
            "m2.StartBatchJob",
            Fate.WARNING,
            ("Submitting", "Holding", "Dispatching", "Running", "Succeeded With Warning"),
        ),
        ("cleanrooms.StartProtectedJob", Fate.CANCELLED, ("SUBMITTED", "STARTED", "CANCELLING", "CANCELLED")),
        ("cleanrooms.StartProtectedJob", Fate.NEVER_ENDS, ("SUBMITTED", "STARTED")),
    ],
)
def test_status_paths_follow_the_real_sequences(
    companions: dict[str, CompanionOperation], routing_key: str, fate: Fate, path: tuple[str, ...]
) -> None:
    """The paths are the sequences AWS documents for each operation."""
    assert status_paths(companions[routing_key]).path(fate) == path


@pytest.mark.parametrize(
    ("routing_key", "fates"),
    [
        ("quicksight.StartAutomationJob", {Fate.SUCCEEDED, Fate.FAILED, Fate.CANCELLED, Fate.NEVER_ENDS}),
        ("lookoutequipment.StartDataIngestionJob", {Fate.SUCCEEDED, Fate.FAILED, Fate.NEVER_ENDS}),
        ("datazone.StartDataSourceRun", {Fate.SUCCEEDED, Fate.WARNING, Fate.FAILED, Fate.NEVER_ENDS}),
    ],
)
def test_operations_have_only_the_fates_their_statuses_allow(
    companions: dict[str, CompanionOperation], routing_key: str, fates: set[Fate]
) -> None:
    """An operation without a cancelled or warning status cannot end that way."""
    assert status_paths(companions[routing_key]).fates == fates


def _course(fate: Fate = Fate.SUCCEEDED, duration_s: float = 4.0) -> Course:
    path = ("A", "B", "DONE") if fate is not Fate.NEVER_ENDS else ("A", "B")
    return Course(path, fate, created_at=100.0, duration_s=duration_s)


def test_a_course_spreads_its_statuses_over_its_duration() -> None:
    """Two running statuses of a 4 s job take 2 s each; the terminal one comes at 4 s and stays."""
    course = _course()
    assert [course.at(now).status for now in (99.0, 100.0, 101.9, 102.0, 103.9, 104.0, 1e9)] == [
        "A",
        "A",
        "A",
        "B",
        "B",
        "DONE",
        "DONE",
    ]


def test_a_course_reports_when_it_started_running_and_ended() -> None:
    """`running_since` is when the first status was left, `ended_at` the end, `changed_at` the last change."""
    course = _course()
    first, running, ended = course.at(101.0), course.at(103.0), course.at(200.0)
    assert (first.running_since, first.ended_at, first.changed_at) == (None, None, 100.0)
    assert (running.running_since, running.ended_at, running.changed_at) == (102.0, None, 102.0)
    assert (ended.running_since, ended.ended_at, ended.changed_at) == (102.0, 104.0, 104.0)


def test_a_never_ending_course_stays_in_its_last_running_status() -> None:
    """A job that never ends moves at the same pace and then stays, without an end time."""
    course = _course(Fate.NEVER_ENDS)
    late = course.at(1e9)
    assert (course.at(101.0).status, late.status, late.ended_at) == ("A", "B", None)


def test_a_zero_duration_course_has_ended_at_once() -> None:
    """Duration 0 means the first Describe already sees the terminal status."""
    moment = _course(duration_s=0).at(100.0)
    assert (moment.status, moment.ended_at) == ("DONE", 100.0)


def test_a_forced_moment_keeps_the_times_already_passed() -> None:
    """Forcing keeps when the job started running; a forced terminal status ends it at the forcing time."""
    natural = _course().at(103.0)
    forced = forced_moment(natural, "FAILED", 103.0, terminal=True)
    held = forced_moment(_course().at(101.0), "B", 101.0, terminal=False)
    assert (forced.status, forced.running_since, forced.ended_at) == ("FAILED", 102.0, 103.0)
    assert (held.status, held.running_since, held.ended_at, held.changed_at) == ("B", 101.0, None, 101.0)


def test_settings_refuse_shares_above_one_and_inverted_ranges() -> None:
    """Shares adding up to more than 1, and a range whose min is above its max, are refused."""
    with pytest.raises(ValidationError, match="above 1"):
        LifecycleSettings(failure_rate=0.5, never_end_rate=0.6)
    with pytest.raises(ValidationError, match="above max"):
        parse_lifecycle({"default": {"duration_s": {"min": 2, "max": 1}}})


def test_settings_roll_each_fate_in_its_share() -> None:
    """Over many jobs, each fate's share is close to its setting; the rest succeed."""
    settings = LifecycleSettings(failure_rate=0.2, cancel_rate=0.1, never_end_rate=0.1, warning_rate=0.3)
    rng = random.Random(3)
    counts: dict[Fate, int] = dict.fromkeys(Fate, 0)
    m2_paths = _m2_paths()
    for _ in range(10_000):
        counts[settings.course(m2_paths, 0.0, rng).fate] += 1
    shares = {fate: count / 10_000 for fate, count in counts.items()}
    expected = {Fate.FAILED: 0.2, Fate.CANCELLED: 0.1, Fate.NEVER_ENDS: 0.1, Fate.WARNING: 0.3, Fate.SUCCEEDED: 0.3}
    assert shares == pytest.approx(expected, abs=0.02)


def _m2_paths() -> StatusPaths:
    [m2] = [c for c in companion_operations(registered_operations()) if c.routing_key == "m2.GetBatchJobExecution"]
    return status_paths(m2)


def test_a_duration_range_draws_each_jobs_duration_within_it() -> None:
    """A `{min, max}` duration gives jobs different durations, all within the range."""
    settings = parse_lifecycle({"default": {"duration_s": {"min": 1, "max": 3}}})["default"]
    rng = random.Random(5)
    durations = {settings.course(_m2_paths(), 0.0, rng).duration_s for _ in range(50)}
    assert len(durations) == 50
    assert all(1 <= duration <= 3 for duration in durations)


def test_unsupported_shares_name_the_settings(companions: dict[str, CompanionOperation]) -> None:
    """Lookout has neither a cancelled nor a warning status; M2 has both."""
    settings = LifecycleSettings(cancel_rate=0.1, warning_rate=0.1)
    lookout = status_paths(companions["lookoutequipment.StartDataIngestionJob"])
    assert unsupported_shares(settings, lookout) == ["cancel_rate", "warning_rate"]
    assert unsupported_shares(settings, _m2_paths()) == []


def _tracked(job_id: str, routing_key: str = "svc.Start") -> TrackedJob:
    return TrackedJob(routing_key, job_id, (job_id,), {}, {}, _course())


def test_job_tracker_forgets_the_oldest_jobs_beyond_its_bound() -> None:
    """Beyond its limit the oldest job is gone, both by id and by its Describe identifiers."""
    tracker = JobTracker(limit=2)
    for job_id in ("j1", "j2", "j3"):
        tracker.add(_tracked(job_id))
    assert len(tracker) == 2
    assert tracker.get("svc.Start", "j1") is None
    assert tracker.find("svc.Start", ("j1",)) is None
    assert tracker.find("svc.Start", ("j3",)) is tracker.get("svc.Start", "j3")
    assert [job.job_id for job in tracker.jobs()] == ["j2", "j3"]


def test_followed_jobs_are_found_by_the_describe_identifiers(companions: dict[str, CompanionOperation]) -> None:
    """A started M2 job is found by its application and execution; another application does not find it."""
    operations = registered_operations()
    followed = FollowedJobs(operations, {})
    m2 = next(operation for operation in operations if operation.routing_key == "m2.StartBatchJob")
    job = StartedJob("exec-1", {"executionId": "exec-1"}, {"applicationId": "app"})
    followed.start(m2, job, 1000.0, random.Random(1))
    describe = companions["m2.StartBatchJob"]
    found = followed.find(describe, {"applicationId": "app", "executionId": "exec-1"})
    assert found is not None
    assert followed.moment(found, 1000.0).status == "Submitting"
    assert followed.moment(found, 1005.0).status == "Succeeded"
    assert followed.find(describe, {"applicationId": "other", "executionId": "exec-1"}) is None


def test_followed_jobs_refuse_settings_an_operation_cannot_have() -> None:
    """Settings for an unknown operation, or with a share its statuses lack, raise `LifecycleConfigError`."""
    followed = FollowedJobs(registered_operations(), {})
    with pytest.raises(LifecycleConfigError, match="no followed operation"):
        followed.set_settings("m2.GetBatchJobExecution", LifecycleSettings())
    with pytest.raises(LifecycleConfigError, match="cancel_rate"):
        followed.replace_settings({"datazone.StartDataSourceRun": LifecycleSettings(cancel_rate=0.5)})
    assert list(followed.settings) == ["default"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"applicationId": "app", "executionId": "two words"}, ("executionId", "String should match")),
        ({"applicationId": "app", "executionId": "x", "extra": 1}, ("extra", "Unknown member")),
        ({"applicationId": 7, "executionId": "x"}, ("applicationId", "Value should be of type string")),
    ],
)
def test_shape_problems_name_what_the_input_shape_refuses(value: dict[str, Any], problem: tuple[str, str]) -> None:
    """Patterns (matched in full), unknown members and types are checked against botocore's shape."""
    shape = botocore.session.get_session().get_service_model("m2").operation_model("GetBatchJobExecution").input_shape
    [(path, message)] = shape_problems(shape, value)
    assert path == problem[0]
    assert message.startswith(problem[1])


def test_shape_problems_accept_a_valid_input() -> None:
    """A valid Describe input has no problems, including lengths and full-match patterns."""
    model = botocore.session.get_session().get_service_model("cleanrooms").operation_model("GetProtectedJob")
    uuid = "0b5a3d5e-1c4f-4b8e-9a55-3f2d1c0b9a87"
    assert shape_problems(model.input_shape, {"membershipIdentifier": uuid, "protectedJobIdentifier": uuid}) == []
    assert shape_problems(model.input_shape, {"membershipIdentifier": uuid, "protectedJobIdentifier": uuid + "0"})
