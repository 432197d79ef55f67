"""Bad input of every kind ends dead-lettered with the right category and the failing field's path.

The catalogue is generated from the operations' parameter models: every field, every constraint
in its `Annotated` metadata (lengths, bounds, `Literal` enums, AWS patterns), every union, map key
and map value, every required member and every shape's ban on unknown members gives one case,
a job that violates exactly that constraint and nothing else. A new constraint brings its own case.
A property test then throws arbitrary bodies, headers and properties at a running worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import types
import typing
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import aio_pika
import annotated_types
import orjson
import pytest
from aio_pika import DeliveryMode, Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from dispatcher.aws_regex import AwsPattern, compile_java_pattern
from dispatcher.dead_letters import StoredLetter
from dispatcher.examples import EXAMPLE_PARAMS, example_job
from dispatcher.params_types import AwsUnion
from dispatcher.redact import REDACTED_KEY, redact_loc
from dispatcher.registry import default_registry
from dispatcher.settings import Settings
from dispatcher.stamps import Stamper
from dispatcher.wiring import build_worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from aio_pika.abc import AbstractIncomingMessage

    from dispatcher.worker import Worker

REGISTRY = default_registry()
ROUTING_KEYS = REGISTRY.routing_keys
M2 = "m2.StartBatchJob"
MAX_MESSAGE_BYTES = 7_100_000  # above QuickSight's 7,000,000-character InputPayload, so its MaxLen case fits
OUTCOME_TIMEOUT_S = 20
# AMQP timestamps are unsigned seconds; hypothesis wants naive bounds and adds the zone itself.
EPOCH = datetime(1970, 1, 2)  # noqa: DTZ001
END_OF_TIMESTAMPS = datetime(2200, 1, 1)  # noqa: DTZ001
CATEGORIES = {
    "malformed",
    "invalid",
    "rejected",
    "exhausted",
    "unknown-outcome",
    "expired",
    "unroutable",
    "delivery-limit",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --- the constraint catalogue, read from the models -------------------------------------------


@dataclass
class Node:
    """One type of the parameter models with its constraints, as the catalogue needs it."""

    kind: str  # str, int, float, bool, literal, timestamp, list, map, shape, union
    min_len: int | None = None
    max_len: int | None = None
    ge: float | None = None
    le: float | None = None
    pattern: AwsPattern | None = None
    values: tuple[Any, ...] = ()
    item: Node | None = None
    key: Node | None = None
    value: Node | None = None
    model: type[BaseModel] | None = None


def node_of(annotation: Any, metadata: list[Any] | None = None) -> Node:
    """Unwrap `Annotated`, optional unions and containers into a `Node` (unknown constructs fail loudly)."""
    extra: list[Any] = list(metadata or [])
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *more = get_args(annotation)
            extra = [*more, *extra]
        elif origin in {typing.Union, types.UnionType}:
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            assert len(members) == 1, f"the catalogue knows no union of types such as {annotation}: extend it"
            annotation = members[0]
        else:
            break
    node = _base_node(annotation)
    for item in extra:
        for constraint in item.metadata if isinstance(item, FieldInfo) else [item]:
            _apply(node, constraint)
    return node


def _base_node(annotation: Any) -> Node:
    origin = get_origin(annotation)
    if origin is Literal:
        return Node("literal", values=get_args(annotation))
    if origin is dict:
        key, value = get_args(annotation)
        return Node("map", key=node_of(key), value=node_of(value))
    if origin is list:
        return Node("list", item=node_of(get_args(annotation)[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return Node("union" if issubclass(annotation, AwsUnion) else "shape", model=annotation)
    simple = {str: "str", int: "int", float: "float", bool: "bool", datetime: "timestamp"}
    assert annotation in simple, f"the catalogue knows no type {annotation!r}: extend it"
    return Node(simple[annotation])


def _apply(node: Node, constraint: Any) -> None:
    if isinstance(constraint, annotated_types.MinLen):
        node.min_len = constraint.min_length
    elif isinstance(constraint, annotated_types.MaxLen):
        node.max_len = constraint.max_length
    elif isinstance(constraint, annotated_types.Ge):
        node.ge = constraint.ge
    elif isinstance(constraint, annotated_types.Le):
        node.le = constraint.le
    elif isinstance(constraint, AwsPattern):
        node.pattern = constraint
    elif type(constraint).__name__ != "Strict":
        pytest.fail(f"the catalogue knows no constraint {constraint!r}: give it a case")


def fields_of(model: type[BaseModel]) -> Iterator[tuple[str, Node, bool]]:
    """(AWS member name, node, required) of every field of a model."""
    for name, info in model.model_fields.items():
        yield info.alias or name, node_of(info.annotation, info.metadata), info.is_required()


def _fits(node: Node, text: str) -> bool:
    if node.min_len is not None and len(text) < node.min_len:
        return False
    if node.max_len is not None and len(text) > node.max_len:
        return False
    return node.pattern is None or compile_java_pattern(node.pattern.java_pattern).fullmatch(text) is not None


def _lengths(node: Node) -> list[int]:
    low = node.min_len or 0
    high = node.max_len if node.max_len is not None else 64
    return sorted({length for length in (low, max(low, 1), 3, 12, 20, 36, high) if low <= length <= min(high, 64)})


def valid_text(node: Node, hint: str = "") -> str:
    """A string that meets every constraint of `node` (the hint first, when it does)."""
    candidates = [hint, *(char * length for length in _lengths(node) for char in "a0A")]
    candidates += ["0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b", "dzd_abc", "arn:aws:iam::123456789012:role/x"]
    for candidate in candidates:
        if (candidate and _fits(node, candidate)) or (candidate == "" and node.min_len == 0 and _fits(node, "")):
            return candidate
    pytest.fail(f"no valid string for {node}: teach valid_text one")


def valid_value(node: Node, example: Any = None) -> Any:
    """A value `node` accepts: the example's when there is one."""
    if example is not None:
        return example
    if node.kind == "str":
        return valid_text(node)
    if node.kind in {"int", "float"}:
        return int(node.ge) if node.ge is not None else 1
    builders: dict[str, Callable[[], Any]] = {
        "bool": lambda: True,
        "literal": lambda: node.values[0],
        "timestamp": lambda: "2026-01-01T00:00:00Z",
        "list": lambda: [valid_value(node.item)] * max(1, node.min_len or 0),
        "map": lambda: {valid_text(node.key): valid_value(node.value)},
        "shape": lambda: {name: valid_value(child) for name, child, required in fields_of(node.model) if required},
        "union": lambda: dict([next((name, valid_value(child)) for name, child, _ in fields_of(node.model))]),
    }
    return builders[node.kind]()


