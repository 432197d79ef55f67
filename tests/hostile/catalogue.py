"""The hostile messages: generated from a seed, each carrying a marker of its own and what must become of it.

A marker (`hx` + six hex digits of the seed + a five-digit number) is the message's `job_id` and
`message_id` where those can carry it, and its bytes are in every body, so each result and dead
letter is attributed to one message. A job whose body is valid carries the marker in its AWS
parameters too (`tests.faults.harness.marked_job`), so the emulator's call log attributes each AWS
start to its message, for the operations without an idempotency token as well.

Kinds, as the issue numbers them: 1 undecodable properties, 2 header values other clients send,
3 routing keys, 4 bodies, 5 forged dispatcher and broker state, 6 `reply_to` naming the
dispatcher's own queues, 7 valid jobs. Kinds 1, 2, 5 and 6 are valid jobs with one oddity each:
they must succeed, but for the cases that say why not (an undecodable sole identity, an invalid
job or an unknown key carrying the oddity into a dead letter). The rest must be dead-lettered,
with the categories a case allows.
"""

from __future__ import annotations

import math
import random
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from tests.faults.harness import M2, QUICKSIGHT, ROUTING_KEYS, marked_job
from tests.hostile.wire import Publish, RawField

if TYPE_CHECKING:
    from collections.abc import Callable

MARKER = re.compile(rb"hx[0-9a-f]{6}[0-9]{5}")
MAX_MESSAGE_BYTES = 256 * 1024  # the suite's worker setting: an oversize body stays cheap
RETRY_DELAYS_S = (0.2, 0.4)  # the integration fixtures' worker setting; its retry queues are reply_to targets

PROPERTIES = "1 properties"
HEADER_VALUES = "2 header values"
ROUTING_KEY = "3 routing keys"
BODIES = "4 bodies"
FORGED = "5 forged state"
REPLY_TO = "6 reply_to"
VALID = "7 valid"
KINDS = (PROPERTIES, HEADER_VALUES, ROUTING_KEY, BODIES, FORGED, REPLY_TO, VALID)

MALFORMED = frozenset({"malformed"})
INVALID = frozenset({"invalid"})
BAD_BODY = frozenset({"malformed", "invalid"})
UNROUTABLE = frozenset({"unroutable"})


class Expect(StrEnum):
    """The one outcome a message must end in."""

    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead-lettered"


@dataclass(frozen=True)
class Message:
    """One generated message, what must become of it, and what the oracle checks beyond that."""

    marker: str
    kind: str
    case: str
    routing_key: str | bytes
    body: bytes
    properties: dict[str, Any]
    expect: Expect
    categories: frozenset[str] = frozenset()
    operation: str | None = None
    """The operation whose marked parameters the body carries: its AWS calls are this message's."""
    single_attempt: bool = False
    """Forged retry state: the result must say one attempt, as for any first delivery."""

    def publish(self) -> Publish:
        """The message as the publisher sends it."""
        return Publish(self.marker, self.routing_key, self.body, self.properties)


