"""A shim over pamqp's decoding, so that no property a publisher can send drops our connection.

pamqp 4.0 raises on bytes that other AMQP clients send and RabbitMQ passes through as they are:
a short string (`correlation_id`, `type`, a header key, even a routing key) that is not UTF-8, and
a `timestamp` past year 9999 (milliseconds or microseconds where seconds belong). aiormq then
closes the whole connection, the broker redelivers the same message, and the worker reconnects in a
loop, requeueing every job in flight each time. With this shim installed:

* a short string or table key that is not UTF-8 is decoded with U+FFFD for the bad bytes;
* a timestamp that `datetime` cannot hold decodes as None (the property, or the header value);
* a property that still cannot be decoded (a header table holding a type no client should send) is
  skipped by its length prefix and read as None, so the message is delivered without it.

The message body is never touched: a dead letter still keeps it byte for byte. `install()` patches
pamqp's dispatch tables once; `tests/unit/test_amqp_decoding.py` pins the pamqp code it replaces, so
an upgrade that changes it fails there instead of silently undoing this.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from pamqp import base, common, decode

if TYPE_CHECKING:
    from collections.abc import Callable

    from pamqp.common import FieldTable, FieldValue

# The functions this module replaces, as pamqp defines them (their sources are pinned by a test).
ORIGINALS: dict[str, Callable[..., Any]] = {
    "short_str": decode.short_str,
    "timestamp": decode.timestamp,
    "field_table": decode.field_table,
    "BasicProperties.unmarshal": base.BasicProperties.unmarshal,
}
_TIMESTAMP_BYTES = 8
# Bytes a property of each length-prefixed or fixed-size AMQP type takes, to skip one that fails.
_FIXED_SIZES = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}
_LENGTH_PREFIX = {"shortstr": struct.Struct(">B"), "longstr": struct.Struct(">I"), "table": struct.Struct(">I")}


def short_str(value: bytes) -> tuple[int, str]:
    """pamqp's `short_str`, with bytes that are not UTF-8 replaced instead of raising."""
    try:
        return ORIGINALS["short_str"](value)  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        length = value[0]
        return length + 1, value[1 : length + 1].decode("utf-8", "replace")


def timestamp(value: bytes) -> tuple[int, Any]:
    """pamqp's `timestamp`, or None for a moment `datetime` cannot hold."""
    try:
        return ORIGINALS["timestamp"](value)  # type: ignore[no-any-return]
    except (ValueError, OverflowError, OSError):
        if len(value) < _TIMESTAMP_BYTES:
            raise
        return _TIMESTAMP_BYTES, None


def field_table(value: bytes) -> tuple[int, FieldTable]:
    """pamqp's `field_table`, decoding keys that are not UTF-8 with U+FFFD."""
    try:
        length = common.Struct.integer.unpack(value[0:4])[0]
        offset = 4
        data: dict[str, FieldValue] = {}
        end = offset + length
        if end > len(value):
            msg = "Field table length exceeds available data"
            raise ValueError(msg)
        while offset < end:
            key_length = common.Struct.byte.unpack_from(value, offset)[0]
            offset += 1
            if offset + key_length > end:
                msg = "Field table key length exceeds data"
                raise ValueError(msg)
            key = value[offset : offset + key_length].decode("utf-8", "replace")
            offset += key_length
            consumed, result = decode.embedded_value(value[offset:])
            offset += consumed
            data[key] = result
    except (struct.error, TypeError) as err:
        msg = "Could not unpack data"
        raise ValueError(msg) from err
    return end, data


def unmarshal_properties(self: base.BasicProperties, flags: int, data: bytes) -> None:
    """pamqp's `BasicProperties.unmarshal`, reading a property it cannot decode as None."""
    for name in self.__slots__:
        if flags & self.flags[name]:
            data_type = getattr(self.__class__, "_" + name)
            try:
                consumed, value = decode.by_type(data, data_type)
            except (ValueError, TypeError, OverflowError, OSError, struct.error):
                consumed, value = _encoded_size(data, data_type), None
            setattr(self, name, value)
            data = data[consumed:]


def _encoded_size(data: bytes, data_type: str) -> int:
    """How many bytes one encoded property of `data_type` takes at the start of `data`."""
    if data_type in _FIXED_SIZES:
        return _FIXED_SIZES[data_type]
    prefix = _LENGTH_PREFIX[data_type]
    length: int = prefix.unpack_from(data)[0]
    return prefix.size + length


def install() -> None:
    """Patch pamqp's dispatch tables (idempotent): every decode path goes through them."""
    decode.short_str = short_str
    decode.timestamp = timestamp
    decode.field_table = field_table
    decode.METHODS.update({"shortstr": short_str, "timestamp": timestamp, "table": field_table})
    decode.TABLE_MAPPING.update({b"T": timestamp, b"F": field_table})
    base.BasicProperties.unmarshal = unmarshal_properties  # type: ignore[method-assign]