@dataclass(frozen=True)
class Violation:
    """A value at `path` (relative to the node) that breaks exactly one constraint, named `kind`."""

    kind: str
    value: Any
    path: tuple[str | int, ...] = ()


def violations(node: Node, good: Any) -> Iterator[Violation]:
    """One violation per constraint of `node` and of everything inside it, starting from `good`."""
    handlers: dict[str, Callable[[Node, Any], Iterator[Violation]]] = {
        "str": _text_violations,
        "int": _number_violations,
        "float": _number_violations,
        "bool": lambda _node, _good: iter([Violation("type", "true")]),
        "literal": lambda node, _good: iter([Violation("enum", f"NOT_{node.values[0]}")]),
        "timestamp": lambda _node, _good: iter([Violation("type", "not a time")]),
        "list": _list_violations,
        "map": _map_violations,
        "shape": _shape_violations,
        "union": _union_violations,
    }
    yield from handlers[node.kind](node, good)


def _text_violations(node: Node, good: str, *, as_key: bool = False) -> Iterator[Violation]:
    if not as_key:
        yield Violation("type", 12345)
    if node.min_len:
        seed = good[:1] if isinstance(good, str) and good else "a"
        yield Violation("min-length", seed * (node.min_len - 1))
    if node.max_len is not None:
        yield Violation("max-length", "a" * (node.max_len + 1))
    if node.pattern is not None:
        lengths = _lengths(node) if node.max_len is None or node.max_len <= 64 else [max(node.min_len or 0, 1)]
        misfits = (char * length for length in lengths for char in ("!", " ", "é", "\n", "-", "a"))
        misfit = next((text for text in misfits if len(text) >= (node.min_len or 0) and not _fits(node, text)), None)
        assert misfit is not None, f"no string breaks only the pattern of {node}: teach _text_violations one"
        yield Violation("pattern", misfit)


