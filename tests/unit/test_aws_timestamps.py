"""The fast timestamp parser gives what botocore's gives: the same instant, offset and result JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiobotocore.session import get_session
from botocore.utils import parse_timestamp
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.aws import AwsClients
from dispatcher.aws_timestamps import parse_aws_timestamp, use_fast_timestamps
from dispatcher.results import to_json

MOMENTS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1))  # noqa: DTZ001 - naive on purpose
OFFSETS_MIN = st.integers(min_value=-14 * 60, max_value=14 * 60)


def iso(moment: datetime, fraction_digits: int, offset_min: int | None) -> str:
    """`moment` as AWS writes it: `Z` (offset None) or `+hh:mm`, with 0 to 9 fraction digits."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction_digits:
        nanos = f"{moment.microsecond:06d}000"
        text += "." + nanos[:fraction_digits]
    if offset_min is None:
        return text + "Z"
    sign = "-" if offset_min < 0 else "+"
    hours, minutes = divmod(abs(offset_min), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def assert_same(fast: datetime, slow: datetime) -> None:
    """Equal instants and offsets, written alike in a result."""
    assert fast == slow
    assert fast.utcoffset() == slow.utcoffset()
    assert to_json({"at": fast}) == to_json({"at": slow})


@given(MOMENTS, st.integers(min_value=0, max_value=9), st.none() | OFFSETS_MIN)
def test_iso_timestamps_parse_to_botocores_instant_and_offset(
    moment: datetime, digits: int, offset: int | None
) -> None:
    """What AWS writes takes the fast path and lands where botocore's parser does."""
    text = iso(moment, digits, offset)
    fast = parse_aws_timestamp(text)
    assert isinstance(fast.tzinfo, timezone), "the fast path was not taken"
    assert_same(fast, parse_timestamp(text))


@pytest.mark.parametrize(
    "value",
    [
        1733404200,
        1733404200.5,
        "1733404200",
        "Thu, 05 Dec 2024 13:10:00 GMT",
        "2024-12-05t13:10:00z",
        "2024-12-05 13:10:00Z",
        "2024-12-05T13:10:00",
        "20241205T131000Z",
    ],
)
def test_other_forms_go_to_botocores_parser(value: object) -> None:
    """Epoch seconds, RFC 822 and other spellings are botocore's to read."""
    assert_same(parse_aws_timestamp(value), parse_timestamp(value))


def test_a_timestamp_botocore_refuses_is_refused() -> None:
    """Garbage is refused as botocore refuses it."""
    with pytest.raises(ValueError, match="Invalid timestamp"):
        parse_aws_timestamp("not a time")


def test_a_zulu_timestamp_is_utc() -> None:
    """`Z` is UTC and an offset is kept."""
    assert parse_aws_timestamp("2026-12-05T13:10:00.5Z") == datetime(2026, 12, 5, 13, 10, 0, 500000, tzinfo=UTC)
    assert parse_aws_timestamp("2026-12-05T13:10:00-02:30").utcoffset() == -timedelta(hours=2, minutes=30)


def test_the_worker_clients_parse_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's response parsers (one per response) get the fast parser as their default."""
    session = get_session()
    factory = session.get_component("response_parser_factory")
    assert factory.create_parser("rest-json")._timestamp_parser is not parse_aws_timestamp
    use_fast_timestamps(session)
    for protocol in ("rest-json", "json", "query"):
        assert factory.create_parser(protocol)._timestamp_parser is parse_aws_timestamp
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    clients = AwsClients(pool_size=1, connect_timeout_s=1, call_timeout_s=1)
    parsers = clients._session.get_component("response_parser_factory")
    assert parsers.create_parser("rest-json")._timestamp_parser is parse_aws_timestamp
