"""The console's parts without a browser or broker: counters over a window, who may act, filters, safe bodies."""

from __future__ import annotations

from collections import deque

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import MultiDict
from pydantic import SecretStr

from dispatcher.console.access import TOKEN_OPERATOR, Access
from dispatcher.console.overview import OverviewReader
from dispatcher.console.scrape import Reading, _increase
from dispatcher.console.views import FilterError, FilterForm, redacted_body
from dispatcher.dead_letters import StoredLetter
from dispatcher.examples import example_job
from dispatcher.registry import default_registry
from dispatcher.settings import Settings

HEADER = "X-Auth-Request-Email"


def test_a_counter_that_drops_was_restarted_and_its_new_value_is_increase():
    """10 -> 15 -> (restart) 4 -> 6 is an increase of 5 + 4 + 2."""
    assert _increase(deque([(0.0, 10.0), (1.0, 15.0), (2.0, 4.0), (3.0, 6.0)])) == 11


def test_a_reading_sums_workers_and_other_labels():
    """Increases add up across workers and categories; values are per worker."""
    dead = ("dispatcher_dead_letters_total", (("category", "invalid"), ("operation", "m2.StartBatchJob")))
    other = ("dispatcher_dead_letters_total", (("category", "rejected"), ("operation", "m2.StartBatchJob")))
    gauge = ("dispatcher_jobs_in_flight", (("operation", "m2.StartBatchJob"),))
    reading = Reading(2, (), 60.0, ({gauge: 2.0}, {gauge: 3.0}), {dead: 4.0, other: 1.0})
    assert reading.increase("dispatcher_dead_letters_total", operation="m2.StartBatchJob") == 5
    assert reading.increase("dispatcher_dead_letters_total", operation="quicksight.StartAutomationJob") == 0
    assert reading.values("dispatcher_jobs_in_flight", operation="m2.StartBatchJob") == [2.0, 3.0]


@pytest.mark.parametrize(
    ("configured_header", "headers", "operator"),
    [
        (None, {HEADER: "ops@example.com"}, None),  # not configured: never believed
        (HEADER, {HEADER: "ops@example.com"}, "ops@example.com"),
        (HEADER, {HEADER: "  "}, None),
        (None, {"Authorization": "Bearer s3cret-token"}, TOKEN_OPERATOR),
        (None, {"Authorization": "Bearer wrong"}, None),
    ],
)
def test_who_may_act(configured_header, headers, operator):
    """The proxy's header only when it is configured; the bearer token only when it is the token."""
    access = Access(SecretStr("s3cret-token"), configured_header)
    assert access.operator(make_mocked_request("GET", "/", headers=headers)) == operator


def test_without_a_token_nobody_logs_in():
    """An empty or missing token never matches, not even an empty answer."""
    assert not Access(None, HEADER).token_matches("")
    assert not Access(SecretStr(""), None).token_matches("")


def test_the_form_reads_as_the_cli_options():
    """Commas give several values, as a repeated option; a selection narrows the job ids."""
    form = FilterForm.read(MultiDict([("service", "m2, datazone"), ("category", "rejected"), ("category", "bogus")]))
    letter_filter = form.letter_filter(("job-1",))
    assert letter_filter.services == {"m2", "datazone"}
    assert letter_filter.categories == {"rejected"}
    assert letter_filter.job_ids == {"job-1"}
    assert form.text == "--service m2, datazone --category rejected"
    with pytest.raises(FilterError, match="older than"):
        FilterForm.read(MultiDict([("older_than", "soon")])).letter_filter()


def letter(body: bytes, routing_key: str) -> StoredLetter:
    """A dead letter as read from the queue."""
    return StoredLetter(body, {}, {"message_id": "job-1"}, routing_key, stamped=False)


def test_sensitive_parameters_are_redacted_and_other_bytes_shown_as_base64():
    """Clean Rooms' job parameters never reach the page; a body that is not UTF-8 is base64."""
    job = example_job("cleanrooms.StartProtectedJob", "job-1")
    job["params"]["jobParameters"]["parameters"] = {"apiKey": "hunter2"}
    encoding, text = redacted_body(letter(orjson.dumps(job), "cleanrooms.StartProtectedJob"), default_registry())
    assert encoding == "JSON"
    assert "hunter2" not in text
    assert "apiKey" not in text
    encoding, text = redacted_body(letter(b"\xff\x00", "m2.StartBatchJob"), default_registry())
    assert (encoding, text) == ("2 bytes, not UTF-8: base64", "/wA=")


@pytest.mark.parametrize(
    ("current", "configured"),
    [
        ("dispatcher_rate_limit_calls_per_second", "dispatcher_rate_limit_configured_calls_per_second"),
        ("dispatcher_rate_limit_rate", None),  # workers from before the rename
    ],
)
def test_the_overview_reads_the_rate_gauges_by_either_name(current, configured):
    """The new per-region gauges first, the old one otherwise; the configured rate from the settings without it."""
    m2 = (("operation", "m2.StartBatchJob"), ("region", "us-east-1"))
    latest = {(current, m2): 2.5, ("dispatcher_rate_limit_rate", (("operation", "x.Y"),)): 9.0}
    if configured:
        latest[(configured, m2)] = 7.0
    reader = OverviewReader(Settings(), default_registry(), probe=None, watcher=None)
    row = reader._row("m2.StartBatchJob", None, Reading(1, (), 60.0, (latest,), {}))
    assert row.current_rate == 2.5
    assert row.configured_rate == (7.0 if configured else Settings().rate_limit_for("m2.StartBatchJob").rate)
