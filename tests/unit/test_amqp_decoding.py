"""The pamqp shim: what other clients can send decodes, and the pamqp code it replaces is pinned."""

from __future__ import annotations

import hashlib
import inspect
import struct
from datetime import UTC, datetime

import pytest
from pamqp import commands, decode, frame, header

from dispatcher import amqp_decoding

# sha256 of the sources of pamqp 4.0's functions that `amqp_decoding` replaces. When a pamqp upgrade
# changes one, read the new code: the shim may be unneeded, or need to follow the change.
PINNED_SOURCES = {
    "short_str": "6f535b7aaa125aec1b41cbcab53368450669e6996c784f1d43fa88ac0a809a9d",
    "timestamp": "64d63c732623d5349553a7b1325034e97df26b95cc2db6b423bc4e4e2c156acc",
    "field_table": "cd20672a04f9eaa4bd1b5d036f97caa4980f8ae1e690e6a0d104942fcc80565d",
    "BasicProperties.unmarshal": "8e47f35fbe17aa9e51a163b9a053a148c43dfd8cf6d34f4d29da2e5ea1361d7b",
}


def _source_hash(function: object) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(PINNED_SOURCES))
def test_the_patched_pamqp_code_is_the_code_the_shim_was_written_for(name: str) -> None:
    """A pamqp upgrade that changes what the shim replaces fails here, not in production."""
    assert _source_hash(amqp_decoding.ORIGINALS[name]) == PINNED_SOURCES[name], (
        f"pamqp's {name} changed: review dispatcher/amqp_decoding.py against it, then update the pin"
    )


def test_unpatched_pamqp_still_fails_on_what_the_shim_tolerates() -> None:
    """If pamqp ever tolerates these itself, the shim can go."""
    with pytest.raises(UnicodeDecodeError):
        amqp_decoding.ORIGINALS["short_str"](b"\x02\xff\xfe")
    with pytest.raises((ValueError, OverflowError, OSError)):
        amqp_decoding.ORIGINALS["timestamp"](struct.pack(">Q", 1_700_000_000_000_000))


def test_the_shim_is_what_pamqp_dispatches_to() -> None:
    """Every decode path looks its decoder up in these tables."""
    assert decode.METHODS["shortstr"] is amqp_decoding.short_str
    assert decode.METHODS["timestamp"] is amqp_decoding.timestamp
    assert decode.METHODS["table"] is amqp_decoding.field_table
    assert decode.TABLE_MAPPING[b"T"] is amqp_decoding.timestamp
    assert decode.TABLE_MAPPING[b"F"] is amqp_decoding.field_table


def _content_header_frame(properties: commands.Basic.Properties, patch: tuple[bytes, bytes]) -> bytes:
    """A content-header frame as a client would send it, with bytes pamqp refuses to encode patched in."""
    raw = frame.marshal(header.ContentHeader(0, 10, properties), 1)
    old, new = patch
    assert raw.count(old) == 1
    assert len(old) == len(new)
    return raw.replace(old, new)


def _unmarshal(raw: bytes) -> commands.Basic.Properties:
    _, _, content_header = frame.unmarshal(raw)
    assert isinstance(content_header, header.ContentHeader)
    return content_header.properties


def test_a_correlation_id_that_is_not_utf8_decodes_with_replacement_characters() -> None:
    """A Go or Java client may send any bytes in a short string."""
    raw = _content_header_frame(commands.Basic.Properties(correlation_id="QQ", message_id="m-1"), (b"QQ", b"\xff\xfe"))
    properties = _unmarshal(raw)
    assert properties.correlation_id == "\ufffd\ufffd"
    assert properties.message_id == "m-1"


def test_a_header_key_that_is_not_utf8_decodes_and_the_other_headers_survive() -> None:
    """Only the bad bytes are replaced; the table is kept."""
    properties = commands.Basic.Properties(headers={"QQkey": "v", "job": "kept"})
    decoded = _unmarshal(_content_header_frame(properties, (b"QQkey", b"\xff\xfekey")))
    assert decoded.headers == {"\ufffd\ufffdkey": "v", "job": "kept"}


@pytest.mark.parametrize("seconds", [1_700_000_000_000_000, 2**64 - 1])
def test_a_timestamp_past_year_9999_decodes_as_none(seconds: int) -> None:
    """Microseconds where seconds belong, or all bits set: the property and the header read as None."""
    moment = datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)  # 1_000_000_000 s
    properties = commands.Basic.Properties(timestamp=moment, headers={"sent": moment}, message_id="m-2")
    raw = frame.marshal(header.ContentHeader(0, 10, properties), 1)
    raw = raw.replace(struct.pack(">Q", 1_000_000_000), struct.pack(">Q", seconds))
    decoded = _unmarshal(raw)
    assert decoded.timestamp is None
    assert decoded.headers == {"sent": None}
    assert decoded.message_id == "m-2"


def test_milliseconds_still_decode_as_pamqp_reads_them() -> None:
    """pamqp's own reading of milliseconds is kept."""
    assert amqp_decoding.timestamp(struct.pack(">Q", 1_700_000_000_000)) == (
        8,
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
    )


def test_a_header_table_holding_an_unknown_type_is_dropped_and_the_rest_decodes() -> None:
    """A table pamqp cannot read is skipped by its length; the other properties decode."""
    properties = commands.Basic.Properties(headers={"k": "QQQQ"}, correlation_id="c-1", message_id="m-3")
    raw = frame.marshal(header.ContentHeader(0, 10, properties), 1)
    # The value's type tag `S` (long string) becomes `?`, a type no AMQP client defines.
    raw = raw.replace(b"S\x00\x00\x00\x04QQQQ", b"?\x00\x00\x00\x04QQQQ")
    decoded = _unmarshal(raw)
    assert decoded.headers is None
    assert (decoded.correlation_id, decoded.message_id) == ("c-1", "m-3")


def test_a_routing_key_that_is_not_utf8_decodes() -> None:
    """Method frames decode short strings through the same table."""
    deliver = commands.Basic.Deliver("ctag", 1, False, "dispatcher.jobs", "QQ.key")
    raw = frame.marshal(deliver, 1).replace(b"QQ.key", b"\xff\xfe.key")
    _, _, decoded = frame.unmarshal(raw)
    assert isinstance(decoded, commands.Basic.Deliver)
    assert decoded.routing_key == "\ufffd\ufffd.key"