def _number_violations(node: Node, good: float) -> Iterator[Violation]:
    del good
    yield Violation("type", "1")
    if node.ge is not None:
        yield Violation("minimum", node.ge - 1)
    if node.le is not None:
        yield Violation("maximum", node.le + 1)


def _list_violations(node: Node, good: list[Any]) -> Iterator[Violation]:
    assert node.item is not None
    yield Violation("type", {"not": "a list"})
    if node.min_len:
        yield Violation("min-items", good[: node.min_len - 1])
    if node.max_len is not None:
        yield Violation("max-items", [good[0]] * (node.max_len + 1))
    for bad in violations(node.item, good[0]):
        yield Violation(f"item {bad.kind}", [bad.value], (0, *bad.path))


def _map_violations(node: Node, good: dict[str, Any]) -> Iterator[Violation]:
    assert node.key is not None
    assert node.value is not None
    key, value = next(iter(good.items()))
    yield Violation("type", ["not", "a map"])
    if node.min_len:
        yield Violation("min-entries", {})
    if node.max_len is not None:
        keys = (f"{stem}{number}" for number in range(10 * node.max_len) for stem in (key, "k", "K"))
        many = dict.fromkeys([k for k in keys if _fits(node.key, k)][: node.max_len + 1], value)
        assert len(many) == node.max_len + 1, f"too few distinct valid keys for {node}"
        yield Violation("max-entries", many)
    for bad in _text_violations(node.key, key, as_key=True):
        yield Violation(f"key {bad.kind}", {bad.value: value}, (bad.value,))
    for bad in violations(node.value, value):
        yield Violation(f"value {bad.kind}", {key: bad.value}, (key, *bad.path))


def _shape_violations(node: Node, good: dict[str, Any]) -> Iterator[Violation]:
    assert node.model is not None
    yield Violation("type", "not an object")
    yield Violation("unknown member", {**good, "unknownMember": "x"}, ("unknownMember",))
    for name, child, required in fields_of(node.model):
        if required:
            yield Violation("required", {k: v for k, v in good.items() if k != name}, (name,))
        child_good = valid_value(child, good.get(name))
        for bad in violations(child, child_good):
            yield Violation(bad.kind, {**good, name: bad.value}, (name, *bad.path))


def _union_violations(node: Node, good: dict[str, Any]) -> Iterator[Violation]:
    assert node.model is not None
    members = list(fields_of(node.model))
    yield Violation("type", "not an object")
    yield Violation("union: no member", {})
    yield Violation("unknown member", {**good, "unknownMember": "x"}, ("unknownMember",))
    if len(members) > 1:
        other = next((name, child) for name, child, _ in members if name not in good)
        yield Violation("union: two members", {**good, other[0]: valid_value(other[1])})
    for name, child, _ in members:
        child_good = valid_value(child, good.get(name))
        for bad in violations(child, child_good):
            yield Violation(bad.kind, {name: bad.value}, (name, *bad.path))


@dataclass(frozen=True)
class Case:
    """A job that must be dead-lettered: its body, routing key, category, error code and expected text."""

    name: str
    body: bytes
    routing_key: str
    category: str
    code: str
    text: str
    properties: dict[str, Any] = field(default_factory=dict)


