"""Values copied from a delivery into a message we publish, made encodable whatever a publisher sent.

What arrives decoded is not always what aio-pika (pamqp) can send again: a long string that was not
UTF-8 arrives as `bytes`, which pamqp refuses; a double header is re-encoded as a 32-bit float, so
`1e300` overflows; a decimal's mantissa must fit 32 bits; a short string or table key that had bad
bytes decodes with U+FFFD (see `amqp_decoding`) and may then exceed 255 bytes. Everything copied
from a delivery goes through here, so a settlement never fails on what a message carries.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from pamqp import encode

SHORT_STRING_BYTES = 255
# W3C Trace Context, version 00 and the forward-compatible form of later versions.
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?:-[^\s]*)?")
_TRACEPARENT_MAX_CHARS = 256


def short_string(value: str, limit: int = SHORT_STRING_BYTES) -> str:
    """`value` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    encoded = value.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return value
    return encoded[:limit].decode("utf-8", "ignore")


def optional_short_string(value: object) -> str | None:
    """A short-string property as it can be sent again, or None."""
    return short_string(value) if isinstance(value, str) and value else None


def routing_key(base: str, suffix: str = "") -> str:
    """`base` + `suffix` as a routing key: at most 255 bytes, the suffix always kept whole."""
    return short_string(base, SHORT_STRING_BYTES - len(suffix.encode())) + suffix


def header_value(value: object) -> Any:  # noqa: ANN401 - any AMQP field value
    """One header value as pamqp can encode it; as text when it cannot be encoded as it is."""
    if isinstance(value, dict):
        return headers(value)
    if isinstance(value, list | tuple):
        return [header_value(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        encode.encode_table_value(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, struct.error):
        return str(value)
    return value


def headers(values: object) -> dict[str, Any]:
    """A header table as pamqp can encode it: keys cut to 255 bytes, every value encodable."""
    if not isinstance(values, dict):
        return {}
    return {short_string(str(key)): header_value(value) for key, value in values.items()}


def traceparent(values: object) -> str | None:
    """The W3C `traceparent` header if it is one; anything else is not carried on."""
    value = values.get("traceparent") if isinstance(values, dict) else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and len(value) <= _TRACEPARENT_MAX_CHARS and _TRACEPARENT.fullmatch(value):
        return value
    return None
