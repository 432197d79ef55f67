"""The oracle: every published message, by marker, against what came out and what AWS was asked to start.

Results and dead letters are attributed by the marker found in their body bytes, else in their
`message_id` or `correlation_id`; AWS calls by the marker in their parameters. A dead letter's
category is read the way the DLQ tools read it (`dispatcher.dead_letters.StoredLetter`), not from the
raw header, so a forged `x-dispatcher-category` that the tools would believe counts as broken.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson

from dispatcher.dead_letters import PROPERTY_NAMES, StoredLetter
from dispatcher.settings import Settings
from dispatcher.stamps import Stamper
from tests.faults.harness import call_marker, marker
from tests.hostile.catalogue import KINDS, MARKER, Expect, Message
from tests.hostile.wire import CONFIRMED, INDETERMINATE, REFUSED, PublishLog, Received, text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

EXAMPLES_PER_PROBLEM = 5
NO_OUTCOME = "no outcome"
UNCONFIRMED = {REFUSED: "refused by the broker", INDETERMINATE: "publish indeterminate"}


def marker_of(received: Received) -> str | None:
    """The marker a result or dead letter carries: in its body, else its message_id or correlation_id."""
    found = MARKER.search(received.body)
    for value in (received.properties.get("message_id"), received.properties.get("correlation_id")):
        if found is None and isinstance(value, str | bytes):
            found = MARKER.search(value.encode() if isinstance(value, str) else value)
    return found.group().decode() if found else None


def dlq_reader(amqp_url: str) -> Callable[[Received], tuple[str, str]]:
    """(category, error code) of a dead letter as `dispatcher dlq` reads it, with the workers' state key."""
    stamper = Stamper.from_settings(Settings(amqp_url=amqp_url))

    def read(received: Received) -> tuple[str, str]:
        headers = {text(key) if isinstance(key, bytes) else key: value for key, value in received.headers.items()}
        delivery = SimpleNamespace(
            body=received.body,
            headers=headers,
            routing_key=text(received.routing_key),
            **{name: _as_aio_pika(name, received.properties.get(name)) for name in PROPERTY_NAMES},
        )
        letter = StoredLetter.from_message(delivery, stamper)  # type: ignore[arg-type]
        return str(letter.category or "(no category)"), str(letter.error_code or "(no code)")

    return read


def _as_aio_pika(name: str, value: object) -> object:
    """A property as aio-pika hands it over: short strings as text, with U+FFFD for bad bytes."""
    if name in {"delivery_mode", "priority", "timestamp"}:
        return value
    return text(value)


@dataclass
class Observed:
    """Every result, dead letter and AWS call, attributed to markers."""

    results: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    dead: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    unattributed: list[Received] = field(default_factory=list)
    starts: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    stray_calls: int = 0

    @classmethod
    def of(
        cls,
        received: Iterable[Received],
        results_queue: str,
        messages: Iterable[Message],
        calls: Iterable[Mapping[str, Any]],
    ) -> Observed:
        observed = cls()
        for message in received:
            found = marker_of(message)
            if found is None:
                observed.unattributed.append(message)
            elif message.queue == results_queue:
                observed.results[found].append(message)
            else:
                observed.dead[found].append(message)
        by_call_marker = {
            marker(message.operation, message.marker): message.marker for message in messages if message.operation
        }
        for call in calls:
            owner = by_call_marker.get(call_marker(call) or "")
            if owner is None:
                observed.stray_calls += 1
                continue
            observed.calls[owner] += 1
            if call.get("new_job"):
                observed.starts[owner] += 1
        return observed


def result_document(received: Received) -> dict[str, Any]:
    """A result's JSON body ({} when it is not one)."""
    with contextlib.suppress(orjson.JSONDecodeError):
        document = orjson.loads(received.body)
        if isinstance(document, dict):
            return document
    return {}


@dataclass(frozen=True)
class Verdict:
    """What became of one message, and what is wrong with that."""

    message: Message
    outcome: str
    problems: tuple[str, ...]
    confirmed: bool = True


def judge(
    message: Message, status: str, observed: Observed, category_of: Callable[[Received], tuple[str, str]]
) -> Verdict:
    """One message's outcome against its expectation."""
    results = observed.results.get(message.marker, [])
    dead = observed.dead.get(message.marker, [])
    if status != CONFIRMED:
        leaked = status == REFUSED and bool(results or dead)
        refused = [f"refused, yet {len(results)} results and {len(dead)} dead letters"] if leaked else []
        return Verdict(message, UNCONFIRMED.get(status, "not published"), tuple(refused), confirmed=False)
    documents = [result_document(result) for result in results]
    outcomes = [str(document.get("outcome")) for document in documents]
    letters = [category_of(letter) for letter in dead]
    if not results and not dead:
        return Verdict(message, NO_OUTCOME, ("no result and no dead letter",))
    problems = [f"{len(results)} results {outcomes}"] if len(results) != 1 else []
    if message.expect is Expect.SUCCEEDED:
        problems += _judge_success(message, outcomes, documents, letters, observed)
    else:
        problems += _judge_dead_letter(message, outcomes, documents, dead, letters, observed)
    if letters:
        outcome = "dead-lettered " + "/".join(sorted({category for category, _ in letters}))
    else:
        outcome = outcomes[0] if outcomes == ["succeeded"] else f"results {outcomes}, no dead letter"
    return Verdict(message, outcome, tuple(problems))