def render_path(path: tuple[str | int, ...]) -> str:
    """A JSON path as a person reads it: `params.jobParams["9bad"]`, `params.items[0].name`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def constraint_cases() -> list[tuple[str, str, Violation]]:
    """(routing key, case name, violation of the params) for every constraint of every operation."""
    found = []
    for operation in REGISTRY:
        key = operation.routing_key
        root = Node("shape", model=operation.params_model)
        for bad in violations(root, EXAMPLE_PARAMS[key]):
            if bad.kind == "type" and not bad.path:
                continue  # params that are not an object: an envelope case
            found.append((key, f"{key} {render_path(bad.path) or 'params'} {bad.kind}", bad))
    return found


def params_cases(tag: str) -> list[Case]:
    """The generated constraint cases as jobs."""
    cases = []
    for number, (key, name, bad) in enumerate(constraint_cases()):
        job_id = f"{tag}-p{number}"
        body = orjson.dumps({**example_job(key, job_id), "params": bad.value})
        assert len(body) <= MAX_MESSAGE_BYTES, name
        cut, redacted = redact_loc(bad.path, REGISTRY.get(key).sensitive_paths)
        path = render_path(("params", *cut))
        if redacted:
            # Below a sensitive member the error names no map key: it says what is redacted instead.
            text = f"{path}: {REDACTED_KEY if bad.kind.startswith('key ') else redacted}: "
        else:
            # A map key's path is followed by "(the key)", any other by the colon before the problem.
            text = path if bad.kind.startswith("key ") else f"{path}:"
        cases.append(Case(name, body, key, "invalid", "InvalidParameters", text))
    return cases


def envelope_cases(tag: str) -> list[Case]:
    """What can be wrong with a job message besides its params."""

    def job(job_id: str, key: str = M2, **changes: Any) -> bytes:
        return orjson.dumps({**example_job(key, job_id), **changes})

    def without(job_id: str, member: str) -> bytes:
        return orjson.dumps({k: v for k, v in example_job(M2, job_id).items() if k != member})

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    naive = datetime.now(UTC).replace(tzinfo=None).isoformat()
    rows: list[tuple[str, Callable[[str], bytes], str, str, str, str]] = [
        ("not UTF-8", lambda i: b'{"job_id": "' + i.encode() + b'\xff"}', M2, "malformed", "NotUtf8", "UTF-8"),
        ("not JSON", lambda _: b"{job_id: 1", M2, "malformed", "NotJson", "not JSON"),
        ("JSON array", lambda _: b"[1, 2]", M2, "malformed", "NotAnObject", "not an object"),
        ("JSON string", lambda _: b'"job"', M2, "malformed", "NotAnObject", "not an object"),
        ("empty body", lambda _: b"", M2, "malformed", "NotJson", "not JSON"),
        (
            "over the size limit",
            lambda i: job(i, metadata={"pad": "x" * MAX_MESSAGE_BYTES}),
            M2,
            "malformed",
            "MessageTooLarge",
            "over the limit",
        ),
        ("unknown field", lambda i: job(i, priority="high"), M2, "invalid", "InvalidJobMessage", "priority:"),
        ("service missing", lambda i: without(i, "service"), M2, "invalid", "InvalidJobMessage", "service:"),
        ("params missing", lambda i: without(i, "params"), M2, "invalid", "InvalidJobMessage", "params:"),
        ("params not an object", lambda i: job(i, params=[1]), M2, "invalid", "InvalidJobMessage", "params:"),
        ("job_id pattern", lambda _: job("bad id!"), M2, "invalid", "InvalidJobMessage", "job_id:"),
        ("job_id too long", lambda _: job("j" * 129), M2, "invalid", "InvalidJobMessage", "job_id:"),
        ("job_id not a string", lambda _: job(7), M2, "invalid", "InvalidJobMessage", "job_id:"),
        ("region pattern", lambda i: job(i, region="Mars"), M2, "invalid", "InvalidJobMessage", "region:"),
        ("region not a region", lambda i: job(i, region="zz-west-3"), M2, "invalid", "RegionNotEnabled", "zz-west-3"),
        ("metadata value", lambda i: job(i, metadata={"team": 1}), M2, "invalid", "InvalidJobMessage", "metadata.team"),
        ("not_after not a time", lambda i: job(i, not_after="soon"), M2, "invalid", "InvalidJobMessage", "not_after:"),
        ("not_after naive", lambda i: job(i, not_after=naive), M2, "invalid", "InvalidJobMessage", "not_after:"),
        ("not_after passed", lambda i: job(i, not_after=past), M2, "expired", "JobExpired", "not_after"),
        (
            "routing key mismatch",
            lambda i: job(i, "datazone.StartDataSourceRun"),
            M2,
            "invalid",
            "RoutingKeyMismatch",
            "datazone.StartDataSourceRun",
        ),
        ("unknown operation", lambda i: job(i, operation="StopBatchJob"), M2, "unroutable", "UnknownOperation", "m2."),
        ("unknown routing key", job, "m2.StopBatchJob", "unroutable", "UnknownRoutingKey", "m2.StopBatchJob"),
    ]
    cases = [
        Case(name, make(f"{tag}-e{number}"), key, category, code, text)
        for number, (name, make, key, category, code, text) in enumerate(rows)
    ]
    # aiormq gives every message a message_id, so "neither job_id nor message_id" cannot be sent from here.
    no_id = orjson.dumps({k: v for k, v in example_job(M2, "x").items() if k != "job_id"})
    cases.append(
        Case("no job_id, bad message_id", no_id, M2, "invalid", "InvalidJobId", "message_id", {"message_id": "a b"})
    )
    return cases


# --- a worker of the test's own, whose task the tests watch -------------------------------------


@pytest.fixture
async def running_worker(settings_for: Callable[..., Settings], emulator: Any) -> AsyncIterator[tuple[Worker, Any]]:
    """One in-process worker that accepts messages up to MAX_MESSAGE_BYTES; its task is watched."""
    worker = build_worker(settings_for(max_message_bytes=MAX_MESSAGE_BYTES), REGISTRY)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(30):
        while not worker.ready:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    yield worker, task
    worker.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 30)


class Outcomes:
    """Consumes results and dead letters in the background; dead letters by `x-test-id`, results in order."""

    def __init__(self, amqp_url: str, prefix: str) -> None:
        self.url = amqp_url
        self.prefix = prefix
        self.dead: dict[str, list[tuple[bytes, dict[str, Any]]]] = {}
        self.letters: dict[str, list[StoredLetter]] = {}
        self._stamper = Stamper.from_settings(Settings(amqp_url=amqp_url))
        self.results: list[tuple[dict[str, Any], dict[str, Any]]] = []

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Outcomes]:
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=200)
            dead = await channel.get_queue(f"{self.prefix}.dead", ensure=False)
            results = await channel.get_queue(f"{self.prefix}.results", ensure=False)
            await dead.consume(self._on_dead)
            await results.consume(self._on_result)
            yield self

    async def _on_dead(self, message: AbstractIncomingMessage) -> None:
        headers = {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in message.headers.items()}
        self.dead.setdefault(str(headers.get("x-test-id")), []).append((message.body, headers))
        letter = StoredLetter.from_message(message, self._stamper)
        self.letters.setdefault(str(headers.get("x-test-id")), []).append(letter)
        await message.ack()

    async def _on_result(self, message: AbstractIncomingMessage) -> None:
        self.results.append((orjson.loads(message.body), {"correlation_id": message.correlation_id}))
        await message.ack()

    async def wait_for_dead(self, test_ids: set[str], timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not test_ids <= set(self.dead):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            missing = sorted(test_ids - set(self.dead))
            pytest.fail(f"{len(missing)} messages never reached the DLQ, e.g. {missing[:5]}")


async def publish(channel: Any, exchange_name: str, body: bytes, routing_key: str, **properties: Any) -> None:
    """Publish confirmed to the jobs exchange."""
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    properties.setdefault("content_type", "application/json")
    await exchange.publish(Message(body, delivery_mode=DeliveryMode.PERSISTENT, **properties), routing_key)


# --- the tests ---------------------------------------------------------------------------------


def test_catalogue_has_one_case_per_constraint_each_breaking_exactly_that_one():
    """Each generated case fails its operation's model with exactly one error, at the path the case names."""
    cases = constraint_cases()
    kinds = {bad.kind for _, _, bad in cases}
    for kind in ("required", "min-length", "max-length", "pattern", "enum", "minimum", "maximum", "unknown member"):
        assert kind in kinds, f"no case of kind {kind}"
    for kind in ("union: no member", "union: two members", "max-entries", "key pattern", "value max-length"):
        assert kind in kinds, f"no case of kind {kind}"
    assert {key for key, _, _ in cases} == set(ROUTING_KEYS)
    paths = {render_path(("params", *bad.path)) for _, _, bad in cases}
    assert "params.batchJobIdentifier.s3BatchJobIdentifier.bucket" in paths
    assert "params.computeConfiguration.worker.number" in paths
    for key, name, bad in cases:
        model = REGISTRY.get(key).params_model
        with pytest.raises(ValidationError) as raised:
            model.model_validate(bad.value)
        errors = raised.value.errors()
        assert len(errors) == 1, (name, errors)
        location = tuple(part for part in errors[0]["loc"] if part != "[key]")
        assert location == bad.path, (name, errors)