@dataclass
class Draw:
    """What a case builds one message from: its marker, its own random source and the test's names."""

    rng: random.Random
    marker: str
    kind: str
    case: str
    prefix: str

    def operation(self) -> str:
        return self.rng.choice(ROUTING_KEYS)

    def job(self, routing_key: str) -> dict[str, Any]:
        """A valid job of an operation, marked in its job_id, parameters and metadata."""
        return {**marked_job(routing_key, self.marker), "metadata": {"marker": self.marker, "case": self.case}}

    def not_utf8(self, size: int) -> bytes:
        """`size` random bytes that are not UTF-8 (a lone continuation byte, or 0xff, somewhere)."""
        raw = bytearray(self.rng.randbytes(size))
        raw[self.rng.randrange(size)] = self.rng.choice([0x80, 0xBF, 0xC0, 0xFE, 0xFF])
        return bytes(raw)

    def message(
        self,
        body: bytes,
        routing_key: str | bytes,
        expect: Expect,
        *,
        categories: frozenset[str] = frozenset(),
        operation: str | None = None,
        single_attempt: bool = False,
        headers: dict[Any, Any] | None = None,
        **properties: Any,
    ) -> Message:
        props: dict[str, Any] = {"content_type": "application/json", "delivery_mode": 2, "message_id": self.marker}
        props.update(properties)
        if headers is not None:
            props["headers"] = headers
        return Message(
            self.marker,
            self.kind,
            self.case,
            routing_key,
            body,
            props,
            expect,
            categories,
            operation,
            single_attempt,
        )

    def succeeds(
        self, routing_key: str | None = None, *, single_attempt: bool = False, **properties: object
    ) -> Message:
        """A valid job of `routing_key` (else a random operation) with these properties: it must succeed."""
        key = routing_key or self.operation()
        body = orjson.dumps(self.job(key))
        return self.message(body, key, Expect.SUCCEEDED, operation=key, single_attempt=single_attempt, **properties)

    def dead(
        self, body: bytes, categories: frozenset[str], routing_key: str | bytes = M2, **properties: Any
    ) -> Message:
        """A message that must be dead-lettered with one of `categories`, AWS never called."""
        operation = routing_key if routing_key in ROUTING_KEYS else None
        return self.message(
            body, routing_key, Expect.DEAD_LETTERED, categories=categories, operation=operation, **properties
        )

    def unroutable(self, routing_key: str | bytes, **properties: Any) -> Message:
        """A valid job sent with a routing key no operation is bound to: dead-lettered `unroutable`."""
        key = self.operation()
        body = orjson.dumps(self.job(key))
        return self.message(body, routing_key, Expect.DEAD_LETTERED, categories=UNROUTABLE, operation=key, **properties)


@dataclass(frozen=True)
class Case:
    """One kind of hostile message."""

    kind: str
    name: str
    make: Callable[[Draw], Message] = field(repr=False)


CATALOGUE: list[Case] = []


def case(kind: str, name: str) -> Callable[[Callable[[Draw], Message]], Callable[[Draw], Message]]:
    """Register a case in the catalogue."""

    def register(make: Callable[[Draw], Message]) -> Callable[[Draw], Message]:
        CATALOGUE.append(Case(kind, name, make))
        return make

    return register


# --- 1: properties pamqp cannot decode as they are -----------------------------------------------


def _epoch_s(draw: Draw) -> int:
    return draw.rng.randint(1_600_000_000, 1_900_000_000)


def _short_string_case(prop: str) -> None:
    case(PROPERTIES, f"{prop} not UTF-8")(lambda draw: draw.succeeds(**{prop: draw.not_utf8(draw.rng.randint(1, 40))}))


for _prop in ("correlation_id", "type", "app_id", "content_type", "content_encoding", "reply_to"):
    _short_string_case(_prop)


@case(PROPERTIES, "correlation_id and reply_to of 255 bytes 0xff (765 bytes once replaced)")
def _(draw: Draw) -> Message:
    return draw.succeeds(correlation_id=b"\xff" * 255, reply_to=b"\xff" * 255)


@case(PROPERTIES, "message_id not UTF-8, job_id in the body")
def _(draw: Draw) -> Message:
    return draw.succeeds(message_id=draw.not_utf8(draw.rng.randint(1, 20)) + draw.marker.encode())


@case(PROPERTIES, "message_id not UTF-8 and no job_id: the only identity is undecodable")
def _(draw: Draw) -> Message:
    key = draw.operation()
    job = draw.job(key)
    del job["job_id"]
    message_id = draw.not_utf8(draw.rng.randint(1, 8)) + draw.marker.encode()
    return draw.dead(orjson.dumps(job), BAD_BODY, key, message_id=message_id)


@case(PROPERTIES, "header key not UTF-8")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={draw.not_utf8(draw.rng.randint(1, 30)): draw.rng.randint(0, 9), "ok": "kept"})


@case(PROPERTIES, "header key of 255 bytes 0xff")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={b"\xff" * 255: "value"})


