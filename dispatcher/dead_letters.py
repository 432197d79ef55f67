"""Dead letters as values: what one carries, which ones a command acts on, how one is exported or replayed.

Nothing here talks to the broker (`dispatcher.dlq` does), so all of it is testable on its own.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, Self

import orjson
from aio_pika import DeliveryMode, Message

from dispatcher import headers as names
from dispatcher.errors import Category, JobError
from dispatcher.triage import EXPIRED_REASON, UNKNOWN_ROUTING_KEY_CODE, latest_death

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from aio_pika.abc import AbstractIncomingMessage

    from dispatcher.envelope import Decoder
    from dispatcher.stamps import Stamper

# What the broker adds when it dead-letters or requeues; a replayed job starts afresh without them.
BROKER_HEADER_PREFIXES = ("x-death", "x-delivery-count", "x-first-death-", "x-last-death-")
# A letter whose x-dispatcher-* headers no worker of this deployment signed: a publisher wrote
# them, or the state secret differs. Its stamp is shown, never acted on.
UNVERIFIED = "unverified"
UNVERIFIED_CODE = "UnverifiedStamp"
# A person must look at these before a replay: AWS may already have started the job, or the
# letter's stamp cannot be trusted.
NEEDS_JUDGEMENT = frozenset({Category.UNKNOWN_OUTCOME, Category.DELIVERY_LIMIT, UNVERIFIED})
PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
)
Identity = tuple[str | None, str]  # (message_id, sha256 of the body), see StoredLetter.identity
_DIGEST = re.compile(r"[0-9a-f]{64}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_SECONDS_PER_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`30s`, `10m`, `2h`, `7d` (a bare number is seconds) -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        msg = f"{text!r} is not a duration such as 30s, 10m, 2h or 7d"
        raise ValueError(msg)
    return float(match[1]) * _SECONDS_PER_UNIT[match[2]]


def age_text(age_s: float | None) -> str:
    """Seconds as the two largest units: 45s, 12m 5s, 3h 20m, 4d 2h; `?` when unknown."""
    if age_s is None:
        return "?"
    seconds = max(0, int(age_s))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """One dead-lettered message: its body, headers, AMQP properties and the routing key it has now.

    `stamped` says a worker of this deployment signed its `x-dispatcher-*` headers (see
    `dispatcher.stamps`); only then are its category, codes and original routing key believed.
    """

    body: bytes
    headers: dict[str, Any]
    properties: dict[str, Any]
    routing_key: str
    stamped: bool

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage, stamper: Stamper) -> Self:
        """Keep what an operator needs of a delivery: everything but its delivery tag."""
        properties = {name: getattr(message, name) for name in PROPERTY_NAMES}
        headers = dict(message.headers or {})
        return cls(
            message.body,
            headers,
            {name: value for name, value in properties.items() if value is not None},
            message.routing_key or "",
            stamper.verified(headers, message.body, message.message_id),
        )

    @property
    def job_id(self) -> str | None:
        """The body's `job_id` when it has one, else the AMQP message_id (as the worker reads it)."""
        with contextlib.suppress(orjson.JSONDecodeError):
            document = orjson.loads(self.body)
            job_id = document.get("job_id") if isinstance(document, dict) else None
            if isinstance(job_id, str):
                return job_id
        message_id = self.properties.get("message_id")
        return str(message_id) if message_id is not None else None

    @property
    def original_routing_key(self) -> str:
        """Where the job was first published: replay sends it back there."""
        return (self.stamped and self._text(names.ORIGINAL_ROUTING_KEY)) or self.routing_key

    @property
    def service(self) -> str:
        """The routing key's service part."""
        return self.original_routing_key.partition(".")[0]

    @property
    def operation(self) -> str:
        """The routing key's operation part."""
        return self.original_routing_key.partition(".")[2]

    @property
    def category(self) -> str:
        """`x-dispatcher-category`; `unroutable` for a letter that expired in triage unstamped."""
        if self._unstamped_death() is not None:
            return Category.UNROUTABLE.value
        return self._text(names.CATEGORY) if self.stamped else UNVERIFIED

    @property
    def error_code(self) -> str:
        """`x-dispatcher-error-code`, or the code triage would have stamped."""
        if self._unstamped_death() is not None:
            return UNKNOWN_ROUTING_KEY_CODE
        return self._text(names.ERROR_CODE) if self.stamped else UNVERIFIED_CODE

    @property
    def error_message(self) -> str:
        """`x-dispatcher-error-message`, or what happened to a letter no worker stamped."""
        death = self._unstamped_death()
        if death is not None:
            queue = _header_text(death.get("queue")) or "the triage queue"
            return (
                f"no operation is bound to routing key {self.routing_key!r}; its AMQP expiration "
                f"passed in {queue} before a worker could stamp it"
            )
        if not self.stamped:
            return (
                "its x-dispatcher-* headers were not signed by a worker with this state secret: a publisher "
                "wrote them, or DISPATCHER_STATE_SECRET differs from the workers'; nothing here acts on them"
            )
        return self._text(names.ERROR_MESSAGE)

    @property
    def attempts(self) -> int:
        """AWS calls made for the job before it was dead-lettered."""
        return _count(self.headers.get(names.ATTEMPTS)) if self.stamped else 0

    @property
    def replays(self) -> int:
        """How many times it was replayed already."""
        return _count(self.headers.get(names.REPLAYS))

    @property
    def dead_lettered_at(self) -> datetime | None:
        """When it was dead-lettered, if the header is there and readable."""
        death = self._unstamped_death()
        if death is not None:
            moment = death.get("time")  # the broker's own AMQP timestamp
            if not isinstance(moment, datetime):
                return None
        elif not self.stamped:
            return None
        else:
            try:
                moment = datetime.fromisoformat(self._text(names.DEAD_LETTERED_AT))
            except ValueError:
                return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def age_s(self, now: datetime) -> float | None:
        """Seconds since it was dead-lettered."""
        moment = self.dead_lettered_at
        return None if moment is None else (now - moment).total_seconds()

    def summary(self, now: datetime) -> dict[str, Any]:
        """One line of `dlq list --json`."""
        return {
            "job_id": self.job_id,
            "operation": self.original_routing_key,
            "category": self.category,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "dead_lettered_at": (self.stamped and self._text(names.DEAD_LETTERED_AT)) or None,
            "age_s": self.age_s(now),
            "replays": self.replays,
            "message_id": self.properties.get("message_id"),
        }

    @property
    def identity(self) -> Identity:
        """What names this very letter in an export file: its message_id and a digest of its body bytes.

        `purge --from-file` deletes the letters whose identity the file records, whatever was
        edited in the file's bodies since.
        """
        message_id = self.properties.get("message_id")
        return (None if message_id is None else str(message_id), hashlib.sha256(self.body).hexdigest())

    def to_record(self) -> dict[str, Any]:
        """The export format that `dispatcher submit --file` reads back.

        The body is a JSON object when it is one, else text, else base64 (`body_encoding`);
        `dead_letter` records the letter's identity for `purge --from-file`.
        """
        message_id, digest = self.identity
        record: dict[str, Any] = {
            "properties": json_ready(self.properties),
            "headers": json_ready(self.headers),
            "dead_letter": {"message_id": message_id, "body_sha256": digest},
        }
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            return {**record, "body": base64.b64encode(self.body).decode(), "body_encoding": "base64"}
        document = _json_object(self.body)
        return {**record, "body": text if document is None else document}

    def replay_copy(self) -> Message:
        """The job as it was first published: same body and properties, without dead-letter headers.

        `expiration` is dropped (a replay must not vanish) and `user_id` too (the broker checks it
        against the connection's user).
        """
        headers = {
            name: value
            for name, value in self.headers.items()
            if not name.startswith((names.PREFIX, *BROKER_HEADER_PREFIXES))
        }
        headers[names.REPLAYS] = self.replays + 1
        properties = {k: v for k, v in self.properties.items() if k not in {"expiration", "user_id", "delivery_mode"}}
        return Message(self.body, headers=headers, delivery_mode=DeliveryMode.PERSISTENT, **properties)

    def _text(self, header: str) -> str:
        return _header_text(self.headers.get(header))

    def _unstamped_death(self) -> dict[str, Any] | None:
        """The broker's latest `x-death` entry, for a letter that reached the DLQ without our headers.

        Only the triage queue dead-letters into the DLQ itself, and only on expiry: a message sent
        to an unknown routing key keeps its AMQP `expiration` through the alternate exchange and
        can expire there before a worker takes it (every other path strips it). Such a letter
        keeps whatever `x-dispatcher-*` headers its publisher wrote: they are not ours.
        """
        if self.stamped:
            return None
        death = latest_death(self.headers.get("x-death"))
        return death if _header_text(death.get("reason")) == EXPIRED_REASON else None


