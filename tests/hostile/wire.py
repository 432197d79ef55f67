"""pika as a publisher in another language uses it, and a reader that nothing on the wire can crash.

pika 1.4 passes `bytes` through as they are for short strings (`correlation_id`, header keys, routing
keys) and sends `bytes` header values as byte arrays (`x`). It has no encoding for floats at all, and
it cannot write a long string that is not UTF-8, a 32-bit float, the narrower integer types or a
timestamp past year 9999, all of which Java, Go and .NET clients can send and RabbitMQ passes on.
`RawField` fills that gap: its bytes (type octet, then payload) go into the field table as they are.

Reading back, pika's decoder turns doubles into integers and raises on a timestamp `datetime`
cannot hold, which would drop the reader's connection; `install()` makes both decode faithfully.
Everything here blocks: call it from a thread (`asyncio.to_thread`), never on the event loop.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pika
import pika.data
from pika.exceptions import AMQPChannelError, AMQPConnectionError, ChannelClosedByBroker, ConnectionClosedByBroker

from dispatcher.dead_letters import PROPERTY_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from pika.adapters.blocking_connection import BlockingChannel

# The broker closes a connection whose frame it cannot parse (541) and a channel whose publish it
# refuses (406, 403): the message was never routed, so it can have no outcome.
REFUSAL_CODES = frozenset({403, 406, 541})


class RawField(bytes):
    """A field-table value written as it is: its AMQP type octet followed by its payload."""

    __slots__ = ()

    @classmethod
    def long_string(cls, value: bytes) -> RawField:
        """An `S` long string holding any bytes (pika writes only UTF-8 text as `S`)."""
        return cls(b"S" + struct.pack(">I", len(value)) + value)

    @classmethod
    def double(cls, value: float) -> RawField:
        """A 64-bit `d` double."""
        return cls(b"d" + struct.pack(">d", value))

    @classmethod
    def float32(cls, value: float) -> RawField:
        """A 32-bit `f` float."""
        return cls(b"f" + struct.pack(">f", value))

    @classmethod
    def timestamp(cls, seconds: int) -> RawField:
        """A `T` timestamp of any unsigned 64-bit value."""
        return cls(b"T" + struct.pack(">Q", seconds))

    @classmethod
    def decimal(cls, decimals: int, raw: int) -> RawField:
        """A `D` decimal: `raw` (signed 32 bits) scaled down by 10**`decimals` (0-255)."""
        return cls(b"D" + struct.pack(">Bi", decimals, raw))

    @classmethod
    def integer(cls, kind: bytes, value: int) -> RawField:
        """An integer of one of the AMQP widths pika never writes (`b B s u i L`)."""
        formats = {b"b": ">b", b"B": ">B", b"s": ">h", b"u": ">H", b"i": ">I", b"L": ">q"}
        return cls(kind + struct.pack(formats[kind], value))


@dataclass(frozen=True)
class Timestamp:
    """A `T` header value that `datetime` cannot hold, as the reader saw it."""

    seconds: int


_ORIGINAL_ENCODE = pika.data.encode_value
_ORIGINAL_DECODE = pika.data.decode_value


def _encode_value(pieces: list[bytes], value: Any) -> int:
    if isinstance(value, RawField):
        pieces.append(bytes(value))
        return len(value)
    size: int = _ORIGINAL_ENCODE(pieces, value)
    return size


def _decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
    kind = encoded[offset : offset + 1]
    if kind == b"d":
        return struct.unpack_from(">d", encoded, offset + 1)[0], offset + 9
    if kind == b"f":
        return struct.unpack_from(">f", encoded, offset + 1)[0], offset + 5
    if kind == b"T":
        seconds = struct.unpack_from(">Q", encoded, offset + 1)[0]
        try:
            return datetime.fromtimestamp(seconds, UTC), offset + 9
        except (ValueError, OverflowError, OSError):
            return Timestamp(seconds), offset + 9
    decoded: tuple[Any, int] = _ORIGINAL_DECODE(encoded, offset)
    return decoded


def install() -> None:
    """Teach pika `RawField` and faithful decoding (idempotent; only this suite uses pika)."""
    pika.data.encode_value = _encode_value
    pika.data.decode_value = _decode_value


install()


def text(value: object) -> str | None:
    """A short string as a consumer that replaces bad UTF-8 reads it (None stays None)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return None if value is None else str(value)


