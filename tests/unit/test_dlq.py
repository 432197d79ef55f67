"""Dead letters without a broker: reading a delivery, filters, durations, export records, replay copies and blockers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aio_pika import DeliveryMode
from aio_pika.message import IncomingMessage
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from dispatcher.dead_letters import LetterFilter, StoredLetter, append_records, parse_duration, replay_blocker
from dispatcher.envelope import Decoder
from dispatcher.errors import Category
from dispatcher.examples import example_job
from dispatcher.registry import default_registry
from dispatcher.stamps import Stamper

M2 = "m2.StartBatchJob"
DATAZONE = "datazone.StartDataSourceRun"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DECODER = Decoder(default_registry(), "us-east-1", ("us-east-1",), max_message_bytes=10_000)
STAMPER = Stamper(b"the deployment's state secret")


def delivery(body: bytes, headers: dict[str, Any], routing_key: str = M2, **properties: Any) -> IncomingMessage:
    """A real aio-pika delivery as the dead-letter consumer receives it, with no channel behind it."""
    content = ContentHeader(body_size=len(body), properties=Basic.Properties(headers=headers, **properties))
    deliver = Basic.Deliver(consumer_tag="ctag", delivery_tag=1, exchange="dispatcher.dead", routing_key=routing_key)
    return IncomingMessage(DeliveredMessage(delivery=deliver, header=content, body=body, channel=None))


def dead_headers(
    category: str = "rejected",
    error_code: str = "AccessDeniedException",
    age: timedelta = timedelta(hours=1),
    routing_key: str = M2,
) -> dict[str, Any]:
    """The `x-dispatcher-*` headers the worker sets when it dead-letters a job `age` before NOW."""
    return {
        "x-dispatcher-category": category,
        "x-dispatcher-error-code": error_code,
        "x-dispatcher-error-message": "denied",
        "x-dispatcher-attempts": 3,
        "x-dispatcher-dead-lettered-at": (NOW - age).isoformat(),
        "x-dispatcher-original-routing-key": routing_key,
    }


def letter(
    job_id: str = "job-1",
    routing_key: str = M2,
    body: bytes | None = None,
    headers: dict[str, Any] | None = None,
    *,
    signed: bool = True,
    **properties: Any,
) -> StoredLetter:
    """A dead letter of a valid job, read from a delivery the way the DLQ commands read it.

    `signed`: its headers carry the signature a worker of this deployment puts on them.
    """
    raw = orjson.dumps(example_job(routing_key, job_id)) if body is None else body
    chosen = dict(dead_headers(routing_key=routing_key) if headers is None else headers)
    if signed:
        STAMPER.sign(chosen, raw, properties.get("message_id"))
    return StoredLetter.from_message(delivery(raw, chosen, routing_key, **properties), STAMPER)


def test_from_message_keeps_body_headers_set_properties_and_routing_key():
    """Reading a delivery keeps its body, headers, routing key and only the properties that were set."""
    headers = {**dead_headers(), "traceparent": "00-abc-def-01"}
    read = letter(body=b"raw body", headers=headers, message_id="m-1", content_type="application/json")
    assert read.body == b"raw body"
    assert read.headers == STAMPER.sign(dict(headers), b"raw body", "m-1")
    assert read.stamped
    assert read.routing_key == M2
    assert read.properties["message_id"] == "m-1"
    assert read.properties["content_type"] == "application/json"
    assert "reply_to" not in read.properties
    assert "correlation_id" not in read.properties


def test_job_id_prefers_the_body_then_the_message_id():
    """The job id is the body's `job_id`, else the AMQP message_id, else None."""
    assert letter("from-body", message_id="from-property").job_id == "from-body"
    assert letter(body=b"not json", message_id="from-property").job_id == "from-property"
    assert letter(body=b'{"job_id": 7}', message_id="from-property").job_id == "from-property"
    assert letter(body=b"[1, 2]").job_id is None