def _header_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def json_ready(value: dict[str, Any]) -> dict[str, Any]:
    """Header and property values as JSON: bytes as text, timestamps as RFC 3339."""
    document: dict[str, Any] = orjson.loads(
        orjson.dumps(value, default=_json_default, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)
    )
    return document


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Described(Protocol):
    """What a filter reads of a dead letter: a `StoredLetter`, or a summary of one kept without its body."""

    @property
    def job_id(self) -> str | None: ...  # noqa: D102
    @property
    def original_routing_key(self) -> str: ...  # noqa: D102
    @property
    def service(self) -> str: ...  # noqa: D102
    @property
    def operation(self) -> str: ...  # noqa: D102
    @property
    def category(self) -> str: ...  # noqa: D102
    @property
    def error_code(self) -> str: ...  # noqa: D102
    def age_s(self, now: datetime, /) -> float | None: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which dead letters a command acts on: every given criterion must hold (any value of a list)."""

    services: frozenset[str] = frozenset()
    operations: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    error_codes: frozenset[str] = frozenset()
    job_ids: frozenset[str] = frozenset()
    older_than_s: float | None = None
    newer_than_s: float | None = None

    def matches(self, letter: Described, now: datetime) -> bool:
        """True when the letter meets every criterion; an unreadable age meets no age criterion."""
        if self.services and letter.service not in self.services:
            return False
        if self.operations and not {letter.operation, letter.original_routing_key} & self.operations:
            return False
        if self.categories and letter.category not in self.categories:
            return False
        if self.error_codes and letter.error_code not in self.error_codes:
            return False
        if self.job_ids and letter.job_id not in self.job_ids:
            return False
        if self.older_than_s is None and self.newer_than_s is None:
            return True
        age_s = letter.age_s(now)
        if age_s is None:
            return False
        return (self.older_than_s is None or age_s >= self.older_than_s) and (
            self.newer_than_s is None or age_s <= self.newer_than_s
        )


def append_records(path: Path, letters: Iterable[StoredLetter]) -> None:
    """Append export records as JSON Lines and fsync, so they are on disk before anything is deleted."""
    with path.open("ab") as file:
        for letter in letters:
            file.write(orjson.dumps(letter.to_record()) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    # A file just created is on disk only once its directory entry is too.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_identities(path: Path) -> Counter[Identity]:
    """The letters an export file names, each as often as it occurs; ValueError for a file that names none."""
    identities: Counter[Identity] = Counter()
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            msg = f"{path} line {number} is not JSON"
            raise ValueError(msg) from None
        stamp = record.get("dead_letter") if isinstance(record, dict) else None
        digest = stamp.get("body_sha256") if isinstance(stamp, dict) else None
        message_id = stamp.get("message_id") if isinstance(stamp, dict) else None
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)) or not isinstance(message_id, str | None):
            msg = (
                f"{path} line {number} does not record which dead letter it came from "
                "(dead_letter.message_id and body_sha256): export it again with `dispatcher dlq export`"
            )
            raise ValueError(msg)
        identities[(message_id, digest)] += 1
    if not identities:
        msg = f"{path} names no dead letter"
        raise ValueError(msg)
    return identities


def replay_blocker(letter: StoredLetter, decoder: Decoder, letter_filter: LetterFilter, *, force: bool) -> str | None:
    """Why this dead letter must stay, or None to replay it.

    It stays when it would fail again as it is (the current schema, an expired `not_after`),
    unless forced, and when AWS may already have started it, unless its category was named.
    """
    if letter.category in NEEDS_JUDGEMENT and letter.category not in letter_filter.categories:
        return f"{letter.category}: AWS may have started this job; check, then name --category {letter.category}"
    if force:
        return None
    try:
        decoder.decode(letter.body, letter.original_routing_key, letter.properties.get("message_id"))
    except JobError as exc:
        return f"still fails: {exc.category} {exc.code}: {exc.message}"
    return None