async def test_every_bad_job_is_dead_lettered_with_its_category_and_path(running_worker, amqp_url, prefix, emulator):
    """Every catalogue and envelope case ends in the DLQ, byte-identical, with its category, code and field path."""
    tag = f"bad-{uuid.uuid4().hex[:6]}"
    cases = params_cases(tag) + envelope_cases(tag)
    outcomes = Outcomes(amqp_url, prefix)
    async with outcomes.reading():
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for number, case in enumerate(cases):
                properties = {"message_id": f"{tag}-m{number}", **case.properties}
                properties["headers"] = {"x-test-id": f"{tag}-{number}"}
                await publish(channel, f"{prefix}.jobs", case.body, case.routing_key, **properties)
        await outcomes.wait_for_dead({f"{tag}-{n}" for n in range(len(cases))}, timeout_s=120)

    wrong = []
    for number, case in enumerate(cases):
        [(body, headers)] = outcomes.dead[f"{tag}-{number}"]
        got = (headers["x-dispatcher-category"], headers["x-dispatcher-error-code"])
        message = headers["x-dispatcher-error-message"]
        if got != (case.category, case.code) or case.text not in message or body != case.body:
            wrong.append((case.name, got, message[:300]))
    assert wrong == []
    assert emulator.state.calls.to_json() == [], "AWS was called for a bad job"
    assert len(cases) > 150


