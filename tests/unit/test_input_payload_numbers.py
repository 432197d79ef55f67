"""QuickSight `InputPayload` given as JSON keeps its numbers exactly as the body wrote them."""

from __future__ import annotations

import json

import orjson
import pytest

from dispatcher import params
from dispatcher.envelope import Decoder
from dispatcher.errors import InvalidJob, MalformedJob
from dispatcher.examples import example_job
from dispatcher.registry import default_registry

QUICKSIGHT = "quicksight.StartAutomationJob"
NUMBERS = (
    b'{"n": 123456789012345678901234567890, "d": 0.1000000000000000055511151231257827, "e": 1e400,'
    b' "tiny": 1e-400, "neg": -98765432109876543210, "z": -0.0, "E": 1E+5, "f": 1.50, "i": 7}'
)
NUMBERS_COMPACT = (
    '{"n":123456789012345678901234567890,"d":0.1000000000000000055511151231257827,"e":1e400,'
    '"tiny":1e-400,"neg":-98765432109876543210,"z":-0.0,"E":1E+5,"f":1.50,"i":7}'
)


def body_with_payload(payload: bytes, **extra: object) -> bytes:
    """A QuickSight job whose `InputPayload` is the JSON text `payload`, spliced in as written."""
    job = {**example_job(QUICKSIGHT, "job-1"), **extra}
    job["params"] = {**job["params"], "InputPayload": "PAYLOAD"}
    return orjson.dumps(job).replace(b'"PAYLOAD"', payload)


def sent_payload(body: bytes) -> str:
    """The `InputPayload` the worker would send AWS for this body."""
    decoder = Decoder(default_registry(), "us-east-1", ("us-east-1",), max_message_bytes=1 << 20)
    payload: str = decoder.decode(body, QUICKSIGHT, None).request["InputPayload"]
    return payload


def test_orjson_alone_would_lose_them():
    """Why the rare path exists: orjson reads these as doubles, and refuses a double's overflow."""
    assert orjson.loads(b"123456789012345678901234567890") == 1.2345678901234568e29
    assert orjson.loads(b"100000000000000000000") == 1e20
    assert orjson.loads(b"0.1000000000000000055511151231257827") == 0.1
    assert orjson.loads(b"1e-400") == 0.0
    with pytest.raises(orjson.JSONDecodeError, match="infinity"):
        orjson.loads(b"1e400")


def test_numbers_reach_aws_exactly_as_written():
    """Big integers, long decimals, overflowing and underflowing exponents, `-0.0`, `1E+5`: all as written."""
    assert sent_payload(body_with_payload(NUMBERS)) == NUMBERS_COMPACT


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"[1e400, 18446744073709551616, -1.0e-7]", "[1e400,18446744073709551616,-1.0e-7]"),
        (
            b'{"deep": [{"x": 2.718281828459045235360287471352662497757}]}',
            '{"deep":[{"x":2.718281828459045235360287471352662497757}]}',
        ),
        (b'{"s": "a\\u2028b", "ok": true, "no": null}', '{"s":"a\\u2028b","ok":true,"no":null}'),
    ],
)
def test_arrays_nesting_and_strings(payload, expected):
    """Arrays and nested values keep their numbers; strings are escaped as before; the JSON means the same."""
    assert sent_payload(body_with_payload(payload)) == expected
    assert json.loads(expected) == json.loads(payload)


def test_a_payload_string_is_sent_as_given():
    """A string payload is the API's own form: sent byte for byte."""
    assert sent_payload(body_with_payload(b'"{\\"n\\": 123456789012345678901234567890}"')) == (
        '{"n": 123456789012345678901234567890}'
    )


def test_the_rest_of_the_body_is_read_as_orjson_reads_it():
    """Only the payload is read differently: a number beyond a double elsewhere is still not JSON."""
    with pytest.raises(MalformedJob) as raised:
        sent_payload(body_with_payload(NUMBERS, metadata={"team": "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', b"1e400"))
    assert raised.value.code == "NotJson"


@pytest.mark.parametrize("payload", [b'{"n": NaN}', b'{"n": Infinity}', b'{"n": -Infinity}', b'{"n": 1e400'])
def test_what_is_not_json_stays_refused(payload):
    """The standard library reads `NaN` and `Infinity`; the rare path does not."""
    with pytest.raises(MalformedJob) as raised:
        sent_payload(body_with_payload(payload))
    assert raised.value.code == "NotJson"


def test_a_payload_orjson_cannot_write_is_refused_naming_the_field():
    """A lone surrogate, which the standard library reads, is refused as orjson would refuse it."""
    with pytest.raises(InvalidJob) as raised:
        sent_payload(body_with_payload(b'{"s": "\\ud800", "e": 1e400}'))
    assert raised.value.code == "InvalidParameters"
    assert raised.value.message.startswith("params.InputPayload: ")


def test_bodies_without_a_json_payload_are_read_by_orjson_alone(monkeypatch):
    """The hot path never reaches the standard library's parser."""

    def refuse(*_: object, **__: object) -> None:
        pytest.fail("the standard library's parser was used")

    monkeypatch.setattr(params.json, "loads", refuse)
    assert sent_payload(body_with_payload(b'"[1, 2]"')) == "[1, 2]"
    decoder = Decoder(default_registry(), "us-east-1", ("us-east-1",), max_message_bytes=1 << 20)
    decoder.decode(orjson.dumps(example_job("m2.StartBatchJob", "job-2")), "m2.StartBatchJob", None)