@case(PROPERTIES, "timestamp in milliseconds")
def _(draw: Draw) -> Message:
    return draw.succeeds(timestamp=_epoch_s(draw) * 1000)


@case(PROPERTIES, "timestamp in microseconds")
def _(draw: Draw) -> Message:
    return draw.succeeds(timestamp=_epoch_s(draw) * 1_000_000)


@case(PROPERTIES, "timestamp 0 or 2**64-1")
def _(draw: Draw) -> Message:
    return draw.succeeds(timestamp=draw.rng.choice([0, 2**64 - 1]))


@case(PROPERTIES, "every short string not UTF-8, timestamp in microseconds")
def _(draw: Draw) -> Message:
    bad = {prop: draw.not_utf8(12) for prop in ("correlation_id", "type", "app_id", "content_type", "reply_to")}
    return draw.succeeds(timestamp=_epoch_s(draw) * 1_000_000, headers={draw.not_utf8(6): draw.not_utf8(6)}, **bad)


@case(PROPERTIES, "priority 255, delivery_mode 1")
def _(draw: Draw) -> Message:
    return draw.succeeds(priority=255, delivery_mode=1)


# --- 2: header values that other clients send --------------------------------------------------------


def _valid_traceparent(draw: Draw) -> str:
    return f"00-{draw.rng.randbytes(16).hex()}-{draw.rng.randbytes(8).hex()}-01"


@case(HEADER_VALUES, "long string not UTF-8")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={"blob": RawField.long_string(draw.not_utf8(draw.rng.randint(1, 300)))})


@case(HEADER_VALUES, "byte array")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={"bytes": draw.rng.randbytes(draw.rng.randint(0, 300))})


@case(HEADER_VALUES, "huge double (beyond 32 bits)")
def _(draw: Draw) -> Message:
    value = draw.rng.choice([1e300, -1.7976931348623157e308, 5e-324, 3.5e38, -1e39])
    return draw.succeeds(headers={"huge": RawField.double(value), "list": [RawField.double(value)]})


@case(HEADER_VALUES, "double inf or nan (RabbitMQ may refuse it)")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={"odd": RawField.double(draw.rng.choice([math.inf, -math.inf, math.nan]))})


@case(HEADER_VALUES, "32-bit float")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={"f": RawField.float32(draw.rng.uniform(-1e6, 1e6))})


@case(HEADER_VALUES, "decimals")
def _(draw: Draw) -> Message:
    headers = {
        "price": Decimal(draw.rng.randint(-(10**8), 10**8)).scaleb(-draw.rng.randint(0, 8)),
        "tiny": RawField.decimal(255, -(2**31)),
        "scaled": RawField.decimal(draw.rng.randint(0, 255), draw.rng.randint(-(2**31), 2**31 - 1)),
    }
    return draw.succeeds(headers=headers)


@case(HEADER_VALUES, "integers of every width")
def _(draw: Draw) -> Message:
    headers = {
        "b": RawField.integer(b"b", -128),
        "B": RawField.integer(b"B", 255),
        "s": RawField.integer(b"s", -32768),
        "u": RawField.integer(b"u", 65535),
        "i": RawField.integer(b"i", 2**32 - 1),
        "L": RawField.integer(b"L", -(2**63)),
        "l": 2**63 - 1,
    }
    return draw.succeeds(headers=headers)


@case(HEADER_VALUES, "nested tables and arrays")
def _(draw: Draw) -> Message:
    value: Any = draw.rng.randbytes(4)
    for depth in range(draw.rng.randint(10, 60)):
        value = {"n": value, "d": depth} if depth % 2 else [value, None, True, RawField.double(1e300)]
    return draw.succeeds(headers={"nested": value})


@case(HEADER_VALUES, "timestamps, in range and past year 9999")
def _(draw: Draw) -> Message:
    headers = {
        "sent": datetime.fromtimestamp(_epoch_s(draw), UTC),
        "millis": RawField.timestamp(_epoch_s(draw) * 1000),
        "max": RawField.timestamp(2**64 - 1),
        "in-a-list": [RawField.timestamp(_epoch_s(draw) * 1_000_000)],
    }
    return draw.succeeds(headers=headers)


