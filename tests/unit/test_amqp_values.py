"""What a settlement copies from a delivery can always be encoded again, whatever was sent."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pamqp import encode

from dispatcher import amqp_values

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_values_pamqp_cannot_encode_become_text_and_the_rest_stays():
    """Bytes, a double beyond 32 bits, a decimal beyond 32-bit mantissa: text; encodable values untouched."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    headers = {
        "blob": b"\xff\xfe",
        "huge": 1e300,
        "half": 0.5,
        "wide": Decimal("123456789012345.5"),
        "small": Decimal("1.5"),
        "nested": {"list": [b"\xff", 2**70, moment, None, True]},
        "k" * 300: "long key",
    }
    cleaned = amqp_values.headers(headers)
    assert cleaned["blob"] == "\ufffd\ufffd"
    assert cleaned["huge"] == "1e+300"
    assert cleaned["half"] == 0.5
    assert cleaned["wide"] == "123456789012345.5"
    assert cleaned["small"] == Decimal("1.5")
    assert cleaned["nested"] == {"list": ["\ufffd", str(2**70), moment, None, True]}
    assert "k" * 255 in cleaned
    encode.field_table(cleaned)  # raises if anything is still not encodable


@pytest.mark.parametrize(
    ("base", "suffix"), [("m2." + "x" * 252, ".failed"), ("é" * 200, ".succeeded"), ("a.B", ".failed")]
)
def test_routing_keys_keep_their_suffix_and_fit_255_bytes(base, suffix):
    """`<key>.<outcome>` of any incoming key is a valid routing key, cut on a character boundary."""
    key = amqp_values.routing_key(base, suffix)
    assert len(key.encode()) <= 255
    assert key.endswith(suffix)
    assert base.startswith(key.removesuffix(suffix))


@pytest.mark.parametrize(
    ("value", "carried"),
    [(TRACE, TRACE), (TRACE.encode(), TRACE), (b"\xff", None), ("garbage", None), ("0" * 10_000, None), (7, None)],
)
def test_only_a_w3c_traceparent_is_carried_on(value, carried):
    """A traceparent that is not W3C Trace Context goes into no result and no log line."""
    assert amqp_values.traceparent({"traceparent": value}) == carried