def _judge_success(
    message: Message,
    outcomes: list[str],
    documents: list[dict[str, Any]],
    letters: list[tuple[str, str]],
    observed: Observed,
) -> list[str]:
    problems = []
    if outcomes and outcomes[0] != "succeeded":
        error = documents[0].get("error") or {}
        problems.append(f"failed: {error.get('category')}/{error.get('code')}: {str(error.get('message'))[:160]}")
    if letters:
        problems.append(f"dead-lettered {len(letters)} times {letters}")
    if observed.starts[message.marker] != 1:
        problems.append(f"started in AWS {observed.starts[message.marker]} times")
    if message.single_attempt and documents and documents[0].get("attempts") != 1:
        problems.append(f"forged retry state believed: attempts {documents[0].get('attempts')}")
    return problems


def _judge_dead_letter(
    message: Message,
    outcomes: list[str],
    documents: list[dict[str, Any]],
    dead: list[Received],
    letters: list[tuple[str, str]],
    observed: Observed,
) -> list[str]:
    problems = []
    allowed = "/".join(sorted(message.categories))
    if len(dead) != 1:
        problems.append(f"{len(dead)} dead letters {letters}")
    if outcomes and outcomes[0] != "failed":
        problems.append(f"a {outcomes[0]} result where a failed one was due")
    for category, code in letters[:1]:
        if category not in message.categories:
            problems.append(f"dead-lettered {category}/{code}, not {allowed}")
    for document in documents[:1]:
        category = str((document.get("error") or {}).get("category"))
        if outcomes[0] == "failed" and category not in message.categories:
            problems.append(f"failed result says {category}, not {allowed}")
    if dead and dead[0].body != message.body:
        problems.append(f"dead letter body differs ({len(dead[0].body)} bytes, published {len(message.body)})")
    if observed.calls[message.marker]:
        problems.append(f"AWS called {observed.calls[message.marker]} times for a message that must not start")
    return problems


@dataclass
class Report:
    """The run's verdicts, the run-level findings, and the summary table."""

    verdicts: list[Verdict]
    findings: list[str]
    elapsed_s: float
    label: str = ""

    @classmethod
    def of(
        cls,
        messages: list[Message],
        publish_log: PublishLog,
        observed: Observed,
        category_of: Callable[[Received], tuple[str, str]],
        findings: list[str],
        elapsed_s: float,
    ) -> Report:
        verdicts = [
            judge(message, publish_log.status.get(message.marker, "not published"), observed, category_of)
            for message in messages
        ]
        findings = list(findings)
        if observed.unattributed:
            examples = [(item.queue, item.body[:80]) for item in observed.unattributed[:EXAMPLES_PER_PROBLEM]]
            findings.append(f"[unattributed] {len(observed.unattributed)} outcomes carry no marker, e.g. {examples}")
        if observed.stray_calls:
            findings.append(f"[aws] {observed.stray_calls} AWS calls belong to no published message")
        return cls(verdicts, findings, elapsed_s)

    def broken(self) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.problems]

    def problems(self) -> list[str]:
        """One line per broken case, naming up to five markers and what broke; then the run-level findings."""
        published: Counter[tuple[str, str]] = Counter(
            (verdict.message.kind, verdict.message.case) for verdict in self.verdicts
        )
        grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
        for verdict in self.broken():
            grouped[verdict.message.kind, verdict.message.case].append(
                f"{verdict.message.marker} ({'; '.join(verdict.problems)})"
            )
        lines = [
            f"[{kind}] {case}: {len(examples)} of {published[kind, case]} broken: "
            + ", ".join(examples[:EXAMPLES_PER_PROBLEM])
            for (kind, case), examples in sorted(grouped.items())
        ]
        return lines + self.findings

    def table(self) -> list[tuple[str, ...]]:
        """kind -> published, refused, outcomes, broken; one row per kind and a total."""
        header = ("kind", "published", "refused", "succeeded", "dead-lettered", "no outcome", "other", "broken")
        rows: list[tuple[str, ...]] = [header]
        for kind in (*KINDS, "total"):
            verdicts = [verdict for verdict in self.verdicts if kind in {"total", verdict.message.kind}]
            outcomes = Counter(verdict.outcome for verdict in verdicts)
            dead = Counter(
                category
                for verdict in verdicts
                if verdict.outcome.startswith("dead-lettered")
                for category in [verdict.outcome.removeprefix("dead-lettered ")]
            )
            rows.append(
                (
                    kind,
                    str(sum(1 for verdict in verdicts if verdict.confirmed)),
                    str(outcomes["refused by the broker"]),
                    str(outcomes["succeeded"]),
                    ", ".join(f"{category} {count}" for category, count in sorted(dead.items())) or "0",
                    str(outcomes[NO_OUTCOME]),
                    str(
                        sum(1 for verdict in verdicts if verdict.confirmed)
                        - outcomes["succeeded"]
                        - dead.total()
                        - outcomes[NO_OUTCOME]
                    ),
                    str(sum(1 for verdict in verdicts if verdict.problems)),
                )
            )
        return rows

    def render(self) -> str:
        """The table, then every problem."""
        rows = self.table()
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines = [f"hostile input {self.label}: {len(self.verdicts)} messages in {self.elapsed_s:.0f}s"]
        for number, row in enumerate(rows):
            lines.append(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
            if number == 0:
                lines.append("-+-".join("-" * width for width in widths))
        return "\n".join([*lines, *self.problems()])