def test_headers_are_read_as_text_and_counts_as_integers():
    """Byte-valued headers read as text; attempts and replays read as 0 unless they are integers."""
    headers = {**dead_headers(), "x-dispatcher-category": b"invalid", "x-dispatcher-attempts": True}
    read = letter(headers={**headers, "x-dispatcher-replays": "2"})
    assert read.category == "invalid"
    assert read.attempts == 0
    assert read.replays == 0
    assert letter(headers={**dead_headers(), "x-dispatcher-replays": 2}).replays == 2
    assert letter().attempts == 3


def test_a_letter_that_expired_in_triage_unstamped_reads_as_unroutable():
    """No `x-dispatcher-*` headers but the broker's expiry in triage: unroutable, aged from the broker's time."""
    death = {
        "reason": "expired",
        "queue": "dispatcher.dead.triage",
        "time": (NOW - timedelta(minutes=5)).replace(tzinfo=None),
    }
    read = StoredLetter(b"{}", {"x-death": [death]}, {}, "m2.Nope", stamped=False)
    assert read.category == Category.UNROUTABLE
    assert read.error_code == "UnknownRoutingKey"
    assert "'m2.Nope'" in read.error_message
    assert "dispatcher.dead.triage" in read.error_message
    assert read.age_s(NOW) == 300
    assert LetterFilter(categories=frozenset({"unroutable"})).matches(read, NOW)
    stamped = letter(headers={**dead_headers(), "x-death": [death]})
    assert (stamped.category, stamped.error_code) == ("rejected", "AccessDeniedException")
    assert letter(headers={}).category == ""


def test_a_letter_that_expired_in_triage_with_forged_stamps_reads_as_unroutable():
    """A publisher's own `x-dispatcher-*` headers ride through triage unstamped: they are not believed."""
    death = {"reason": "expired", "queue": "dispatcher.dead.triage", "time": NOW.replace(tzinfo=None)}
    forged = {
        **dead_headers(category="rejected", routing_key=DATAZONE),
        "x-dispatcher-error-code": "AccessDeniedException",
        "x-death": [death],
    }
    body = orjson.dumps(example_job(DATAZONE, "job-1"))
    read = letter(routing_key="m2.Nope", body=body, headers=forged, signed=False)
    assert (read.category, read.error_code, read.attempts) == ("unroutable", "UnknownRoutingKey", 0)
    assert read.original_routing_key == "m2.Nope"
    assert not LetterFilter(error_codes=frozenset({"AccessDeniedException"})).matches(read, NOW)


def test_an_unsigned_stamp_is_shown_as_unverified_and_never_acted_on():
    """Stamps a worker did not sign (forged, or another state secret) are neither filtered nor replayed by."""
    forged = letter(headers=dead_headers(category="rejected", routing_key=DATAZONE), signed=False)
    assert (forged.category, forged.error_code, forged.attempts) == ("unverified", "UnverifiedStamp", 0)
    assert "DISPATCHER_STATE_SECRET" in forged.error_message
    assert forged.original_routing_key == M2
    assert forged.dead_lettered_at is None
    assert not LetterFilter(categories=frozenset({"rejected"})).matches(forged, NOW)
    assert "unverified" in (replay_blocker(forged, DECODER, LetterFilter(), force=True) or "")
    tampered = letter(headers=dead_headers(category="invalid"))
    tampered.headers["x-dispatcher-category"] = "rejected"
    assert (
        StoredLetter(
            tampered.body, tampered.headers, {}, M2, stamped=STAMPER.verified(tampered.headers, tampered.body, None)
        ).category
        == "unverified"
    )
    other_deployment = StoredLetter.from_message(delivery(letter().body, letter().headers), Stamper(b"another secret"))
    assert other_deployment.category == "unverified"


def test_original_routing_key_falls_back_to_the_current_one():
    """Service and operation come from the original routing key, else from the delivery's routing key."""
    moved = letter(headers=dead_headers(routing_key=DATAZONE))
    assert (moved.service, moved.operation) == ("datazone", "StartDataSourceRun")
    bare = letter(headers={})
    assert bare.original_routing_key == M2
    assert (bare.service, bare.operation) == ("m2", "StartBatchJob")


