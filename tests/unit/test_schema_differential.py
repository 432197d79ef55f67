"""The published job schema and the worker agree, job by job, under a standard JSON Schema validator.

`docs/schemas/job.schema.json` is what publishers validate with before sending; a job it accepts
must be one the worker accepts, and the other way round. Two validators: `jsonschema` with the
ECMA-262 engine JSON Schema prescribes (`regress`, with the `u` flag), and `jsonschema` as it
comes (Python's `re`), which the published patterns are written to agree with as well.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any

import jsonschema
import orjson
import pytest
import regress
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema.validators import Draft202012Validator, extend

from dispatcher.envelope import Decoder
from dispatcher.errors import JobError
from dispatcher.examples import EXAMPLE_PARAMS
from dispatcher.registry import default_registry
from tools.write_schemas import DOCS, JOB_SCHEMA

MEMBERSHIP = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
SEEDS: list[tuple[str, dict[str, Any]]] = [
    *EXAMPLE_PARAMS.items(),
    (
        "quicksight.StartAutomationJob",
        {**EXAMPLE_PARAMS["quicksight.StartAutomationJob"], "InputPayload": '{"a": "b"}'},
    ),
    (
        "lookoutequipment.StartDataIngestionJob",
        {**EXAMPLE_PARAMS["lookoutequipment.StartDataIngestionJob"], "ClientToken": "token-1"},
    ),
    (
        "m2.StartBatchJob",
        {
            "applicationId": "app-1",
            "batchJobIdentifier": {
                "restartBatchJobIdentifier": {
                    "executionId": "exec-1",
                    "jobStepRestartMarker": {"fromStep": "STEP1", "skip": True, "stepCheckpoint": 3},
                },
            },
        },
    ),
    (
        "m2.StartBatchJob",
        {
            "applicationId": "app-1",
            "batchJobIdentifier": {"s3BatchJobIdentifier": {"bucket": "jobs", "identifier": {"scriptName": "run"}}},
            "jobParams": {"Day": "2024-01-01"},
        },
    ),
    (
        "cleanrooms.StartProtectedJob",
        {
            **EXAMPLE_PARAMS["cleanrooms.StartProtectedJob"],
            "jobParameters": {
                "analysisTemplateArn": EXAMPLE_PARAMS["cleanrooms.StartProtectedJob"]["jobParameters"][
                    "analysisTemplateArn"
                ],
                "parameters": {"run_date": "2024-01-01"},
            },
            "computeConfiguration": {
                "worker": {"type": "CR.4X", "number": 16, "properties": {"spark": {"spark.executor.memory": "8g"}}},
            },
            "jobComputePayerAccountId": "210987654321",
        },
    ),
]
PAIRS = sorted(EXAMPLE_PARAMS)
# Characters where Java's and ECMA's (or Python's) regex classes part ways, and some of every kind.
ALPHABET = [
    *"aZz09-_./:@{}[]()*+?^$|\\ ,'\"",
    *"\t\n\r\x0b\x0c\x00\x1f\x7f\x85\xa0\xff\u0100\u2028\u2029\u3000\ufeff\uffff",
    "\U0001f600",
    "\U0010ffff",
]
LIMITS = [0, 1, 4, 1024, 1025, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, -(2**63)]


@functools.cache
def _ecma(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, "u")


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and _ecma(pattern).find(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DOCS / JOB_SCHEMA).read_text(encoding="utf-8"))
    return schema


@functools.cache
def _validators() -> dict[str, Any]:
    """Only `pattern` differs; `patternProperties` is no longer published."""
    ecma = extend(Draft202012Validator, {"pattern": _ecma_pattern})
    return {"ecma": ecma(_schema()), "python-re": Draft202012Validator(_schema())}


@functools.cache
def _decoder() -> Decoder:
    return Decoder(default_registry(), "us-east-1", ("us-east-1",), max_message_bytes=8 * 1024 * 1024)


def _worker_accepts(job: dict[str, Any]) -> bool:
    try:
        _decoder().decode(orjson.dumps(job), f"{job['service']}.{job['operation']}", None)
    except JobError:
        return False
    return True


def _verdicts(job: dict[str, Any]) -> dict[str, bool]:
    verdicts = {name: validator.is_valid(job) for name, validator in _validators().items()}
    verdicts["worker"] = _worker_accepts(job)
    return verdicts


def _job(routing_key: str, params: dict[str, Any]) -> dict[str, Any]:
    service, _, operation = routing_key.partition(".")
    return {"job_id": "job-1", "service": service, "operation": operation, "params": params}


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every member path of a params document, nested ones too."""
    if not isinstance(value, dict):
        return []
    found = []
    for key, sub in value.items():
        found.append((*prefix, key))
        found.extend(_paths(sub, (*prefix, key)))
    return found


texts = st.text(alphabet=st.sampled_from(ALPHABET), max_size=12)
scalars = st.one_of(
    texts,
    st.sampled_from(LIMITS),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.none(),
    st.booleans(),
    st.sampled_from([0.5, -1.5, 1e300]),  # no integral floats: JSON Schema's integer takes 1.0, see below
)
values = st.one_of(
    scalars,
    st.dictionaries(texts, st.one_of(texts, st.none()), max_size=3),
    st.lists(texts, max_size=2),
)