# --- publishing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    """One message as it goes on the wire."""

    marker: str
    routing_key: str | bytes
    body: bytes
    properties: Mapping[str, Any]


CONFIRMED = "confirmed"
REFUSED = "refused"
INDETERMINATE = "indeterminate"


@dataclass
class PublishLog:
    """What became of each publish: confirmed, refused by the broker (never routed), or indeterminate."""

    status: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0


def publish_all(
    url: str, exchange: str, messages: Iterable[Publish], *, rate_per_s: float, log: PublishLog | None = None
) -> PublishLog:
    """Publish each message with confirms, reconnecting after every refusal (blocking)."""
    log = log if log is not None else PublishLog()
    log.started_at = time.monotonic()
    interval_s = 1 / rate_per_s
    connection: pika.BlockingConnection | None = None
    channel: BlockingChannel | None = None
    try:
        for number, message in enumerate(messages):
            time.sleep(max(0.0, log.started_at + number * interval_s - time.monotonic()))
            if connection is None or channel is None or not channel.is_open:
                _close(connection)
                connection = pika.BlockingConnection(pika.URLParameters(url))
                channel = connection.channel()
                channel.confirm_delivery()
            try:
                channel.basic_publish(
                    exchange,
                    message.routing_key,  # bytes go on the wire as they are
                    message.body,
                    pika.BasicProperties(**message.properties),
                )
            except (ConnectionClosedByBroker, ChannelClosedByBroker) as exc:
                refused = exc.reply_code in REFUSAL_CODES
                log.status[message.marker] = REFUSED if refused else INDETERMINATE
                log.reasons[message.marker] = f"{exc.reply_code} {exc.reply_text}"
                _close(connection)
                connection = channel = None
            except (AMQPConnectionError, AMQPChannelError) as exc:
                log.status[message.marker] = INDETERMINATE
                log.reasons[message.marker] = repr(exc)
                _close(connection)
                connection = channel = None
            else:
                log.status[message.marker] = CONFIRMED
    finally:
        _close(connection)
        log.finished_at = time.monotonic()
    return log


def _close(connection: pika.BlockingConnection | None) -> None:
    if connection is not None and connection.is_open:
        with contextlib.suppress(Exception):
            connection.close()


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A message read back from one of the outcome queues, decoded by pika (bytes kept as bytes)."""

    queue: str
    routing_key: str | bytes
    body: bytes
    properties: dict[str, Any]
    headers: dict[Any, Any]


class Reader:
    """Consumes queues in a thread of its own, acking and keeping every message, reconnecting if it must."""

    def __init__(self, url: str, queues: Iterable[str]) -> None:
        self._url = url
        self._queues = tuple(queues)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._thread = threading.Thread(target=self._run, name="hostile-reader", daemon=True)
        self.errors: list[str] = []
        self.last_at = time.monotonic()

    def start(self) -> None:
        """Begin consuming."""
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop consuming and close the connection (blocking)."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.errors.append(f"the reader did not stop within {timeout_s}s")

    def received(self) -> list[Received]:
        """Everything read so far."""
        with self._lock:
            return list(self._received)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:  # noqa: BLE001 - whatever breaks the reader is reported, then it reconnects
                self.errors.append(repr(exc))
                time.sleep(0.5)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self._url))
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=500)
            for queue in self._queues:
                channel.basic_consume(queue, self._on_message(channel, queue))
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.1)
        finally:
            _close(connection)

    def _on_message(self, channel: BlockingChannel, queue: str) -> Callable[..., None]:
        def on_message(_: object, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
            received = Received(
                queue=queue,
                routing_key=method.routing_key,
                body=body,
                properties={name: getattr(properties, name) for name in PROPERTY_NAMES},
                headers=dict(properties.headers or {}),
            )
            with self._lock:
                self._received.append(received)
                self.last_at = time.monotonic()
            channel.basic_ack(method.delivery_tag)

        return on_message