def test_age_is_read_from_the_dead_lettered_at_header():
    """The age is measured from `x-dispatcher-dead-lettered-at`; naive times are UTC; garbage has no age."""
    assert letter(headers=dead_headers(age=timedelta(minutes=5))).age_s(NOW) == pytest.approx(300)
    naive = {**dead_headers(), "x-dispatcher-dead-lettered-at": "2026-03-01T11:00:00"}
    assert letter(headers=naive).age_s(NOW) == pytest.approx(3600)
    garbage = {**dead_headers(), "x-dispatcher-dead-lettered-at": "yesterday"}
    assert letter(headers=garbage).age_s(NOW) is None


@pytest.mark.parametrize(
    ("letter_filter", "expected"),
    [
        (LetterFilter(), True),
        (LetterFilter(services=frozenset({"m2"})), True),
        (LetterFilter(services=frozenset({"datazone"})), False),
        (LetterFilter(operations=frozenset({"StartBatchJob"})), True),
        (LetterFilter(operations=frozenset({M2})), True),
        (LetterFilter(operations=frozenset({DATAZONE, M2})), True),
        (LetterFilter(operations=frozenset({"StartDataSourceRun"})), False),
        (LetterFilter(categories=frozenset({"rejected", "invalid"})), True),
        (LetterFilter(categories=frozenset({"invalid"})), False),
        (LetterFilter(error_codes=frozenset({"AccessDeniedException"})), True),
        (LetterFilter(error_codes=frozenset({"ThrottlingException"})), False),
        (LetterFilter(job_ids=frozenset({"job-1", "job-2"})), True),
        (LetterFilter(job_ids=frozenset({"job-2"})), False),
        (LetterFilter(services=frozenset({"m2"}), error_codes=frozenset({"ThrottlingException"})), False),
    ],
)
def test_filter_needs_every_criterion_and_any_value_of_each(letter_filter, expected):
    """A filter matches when each given criterion holds for one of its values, and an empty filter matches all."""
    assert letter_filter.matches(letter("job-1"), NOW) is expected


@pytest.mark.parametrize(
    ("older_than_s", "newer_than_s", "expected"),
    [
        (parse_duration("1h"), None, True),
        (parse_duration("61m"), None, False),
        (None, parse_duration("1h"), True),
        (None, parse_duration("59m"), False),
        (parse_duration("30m"), parse_duration("2h"), True),
        (parse_duration("2h"), parse_duration("1d"), False),
    ],
)
def test_age_filters_are_inclusive_bounds(older_than_s, newer_than_s, expected):
    """`older_than_s` and `newer_than_s` bound the age of a letter dead-lettered an hour ago, inclusively."""
    letter_filter = LetterFilter(older_than_s=older_than_s, newer_than_s=newer_than_s)
    assert letter_filter.matches(letter(headers=dead_headers(age=timedelta(hours=1))), NOW) is expected