def _hostile_values(draw: Draw) -> dict[Any, Any]:
    return {
        "blob": RawField.long_string(draw.not_utf8(draw.rng.randint(1, 40))),
        "bytes": draw.rng.randbytes(8),
        "huge": RawField.double(1e300),
        "tiny": RawField.decimal(255, -(2**31)),
        "max": RawField.timestamp(2**64 - 1),
        "traceparent": RawField.long_string(draw.not_utf8(55)),
        "nested": {"list": [RawField.double(-1e308), RawField.long_string(b"\xff")]},
    }


@case(HEADER_VALUES, "hostile values on an invalid job (copied into its dead letter)")
def _(draw: Draw) -> Message:
    job = draw.job(M2)
    job["params"]["applicationId"] = ""
    return draw.dead(orjson.dumps(job), INVALID, M2, headers=_hostile_values(draw))


@case(HEADER_VALUES, "hostile values on an unknown key (copied by triage)")
def _(draw: Draw) -> Message:
    return draw.unroutable(f"m2.{_unknown_key(draw, string.ascii_letters, 9)}", headers=_hostile_values(draw))


@case(HEADER_VALUES, "void and booleans")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={"none": None, "yes": True, "no": False})


@case(HEADER_VALUES, "traceparent as bytes, on M2")
def _(draw: Draw) -> Message:
    return draw.succeeds(M2, headers={"traceparent": _valid_traceparent(draw).encode() + draw.rng.randbytes(3)})


@case(HEADER_VALUES, "traceparent not UTF-8, on M2")
def _(draw: Draw) -> Message:
    return draw.succeeds(M2, headers={"traceparent": RawField.long_string(draw.not_utf8(55))})


@case(HEADER_VALUES, "traceparent garbage text, on M2")
def _(draw: Draw) -> Message:
    garbage = "".join(draw.rng.choices(string.printable, k=draw.rng.randint(1, 80)))
    return draw.succeeds(M2, headers={"traceparent": garbage})


@case(HEADER_VALUES, "traceparent of 10 KB, on M2")
def _(draw: Draw) -> Message:
    traceparent = _valid_traceparent(draw) + "-" + "a" * 10_240
    return draw.succeeds(M2, headers={"traceparent": draw.rng.choice([traceparent, "0" * 10_240])})


@case(HEADER_VALUES, "a valid traceparent next to hostile values, on M2")
def _(draw: Draw) -> Message:
    headers = {
        "traceparent": _valid_traceparent(draw),
        "blob": RawField.long_string(b"\xff"),
        "d": RawField.double(1e300),
    }
    return draw.succeeds(M2, headers=headers)


# --- 3: routing keys ---------------------------------------------------------------------------


def _unknown_key(draw: Draw, alphabet: str, length: int) -> str:
    while True:
        key = "".join(draw.rng.choices(alphabet, k=length))
        if key not in ROUTING_KEYS:
            return key


@case(ROUTING_KEY, "unknown key")
def _(draw: Draw) -> Message:
    return draw.unroutable(_unknown_key(draw, string.ascii_letters + string.digits + ".", draw.rng.randint(1, 200)))


@case(ROUTING_KEY, "unknown key of 249-255 bytes (<key>.failed is too long)")
def _(draw: Draw) -> Message:
    return draw.unroutable(_unknown_key(draw, string.ascii_lowercase + ".", draw.rng.randint(249, 255)))


@case(ROUTING_KEY, "unknown key of multibyte UTF-8 up to 255 bytes")
def _(draw: Draw) -> Message:
    char = draw.rng.choice(["é", "€", "𝄞"])
    count = (255 - 3) // len(char.encode())
    return draw.unroutable("m2." + char * draw.rng.randint(count - 3, count))