# Properties, headers and bodies a publisher might send, from sloppy to hostile.
_SHORT = st.text(st.characters(codec="utf-8"), max_size=40)
_TEXT = _SHORT
# Every type an AMQP field table can carry (pamqp: byte arrays as bytearray, floats as 32 bits; the broker,
# written in Erlang, closes the connection on an infinite float).
_HEADER_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(width=32, allow_nan=False, allow_infinity=False)
    | _SHORT
    | st.binary(max_size=20).map(bytearray),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
_DISPATCHER_HEADERS = st.sampled_from(
    [
        "x-dispatcher-attempts",
        "x-dispatcher-retries",
        "x-dispatcher-error-codes",
        "x-dispatcher-category",
        "x-dispatcher-replays",
        "x-dispatcher-original-routing-key",
        "x-death",
        "x-delivery-count",
        "x-first-death-reason",
        "traceparent",
    ]
)
_X_DEATH = st.one_of(
    _HEADER_VALUE,
    st.lists(
        st.fixed_dictionaries({"reason": st.sampled_from(["delivery_limit", "expired", "rejected"]) | _TEXT}),
        max_size=2,
    ),
)
_HEADERS = st.dictionaries(_DISPATCHER_HEADERS | _TEXT, _HEADER_VALUE, max_size=4).flatmap(
    lambda headers: st.fixed_dictionaries({}, optional={"x-death": _X_DEATH}).map(lambda extra: {**headers, **extra})
)
_JSON = st.recursive(  # what orjson writes: integers within 64 bits
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | _SHORT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_SHORT, inner, max_size=4),
    max_leaves=12,
)
# Mostly the operations' own keys, sometimes none of theirs (sampled_from draws evenly; one_of does not).
_ROUTING_KEY = st.sampled_from([*ROUTING_KEYS, *ROUTING_KEYS, *ROUTING_KEYS, "m2.StopBatchJob", "", None]).flatmap(
    lambda key: st.just(key) if key is not None else st.text(st.characters(min_codepoint=33, max_codepoint=126))
)