def test_a_letter_without_a_readable_age_meets_no_age_criterion():
    """A letter whose dead-lettered-at is unreadable matches no age bound, but other filters still match it."""
    ageless = letter(headers={k: v for k, v in dead_headers().items() if k != "x-dispatcher-dead-lettered-at"})
    assert not LetterFilter(older_than_s=0).matches(ageless, NOW)
    assert not LetterFilter(newer_than_s=1e9).matches(ageless, NOW)
    assert LetterFilter(categories=frozenset({"rejected"})).matches(ageless, NOW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604_800), ("45", 45), ("1.5h", 5400), (" 5m ", 300)],
)
def test_parse_duration_reads_seconds_minutes_hours_and_days(text, seconds):
    """A number with an optional s, m, h or d unit is that many seconds, minutes, hours or days."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-5s", "5 m", "1e3", "5mm", "1.s", "1h30m"])
def test_parse_duration_rejects_anything_else(text):
    """Anything but one non-negative number and one optional unit is a ValueError naming the input."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_replay_copy_strips_dead_letter_headers_and_counts_the_replay():
    """The copy drops every x-dispatcher-* header but the replay count (incremented) and the broker's death headers."""
    headers = {
        **dead_headers(),
        "x-dispatcher-aws-request-id": "req-1",
        "x-dispatcher-http-status": 403,
        "x-dispatcher-retry-attempt": 2,
        "x-dispatcher-replays": 2,
        "x-death": [{"count": 1, "queue": "dispatcher.jobs.m2", "reason": "rejected"}],
        "x-delivery-count": 4,
        "x-first-death-exchange": "dispatcher.jobs",
        "x-first-death-queue": "dispatcher.jobs.m2",
        "x-first-death-reason": "rejected",
        "x-last-death-exchange": "dispatcher.jobs",
        "x-last-death-queue": "dispatcher.jobs.m2",
        "x-last-death-reason": "delivery_limit",
        "traceparent": "00-abc-def-01",
        "x-tenant": "billing",
    }
    copy = letter(headers=headers).replay_copy()
    assert copy.headers == {"traceparent": "00-abc-def-01", "x-tenant": "billing", "x-dispatcher-replays": 3}


def test_first_replay_counts_one():
    """A letter never replayed before gets `x-dispatcher-replays: 1`."""
    assert letter().replay_copy().headers == {"x-dispatcher-replays": 1}


def test_replay_copy_keeps_body_and_properties_but_not_expiry_or_user():
    """The copy keeps the body, message_id and other properties, is persistent, and has no expiration or user_id."""
    body = orjson.dumps(example_job(M2, "job-1"))
    original = letter(
        body=body,
        message_id="job-1",
        correlation_id="corr-1",
        reply_to="amq.rabbitmq.reply-to",
        content_type="application/json",
        app_id="billing",
        expiration="60000",
        user_id="publisher",
        delivery_mode=1,
    )
    copy = original.replay_copy()
    assert copy.body == body
    assert copy.message_id == "job-1"
    assert (copy.correlation_id, copy.reply_to) == ("corr-1", "amq.rabbitmq.reply-to")
    assert (copy.content_type, copy.app_id) == ("application/json", "billing")
    assert copy.delivery_mode == DeliveryMode.PERSISTENT
    assert copy.expiration is None
    assert copy.user_id is None


def body_of(record: dict[str, Any]) -> bytes:
    """The body bytes an export record stands for, read as its documented format says."""
    body = record["body"]
    if isinstance(body, dict):
        return orjson.dumps(body)
    if record.get("body_encoding") == "base64":
        return base64.b64decode(body)
    return str(body).encode()


def test_export_record_keeps_a_json_object_body_as_an_object():
    """A JSON object body is exported as that object, without a body_encoding."""
    job = example_job(M2, "job-1")
    record = letter(body=orjson.dumps(job)).to_record()
    assert record["body"] == job
    assert "body_encoding" not in record


@pytest.mark.parametrize("body", [b"plain text, not JSON", b"[1, 2, 3]", b'"a JSON string"', "caf\u00e9".encode()])
def test_export_record_keeps_other_utf8_bodies_as_text(body):
    """A UTF-8 body that is not a JSON object is exported as its text."""
    record = letter(body=body).to_record()
    assert record["body"] == body.decode()
    assert "body_encoding" not in record


def test_export_record_encodes_a_non_utf8_body_in_base64():
    """A body that is not UTF-8 is exported in base64, flagged by `body_encoding`."""
    body = b"\xff\xfe\x00binary"
    record = letter(body=body).to_record()
    assert record["body_encoding"] == "base64"
    assert base64.b64decode(record["body"]) == body