@case(ROUTING_KEY, "key with odd characters")
def _(draw: Draw) -> Message:
    return draw.unroutable(_unknown_key(draw, " \t\n\r\x00#*.%/\\\"'{}[]:;|", draw.rng.randint(1, 60)))


@case(ROUTING_KEY, "key not UTF-8")
def _(draw: Draw) -> Message:
    return draw.unroutable(b"m2." + draw.not_utf8(draw.rng.randint(1, 252)))


@case(ROUTING_KEY, "empty key")
def _(draw: Draw) -> Message:
    return draw.unroutable("")


@case(ROUTING_KEY, "near miss of an operation's key")
def _(draw: Draw) -> Message:
    key = draw.operation()
    service, _, operation = key.partition(".")
    misses = [f"{key}.", f".{key}", f"{key}.x", key.upper(), f"{service}.{operation.lower()}", f" {key}", f"{key}#"]
    return draw.unroutable(draw.rng.choice(misses))


# --- 4: bodies ---------------------------------------------------------------------------------


def _job_bytes(draw: Draw, key: str = M2, **changes: Any) -> bytes:
    return orjson.dumps({**draw.job(key), **changes})


@case(BODIES, "not UTF-8")
def _(draw: Draw) -> Message:
    body = b'{"job_id": "' + draw.marker.encode() + b'", "x": "' + draw.not_utf8(draw.rng.randint(1, 50)) + b'"}'
    return draw.dead(body, MALFORMED)


@case(BODIES, "not JSON")
def _(draw: Draw) -> Message:
    mark = draw.marker.encode()
    bodies = [
        b"{job_id: " + mark,
        mark,
        b'{"job_id": "' + mark + b'",}',
        b'{"job_id": "' + mark + b'", "n": NaN}',
        b"<job id='" + mark + b"'/>",
    ]
    return draw.dead(draw.rng.choice(bodies), MALFORMED)


@case(BODIES, "JSON but not an object")
def _(draw: Draw) -> Message:
    mark = draw.marker
    bodies = [orjson.dumps([mark]), orjson.dumps(mark), orjson.dumps([draw.job(M2)]), b"null", b"0", b"true", b""]
    return draw.dead(draw.rng.choice(bodies), MALFORMED)


@case(BODIES, "JSON nested beyond the parser's depth")
def _(draw: Draw) -> Message:
    depth = draw.rng.randint(1_100, 20_000)
    body = _job_bytes(draw).replace(b'"metadata":{', b'"deep":' + b"[" * depth + b"]" * depth + b',"metadata":{', 1)
    return draw.dead(body, BAD_BODY)


@case(BODIES, "JSON nested within the parser's depth")
def _(draw: Draw) -> Message:
    depth = draw.rng.randint(50, 900)
    nested = b"[" * depth + orjson.dumps(draw.marker) + b"]" * depth
    body = _job_bytes(draw).replace(b'"metadata":{', b'"metadata":{"nested":' + nested + b",", 1)
    return draw.dead(body, INVALID)


@case(BODIES, "huge numbers")
def _(draw: Draw) -> Message:
    number = draw.rng.choice([b"1e400", b"-1e999", b"1" + b"0" * draw.rng.randint(30, 5000), b"1e-400"])
    where = draw.rng.choice([b'"metadata":{', b'"params":{'])
    body = _job_bytes(draw).replace(where, where + b'"n":' + number + b",", 1)
    return draw.dead(body, BAD_BODY)


@case(BODIES, "oversize: just above max_message_bytes")
def _(draw: Draw) -> Message:
    job = draw.job(M2)
    size = len(orjson.dumps(job)) + len(b',"pad":""')
    job["metadata"]["pad"] = "x" * (MAX_MESSAGE_BYTES - size + draw.rng.randint(1, 64))
    body = orjson.dumps(job)
    assert MAX_MESSAGE_BYTES < len(body) <= MAX_MESSAGE_BYTES + 64
    return draw.dead(body, MALFORMED)