@st.composite
def _near_valid_body(draw: st.DrawFn, routing_key: str, test_id: str) -> bytes:
    """The example job with one member dropped, replaced by arbitrary JSON, or added; or untouched."""
    key = routing_key if routing_key in ROUTING_KEYS else draw(st.sampled_from(ROUTING_KEYS))
    job = example_job(key, test_id)
    params = dict(job["params"])
    how = draw(st.sampled_from(["none", "drop", "replace", "add", "param-drop", "param-replace", "param-add"]))
    if how == "drop":
        job.pop(draw(st.sampled_from(sorted(job))))
    elif how == "replace":
        job[draw(st.sampled_from(["service", "operation", "params", "region", "not_after", "metadata"]))] = draw(_JSON)
    elif how == "add":
        job[draw(_SHORT)] = draw(_JSON)
    elif how == "param-drop":
        params.pop(draw(st.sampled_from(sorted(params))))
    elif how == "param-replace":
        params[draw(st.sampled_from(sorted(params)))] = draw(_JSON)
    elif how == "param-add":
        params[draw(_SHORT)] = draw(_JSON)
    if how.startswith("param"):
        job["params"] = params
    return orjson.dumps(job)


@st.composite
def _messages(draw: st.DrawFn) -> dict[str, Any]:
    """One message as a publisher could send it: routing key, body and every AMQP property."""
    test_id = f"hyp-{uuid.uuid4().hex[:12]}"
    routing_key = draw(_ROUTING_KEY)
    bodies = {
        "bytes": st.binary(max_size=200),
        "json": _JSON.map(orjson.dumps),
        "near-valid job": _near_valid_body(routing_key, test_id),
    }
    body = draw(bodies[draw(st.sampled_from(["bytes", "json", "near-valid job", "near-valid job"]))])
    properties = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "content_type": _TEXT,
                "content_encoding": _TEXT,
                "message_id": _TEXT | st.just(test_id),
                "correlation_id": _TEXT,
                "reply_to": st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
                "priority": st.integers(0, 255),
                "expiration": st.sampled_from([1, 60, 3600]),
                "type": _TEXT,
                "app_id": _TEXT,
                "timestamp": st.datetimes(EPOCH, END_OF_TIMESTAMPS, timezones=st.just(UTC)),
            },
        )
    )
    headers = draw(_HEADERS)
    properties["headers"] = {**headers, "x-test-id": test_id}
    # aiormq sends no message without a message_id: for a missing or empty one it makes one up, from
    # the `random` module that hypothesis seeds the same way in every example. Make it one the test knows.
    if not properties.get("message_id"):
        properties["message_id"] = test_id
    return {"test_id": test_id, "routing_key": routing_key, "body": body, "properties": properties}