def test_export_record_turns_header_and_property_values_into_json():
    """Byte header values become text and a timestamp becomes RFC 3339 UTC."""
    headers = {**dead_headers(), "x-raw": b"bytes"}
    record = letter(headers=headers, message_id="m-1", timestamp=datetime(2026, 3, 1, 11, 0)).to_record()  # noqa: DTZ001
    assert record["headers"]["x-raw"] == "bytes"
    assert record["headers"]["x-dispatcher-attempts"] == 3
    assert record["properties"]["message_id"] == "m-1"
    assert record["properties"]["timestamp"] == "2026-03-01T11:00:00Z"


def test_appended_records_round_trip_every_body(tmp_path):
    """Records appended as JSON Lines read back to the original bodies, message ids and headers, after earlier lines."""
    path = tmp_path / "backup.jsonl"
    path.write_bytes(b'{"earlier": true}\n')
    letters = [
        letter(body=orjson.dumps(example_job(M2, "job-1")), message_id="job-1"),
        letter(body=b"text body", message_id="job-2"),
        letter(body=b"\x80\x81 not utf-8", message_id="job-3"),
    ]
    append_records(path, letters[:2])
    append_records(path, letters[2:])
    earlier, *records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert earlier == {"earlier": True}
    assert [orjson.loads(body_of(record)) for record in records[:1]] == [orjson.loads(letters[0].body)]
    assert [body_of(record) for record in records[1:]] == [letters[1].body, letters[2].body]
    assert [record["properties"]["message_id"] for record in records] == ["job-1", "job-2", "job-3"]
    assert all(record["headers"]["x-dispatcher-category"] == "rejected" for record in records)


def test_replay_blocker_lets_a_valid_job_go():
    """A job that decodes today, in a category that needs no judgement, is replayed."""
    assert replay_blocker(letter(), DECODER, LetterFilter(), force=False) is None


def test_replay_blocker_decodes_with_the_original_routing_key():
    """The job is checked against the routing key it was first published with, not the one it has now."""
    body = orjson.dumps(example_job(M2, "job-1"))
    moved = StoredLetter(body, dead_headers(routing_key=M2), {}, "dispatcher.dead", stamped=True)
    assert replay_blocker(moved, DECODER, LetterFilter(), force=False) is None
    unknown_origin = StoredLetter(body, {}, {}, "dispatcher.dead", stamped=True)
    assert "RoutingKeyMismatch" in (replay_blocker(unknown_origin, DECODER, LetterFilter(), force=False) or "")


def test_replay_blocker_keeps_a_still_invalid_job_unless_forced():
    """A job that fails the current schema stays, with the reason, unless forced."""
    job = example_job(M2, "job-1")
    job["params"]["applicationId"] = 42
    invalid = letter(body=orjson.dumps(job), headers=dead_headers(category="invalid", error_code="InvalidParameters"))
    reason = replay_blocker(invalid, DECODER, LetterFilter(), force=False)
    assert reason is not None
    assert reason.startswith("still fails: invalid InvalidParameters: params.applicationId")
    assert replay_blocker(invalid, DECODER, LetterFilter(), force=True) is None


def test_replay_blocker_keeps_an_expired_job_unless_forced():
    """A job whose `not_after` has passed stays as expired, unless forced."""
    body = orjson.dumps(example_job(M2, "job-1", not_after="2020-01-01T00:00:00Z"))
    expired = letter(body=body, headers=dead_headers(category="expired", error_code="JobExpired"))
    reason = replay_blocker(expired, DECODER, LetterFilter(), force=False)
    assert reason is not None
    assert reason.startswith("still fails: expired JobExpired")
    assert replay_blocker(expired, DECODER, LetterFilter(), force=True) is None


@pytest.mark.parametrize("category", [Category.UNKNOWN_OUTCOME, Category.DELIVERY_LIMIT])
def test_replay_blocker_needs_judgement_category_named(category):
    """unknown-outcome and delivery-limit letters stay, even forced, until their category is named in the filter."""
    needs_judgement = letter(headers=dead_headers(category=str(category), error_code="Timeout"))
    for force in (False, True):
        reason = replay_blocker(needs_judgement, DECODER, LetterFilter(), force=force)
        assert reason is not None
        assert f"--category {category}" in reason
    other_category = LetterFilter(categories=frozenset({"rejected"}))
    assert replay_blocker(needs_judgement, DECODER, other_category, force=True) is not None
    named = LetterFilter(categories=frozenset({str(category)}))
    assert replay_blocker(needs_judgement, DECODER, named, force=False) is None