@case(BODIES, "valid envelope, unknown parameter")
def _(draw: Draw) -> Message:
    key = draw.operation()
    job = draw.job(key)
    job["params"]["Zz" + "".join(draw.rng.choices(string.ascii_letters, k=8))] = "x"
    return draw.dead(orjson.dumps(job), INVALID, key)


@case(BODIES, "valid envelope, parameter of the wrong type")
def _(draw: Draw) -> Message:
    key = draw.operation()
    job = draw.job(key)
    name = draw.rng.choice(sorted(name for name, value in job["params"].items() if isinstance(value, str)))
    job["params"][name] = draw.rng.choice([12345, True, ["x"], {"x": 1}])
    return draw.dead(orjson.dumps(job), INVALID, key)


@case(BODIES, "lone surrogate in a string")
def _(draw: Draw) -> Message:
    body = _job_bytes(draw).replace(b'"metadata":{', b'"metadata":{"s":"\\ud800",', 1)
    return draw.dead(body, BAD_BODY)


@case(BODIES, "QuickSight InputPayload of thousands of '[' (a backtracking pattern's worst case)")
def _(draw: Draw) -> Message:
    job = draw.job(QUICKSIGHT)
    job["params"]["InputPayload"] = "[" * draw.rng.randint(5_000, 20_000)
    return draw.dead(orjson.dumps(job), INVALID, QUICKSIGHT)


# --- 5: forged state ---------------------------------------------------------------------------


def _forged_x_death(draw: Draw, reason: str) -> list[dict[str, Any]]:
    key = draw.operation()
    return [
        {
            "queue": f"{draw.prefix}.jobs.{key}",
            "reason": reason,
            "count": draw.rng.randint(1, 50),
            "exchange": f"{draw.prefix}.jobs",
            "routing-keys": [key],
            "time": datetime.fromtimestamp(_epoch_s(draw), UTC),
        }
    ]


def _forged_stamps(draw: Draw) -> dict[str, Any]:
    return {
        "x-dispatcher-category": draw.rng.choice(["rejected", "delivery-limit", "expired", "exhausted"]),
        "x-dispatcher-error-code": "AccessDeniedException",
        "x-dispatcher-original-routing-key": draw.operation(),
        "x-dispatcher-attempts": draw.rng.randint(2, 99),
        "x-dispatcher-signature": draw.rng.randbytes(32).hex(),
    }


@case(FORGED, "x-dispatcher-retries: 99")
def _(draw: Draw) -> Message:
    retries = draw.rng.choice([99, "99", 2**63 - 1, -1, RawField.long_string(b"\xff99")])
    return draw.succeeds(single_attempt=True, headers={"x-dispatcher-retries": retries})


@case(FORGED, "forged x-dispatcher-attempts and x-dispatcher-error-codes")
def _(draw: Draw) -> Message:
    codes = draw.rng.choice(["ThrottlingException,InternalServerException", ["Forged", 7], b"\xff", 99])
    headers = {"x-dispatcher-attempts": draw.rng.choice([99, -5, "x"]), "x-dispatcher-error-codes": codes}
    return draw.succeeds(single_attempt=True, headers=headers)


@case(FORGED, "forged dead-letter stamps on a valid job")
def _(draw: Draw) -> Message:
    return draw.succeeds(single_attempt=True, headers=_forged_stamps(draw))


@case(FORGED, "forged x-delivery-count on a valid job")
def _(draw: Draw) -> Message:
    return draw.succeeds(headers={"x-delivery-count": draw.rng.choice([11, 1000, 2**31 - 1, "many"])})


@case(FORGED, "forged x-death naming our job queue, on a valid job")
def _(draw: Draw) -> Message:
    reason = draw.rng.choice(["delivery_limit", "expired"])
    return draw.succeeds(headers={"x-death": _forged_x_death(draw, reason), "x-first-death-reason": reason})


@case(FORGED, "forged x-death (delivery_limit/expired) naming our job queue, unknown key")
def _(draw: Draw) -> Message:
    reason = draw.rng.choice(["delivery_limit", "expired"])
    headers = {
        "x-death": _forged_x_death(draw, reason),
        "x-first-death-reason": reason,
        "x-first-death-queue": f"{draw.prefix}.jobs.{M2}",
        "x-delivery-count": 11,
    }
    return draw.unroutable(_unknown_key(draw, string.ascii_lowercase, 12), headers=headers)