@st.composite
def jobs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid seed job, mutated a few times: members set, edited, removed, added; the pair swapped."""
    routing_key, params = draw(st.sampled_from(SEEDS))
    job = _job(routing_key, copy.deepcopy(params))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        paths = _paths(job["params"])
        kind = draw(st.sampled_from(["set", "edit", "edit", "remove", "add", "pair", "long"]))
        if kind == "pair":
            service, _, operation = draw(st.sampled_from(PAIRS)).partition(".")
            job[draw(st.sampled_from(["service", "operation"]))] = service if draw(st.booleans()) else operation
            continue
        path = draw(st.sampled_from(paths)) if paths else ("x",)
        parent = job["params"]
        for key in path[:-1]:
            parent = parent[key]
        current = parent.get(path[-1])
        if kind == "set":
            parent[path[-1]] = draw(values)
        elif kind == "edit" and isinstance(current, str):
            at = draw(st.integers(min_value=0, max_value=len(current)))
            parent[path[-1]] = current[:at] + draw(texts) + current[at + draw(st.integers(0, 2)) :]
        elif kind == "long" and isinstance(current, str):
            parent[path[-1]] = current * draw(st.sampled_from([2, 30, 200]))
        elif kind == "remove":
            parent.pop(path[-1], None)
        elif kind == "add" and isinstance(current, dict):
            current[draw(texts)] = draw(values)
    return job


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
@example(_job("m2.StartBatchJob", {**EXAMPLE_PARAMS["m2.StartBatchJob"], "applicationId": "app\n"}))
@example(_job("m2.StartBatchJob", {**EXAMPLE_PARAMS["m2.StartBatchJob"], "applicationId": "app\xa0x"}))
def test_schema_and_worker_agree_on_every_generated_job(job: dict[str, Any]) -> None:
    """Each generated job, good or bad, is accepted by both validators and the worker, or by none."""
    verdicts = _verdicts(job)
    assert len(set(verdicts.values())) == 1, (verdicts, job)


def test_generated_jobs_include_good_and_bad_ones() -> None:
    """The seeds pass everywhere: the differential test is not comparing refusals only."""
    for routing_key, params in SEEDS:
        assert _verdicts(_job(routing_key, copy.deepcopy(params))) == dict.fromkeys(
            ["ecma", "python-re", "worker"], True
        ), routing_key


def _patterns(node: Any) -> list[str]:
    if isinstance(node, list):
        return [p for item in node for p in _patterns(item)]
    if not isinstance(node, dict):
        return []
    own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
    return (
        own
        + [p for key, sub in node.items() if key != "properties" for p in _patterns(sub)]
        + [p for sub in node.get("properties", {}).values() for p in _patterns(sub)]
    )


def test_every_published_pattern_compiles_as_ecma_262_and_python() -> None:
    r"""No `\p{ASCII}` or other construct one engine lacks: each pattern compiles in both."""
    patterns = _patterns(_schema())
    assert patterns
    for pattern in patterns:
        _ecma(pattern)
        re.compile(pattern)
        assert r"\p" not in pattern, pattern


def _m2(**params: Any) -> dict[str, Any]:
    return _job("m2.StartBatchJob", {**EXAMPLE_PARAMS["m2.StartBatchJob"], **params})


@pytest.mark.parametrize(
    ("case", "job", "accepted"),
    [
        (
            "Lookout ClientToken (\\p{ASCII} in Java)",
            _job(
                "lookoutequipment.StartDataIngestionJob",
                {**EXAMPLE_PARAMS["lookoutequipment.StartDataIngestionJob"], "ClientToken": "tok-1"},
            ),
            True,
        ),
        ("jobParams key against its pattern", _m2(jobParams={"1bad": "x"}), False),
        ("jobParams key of one character", _m2(jobParams={"A": "x"}), False),
        ("m2 with Clean Rooms' operation", {**_m2(), "operation": "StartProtectedJob"}, False),
        ("union member given as null", _m2(batchJobIdentifier={"fileBatchJobIdentifier": None}), False),
        (
            "union member and a null one",
            _m2(batchJobIdentifier={"fileBatchJobIdentifier": {"fileName": "A"}, "s3BatchJobIdentifier": None}),
            True,
        ),
        ("trailing line break (Java's $ is the end)", _m2(applicationId="app\n"), False),
        ("non-breaking space (Java's \\S is ASCII)", _m2(applicationId="app\xa0x"), True),
        ("job_id with a trailing line break", {**_m2(), "job_id": "job-1\n"}, False),
        ("region with a trailing line break", {**_m2(), "region": "us-east-1\n"}, False),
        ("region", {**_m2(), "region": "us-east-1"}, True),
    ],
)
def test_published_schema_decides_as_the_worker(case: str, job: dict[str, Any], accepted: bool) -> None:
    """The cases of the issue, each under both validators and the worker."""
    assert _verdicts(job) == dict.fromkeys(["ecma", "python-re", "worker"], accepted), case


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1])
def test_step_checkpoint_beyond_32_bits_is_refused_by_schema_and_worker(value: int) -> None:
    """botocore's `integer` is 32-bit in the schema as in the worker."""
    routing_key, params = SEEDS[7]
    job = _job(routing_key, copy.deepcopy(params))
    job["params"]["batchJobIdentifier"]["restartBatchJobIdentifier"]["jobStepRestartMarker"]["stepCheckpoint"] = value
    assert _verdicts(job) == dict.fromkeys(["ecma", "python-re", "worker"], False)