@pytest.mark.timeout(900)
async def test_whatever_arrives_the_worker_stays_up_and_each_message_ends_somewhere(
    running_worker, amqp_url, prefix, emulator
):
    """Arbitrary bodies, headers and properties: the worker stays ready and each message ends in a result or the DLQ."""
    worker, task = running_worker
    loop = asyncio.get_running_loop()
    outcomes = Outcomes(amqp_url, prefix)
    connection = await aio_pika.connect(amqp_url)
    async with connection, outcomes.reading():
        channel = await connection.channel(publisher_confirms=True)

        async def exercise(message: dict[str, Any]) -> None:
            seen_results = len(outcomes.results)
            await publish(channel, f"{prefix}.jobs", message["body"], message["routing_key"], **message["properties"])
            handles = {message["test_id"], message["properties"].get("message_id")} - {None}
            try:
                async with asyncio.timeout(OUTCOME_TIMEOUT_S):
                    while not (
                        message["test_id"] in outcomes.dead
                        or any(
                            {result.get("job_id"), properties["correlation_id"]} & handles
                            for result, properties in outcomes.results[seen_results:]
                        )
                    ):
                        assert worker.ready, "the worker is no longer ready"
                        assert not task.done(), "the worker's task ended"
                        await asyncio.sleep(0.02)
            except TimeoutError:
                pytest.fail(f"no result and no dead letter in {OUTCOME_TIMEOUT_S}s for {message!r}")
            for letter in outcomes.letters.get(message["test_id"], []):
                assert letter.stamped, (letter.headers, message)
                assert letter.category in CATEGORIES, (letter.headers, message)
                assert letter.error_code, (letter.headers, message)
            assert worker.ready
            assert not task.done()

        # Each example is a real round trip, and a failing one costs a timeout: report it unshrunk.
        @settings(
            max_examples=200,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @given(message=_messages())
        def check(message: dict[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(exercise(message), loop).result(timeout=120)

        await asyncio.to_thread(check)

    assert worker.ready
    assert not task.done()


@pytest.mark.parametrize(
    "x_death",
    [
        pytest.param([{"reason": "rejected", "queue": "elsewhere"}], id="list"),
        pytest.param("garbage", id="text"),
        pytest.param({"reason": "expired"}, id="table"),
        pytest.param(7, id="number"),
    ],
)
async def test_unroutable_message_with_any_x_death_header_is_dead_lettered(running_worker, amqp_url, prefix, x_death):
    """A message no operation takes ends in the DLQ as `unroutable`, whatever `x-death` header its publisher set."""
    worker, task = running_worker
    test_id = f"xdeath-{uuid.uuid4().hex[:8]}"
    outcomes = Outcomes(amqp_url, prefix)
    async with outcomes.reading():
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            body = orjson.dumps(example_job(M2, test_id))
            headers = {"x-death": x_death, "x-test-id": test_id}
            await publish(channel, f"{prefix}.jobs", body, "m2.StopBatchJob", headers=headers)
        await outcomes.wait_for_dead({test_id}, timeout_s=15)

    [(dead_body, dead_headers)] = outcomes.dead[test_id]
    assert dead_headers["x-dispatcher-category"] == "unroutable"
    assert dead_body == body
    assert worker.ready
    assert not task.done()


async def test_job_expired_by_its_amqp_expiration_is_dead_lettered_expired(declare, start_worker, broker):
    """A job whose AMQP `expiration` passes while it waits in its queue is dead-lettered `expired`, not `unroutable`."""
    await declare()
    job_id = f"ttl-{uuid.uuid4().hex[:8]}"
    await broker.publish(example_job(M2, job_id), M2, expiration=0.05)
    # No worker yet: the broker expires it in the queue and dead-letters it into triage.
    triage = await broker.channel.get_queue(f"{broker.prefix}.dead.triage")
    async with asyncio.timeout(10):
        while (await triage.declare()).message_count < 1:
            await asyncio.sleep(0.05)
    await start_worker()

    [dead] = await broker.collect(broker.dead_queue, 1, timeout_s=30)
    assert orjson.loads(dead.body)["job_id"] == job_id
    assert dead.headers["x-first-death-reason"] == "expired", "the broker did not expire it: nothing was tested"
    assert dead.headers["x-dispatcher-category"] == "expired"