@case(FORGED, "forged dispatcher stamps naming another operation, unknown key")
def _(draw: Draw) -> Message:
    return draw.unroutable(f"m2.{_unknown_key(draw, string.ascii_letters, 10)}", headers=_forged_stamps(draw))


@case(FORGED, "everything forged at once, unknown key")
def _(draw: Draw) -> Message:
    reason = draw.rng.choice(["delivery_limit", "expired"])
    headers = {**_forged_stamps(draw), "x-death": _forged_x_death(draw, reason), "x-dispatcher-retries": 99}
    return draw.unroutable(f"{_unknown_key(draw, string.ascii_letters, 8)}.Start", headers=headers)


# --- 6: reply_to naming the dispatcher's own queues --------------------------------------------


def _reply_case(name: str, target: Callable[[Draw], str]) -> None:
    case(REPLY_TO, f"reply_to {name}")(lambda draw: draw.succeeds(reply_to=target(draw), correlation_id=draw.marker))


_reply_case("a job queue", lambda draw: f"{draw.prefix}.jobs.{draw.operation()}")
_reply_case("the triage queue", lambda draw: f"{draw.prefix}.dead.triage")
_reply_case("the dead-letter queue", lambda draw: f"{draw.prefix}.dead")
_reply_case("the results queue", lambda draw: f"{draw.prefix}.results")
_reply_case("a retry queue", lambda draw: f"{draw.prefix}.jobs.retry.{draw.rng.choice(RETRY_DELAYS_S):g}s")
_reply_case("a queue that does not exist", lambda draw: f"hostile.nowhere.{draw.marker}")
_reply_case("a bogus direct reply-to name", lambda draw: "amq.rabbitmq.reply-to.g2dk" + draw.rng.randbytes(6).hex())


# --- 7: valid jobs -----------------------------------------------------------------------------

VALID_CASE = Case(VALID, "valid job", lambda draw: draw.succeeds(draw.rng.choice(ROUTING_KEYS)))
WARM_UP_CASE = "warm-up job"
# Run markers are numbered from 0, warm-up ones from here: a run stays below it.
WARM_UP_FIRST = 90_000


def _marker(seed: int, number: int) -> str:
    return f"hx{seed & 0xFFFFFF:06x}{number:05d}"


def generate(seed: int, hostile: int, valid: int, prefix: str, cases: str | None = None) -> list[Message]:
    """`hostile` messages (the catalogue in turn) and `valid` jobs, shuffled together; the same seed, the same run.

    `cases`, a regular expression, keeps only the cases whose "kind / name" it matches.
    """
    assert hostile + valid <= WARM_UP_FIRST, "markers have five digits, and the warm-up takes the last ones"
    chosen_cases = [case for case in CATALOGUE if re.search(cases or "", f"{case.kind} / {case.name}")]
    assert chosen_cases or not hostile, f"no case matches {cases!r}"
    rng = random.Random(seed)
    slots = [chosen_cases[number % len(chosen_cases)] for number in range(hostile)] + [VALID_CASE] * valid
    rng.shuffle(slots)
    messages = []
    for number, chosen in enumerate(slots):
        draw = Draw(random.Random(f"{seed}:{number}"), _marker(seed, number), chosen.kind, chosen.name, prefix)
        messages.append(chosen.make(draw))
    return messages


def warm_up(seed: int, prefix: str, start: int, count: int) -> list[Message]:
    """Valid jobs of every operation in turn, numbered from `start`, sent before the run (see the test)."""
    return [
        Draw(random.Random(seed), _marker(seed, WARM_UP_FIRST + number), VALID, WARM_UP_CASE, prefix).succeeds(
            ROUTING_KEYS[number % len(ROUTING_KEYS)]
        )
        for number in range(start, start + count)
    ]