def test_naming_a_judgement_category_still_checks_the_job():
    """Naming unknown-outcome lifts only the judgement rule: a job that would fail again still stays."""
    job = example_job(M2, "job-1")
    del job["params"]["applicationId"]
    unknown = letter(body=orjson.dumps(job), headers=dead_headers(category="unknown-outcome", error_code="Timeout"))
    named = LetterFilter(categories=frozenset({"unknown-outcome"}))
    reason = replay_blocker(unknown, DECODER, named, force=False)
    assert reason is not None
    assert reason.startswith("still fails: invalid InvalidParameters")


def _render(width: int, letters: list[StoredLetter], *, terminal: bool = True) -> str:
    from io import StringIO  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from dispatcher.cli_dlq import print_letters  # noqa: PLC0415

    file = StringIO()
    print_letters(Console(file=file, width=width, force_terminal=terminal, color_system=None), letters, NOW)
    return file.getvalue()


LOOKOUT = "lookoutequipment.StartDataIngestionJob"
LONG_ID = "billing-nightly-2026-11-23-ingestion-000123"


def _long_letters() -> list[StoredLetter]:
    headers = dead_headers("unknown-outcome", "ServiceUnavailableException", routing_key=LOOKOUT)
    headers["x-dispatcher-error-message"] = "the call timed out after 30 s and AWS may have started the job " * 2
    return [letter(LONG_ID, LOOKOUT, headers=headers), letter("job-2")]


@pytest.mark.parametrize("width", [80, 100, 200])
def test_list_on_a_terminal_never_wraps_or_cuts_a_job_id_or_routing_key(width):
    """At any width each job id, routing key, category and code is printed whole on one line."""
    shown = _render(width, _long_letters())
    lines = shown.splitlines()
    for value in (LONG_ID, LOOKOUT, "unknown-outcome", "ServiceUnavailableException", "job-2", M2):
        assert any(value in line for line in lines), (value, shown)
    assert all(len(line) <= width for line in lines), shown
    if width == 200:
        assert any("job id" in line and "operation" in line for line in lines), "a table at 200 columns"


def test_list_without_a_terminal_is_tab_separated():
    """Piped: a header and one line per letter, tab-separated, the message whole, its line breaks as spaces."""
    headers = dead_headers()
    headers["x-dispatcher-error-message"] = "first line\nsecond\tline"
    shown = _render(80, [letter("job-1", headers=headers)], terminal=False)
    assert shown.splitlines() == [
        "job id\toperation\tcategory\terror code\tmessage\tattempts\tage",
        f"job-1\t{M2}\trejected\tAccessDeniedException\tfirst line second line\t3\t1h",
    ]


def test_an_export_record_names_its_letter_and_read_identities_counts_them(tmp_path):
    """Each record carries message_id and the body's digest; editing the body in the file changes neither."""
    first, second = letter("job-1", message_id="job-1"), letter("job-2", message_id="job-2")
    path = tmp_path / "export.jsonl"
    append_records(path, [first, second, first])
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    records[0]["body"]["metadata"] = {"edited": "yes"}
    path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))

    from dispatcher.dead_letters import read_identities  # noqa: PLC0415

    assert records[0]["dead_letter"] == {"message_id": "job-1", "body_sha256": first.identity[1]}
    assert read_identities(path) == {first.identity: 2, second.identity: 1}
    assert first.identity != letter("job-1", message_id="job-1", body=b"{}").identity
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_bytes(b'{"properties": {}, "body": {}}\n')
    with pytest.raises(ValueError, match="export it again"):
        read_identities(legacy)
