"""The fault suite's method, after RabbitMQ's Jepsen harness: confirmed publishes in, job ids out.

A run publishes jobs with publisher confirms (reconnecting through whatever fault is in force),
and only the confirmed ones count. Its oracle is the set of job ids found in the results queue
or the dead-letter queue, never a queue's message counter; duplicates are counted, not hidden.
The emulator's call log tells how often AWS started each job: every job carries a marker of its
own in its parameters, so a start is attributed to its job even for operations without a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aio_pika
import orjson
from aio_pika import DeliveryMode, Message

from dispatcher.examples import example_job
from dispatcher.registry import default_registry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Mapping

    from aio_pika.abc import AbstractIncomingMessage

    from dispatcher.emulator import RunningEmulator

REGISTRY = default_registry()
ROUTING_KEYS = REGISTRY.routing_keys
TOKEN_BEARING = frozenset(op.routing_key for op in REGISTRY if op.idempotency_token_member)
QUICKSIGHT = "quicksight.StartAutomationJob"
LOOKOUT = "lookoutequipment.StartDataIngestionJob"
DATAZONE = "datazone.StartDataSourceRun"
M2 = "m2.StartBatchJob"
CLEANROOMS = "cleanrooms.StartProtectedJob"
MARKER_NAMESPACE = uuid.UUID("0d7b3f4e-2c1a-4f5e-9b8d-7a6c5e4d3c2b")
ANSWERED = frozenset({"started", "replayed"})

CI_JOBS = 2000
# About what one worker settles a second here, so that publishing goes on while the faults strike.
PUBLISH_RATE_PER_S = 250
SOAK_JOBS = 20_000


def jobs_per_run(*, soak: bool) -> int:
    """`FAULTS_JOBS` when set, else the bounded CI size or the soak size."""
    return int(os.environ.get("FAULTS_JOBS") or (SOAK_JOBS if soak else CI_JOBS))


def marker(routing_key: str, job_id: str) -> str:
    """The value that identifies a job in the parameters AWS receives (see `marked_job`)."""
    if routing_key in {QUICKSIGHT, CLEANROOMS}:
        return str(uuid.uuid5(MARKER_NAMESPACE, job_id))
    return job_id


def marked_job(routing_key: str, job_id: str) -> dict[str, Any]:
    """The example job of an operation, with a parameter of its own carrying the job's marker."""
    job = example_job(routing_key, job_id)
    params = dict(job["params"])
    mark = marker(routing_key, job_id)
    if routing_key == QUICKSIGHT:
        params["AutomationId"] = mark
    elif routing_key == LOOKOUT:
        params["IngestionInputConfiguration"] = {
            "S3InputConfiguration": {"Bucket": "factory-telemetry", "Prefix": f"{mark}/"}
        }
    elif routing_key == DATAZONE:
        params["dataSourceIdentifier"] = mark
    elif routing_key == M2:
        params["jobParams"] = {"RUNDATE": "20261123", "TESTJOB": mark}
    elif routing_key == CLEANROOMS:
        params["membershipIdentifier"] = mark
    return {**job, "params": params}


def call_marker(call: Mapping[str, Any]) -> str | None:
    """The marker in a call log entry's parameters (None when its body was never read)."""
    params = call.get("params") or {}
    key = call["routing_key"]
    with contextlib.suppress(KeyError, TypeError):
        if key == QUICKSIGHT:
            return str(params["AutomationId"])
        if key == LOOKOUT:
            return str(params["IngestionInputConfiguration"]["S3InputConfiguration"]["Prefix"]).removesuffix("/")
        if key == DATAZONE:
            return str(params["dataSourceIdentifier"])
        if key == M2:
            return str(params["jobParams"]["TESTJOB"])
        if key == CLEANROOMS:
            return str(params["membershipIdentifier"])
    return None


class LoadPublisher:
    """Publishes jobs with confirms through connection loss; a publish not confirmed is indeterminate.

    An unconfirmed job may or may not have reached the broker (Jepsen's "info" operation): it is
    neither expected nor unexpected, and a replacement with a fresh job id is published instead.
    """

    def __init__(
        self, amqp_url: str, exchange: str, tag: str, size: int, *, rate_per_s: float = PUBLISH_RATE_PER_S
    ) -> None:
        self._url = amqp_url
        self._exchange = exchange
        self._tag = tag
        self._window = max(1, int(rate_per_s / 10))
        self._interval_s = self._window / rate_per_s
        self._next_batch_at = time.monotonic()
        self._next = 0
        self.routing_key: dict[str, str] = {}
        self.confirmed: set[str] = set()
        self.indeterminate: set[str] = set()
        self.reconnects = 0
        self._pending: deque[tuple[str, str]] = deque(
            self._new_job(ROUTING_KEYS[i % len(ROUTING_KEYS)]) for i in range(size)
        )

    def _new_job(self, routing_key: str) -> tuple[str, str]:
        job_id = f"{self._tag}-{self._next:06d}"
        self._next += 1
        self.routing_key[job_id] = routing_key
        return routing_key, job_id

    async def run(self, deadline_s: float = 600.0) -> None:
        """Publish until every job (or its replacement) is confirmed."""
        async with asyncio.timeout(deadline_s):
            while self._pending:
                try:
                    await self._publish_pending()
                except (aio_pika.exceptions.AMQPError, OSError, TimeoutError, RuntimeError):
                    self.reconnects += 1
                    await asyncio.sleep(0.5)

    async def _publish_pending(self) -> None:
        connection = await aio_pika.connect(self._url, timeout=5)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(self._exchange, ensure=False)
            while self._pending:
                await asyncio.sleep(max(0.0, self._next_batch_at - time.monotonic()))
                self._next_batch_at = max(self._next_batch_at, time.monotonic() - 1) + self._interval_s
                batch = [self._pending.popleft() for _ in range(min(self._window, len(self._pending)))]
                outcomes = await asyncio.gather(
                    *(self._publish_one(exchange, key, job_id) for key, job_id in batch), return_exceptions=True
                )
                failed = False
                for (key, job_id), outcome in zip(batch, outcomes, strict=True):
                    if outcome is None:
                        self.confirmed.add(job_id)
                    else:
                        failed = True
                        self.indeterminate.add(job_id)
                        self._pending.append(self._new_job(key))
                if failed:
                    return

    @staticmethod
    async def _publish_one(exchange: aio_pika.abc.AbstractExchange, routing_key: str, job_id: str) -> None:
        message = Message(
            orjson.dumps(marked_job(routing_key, job_id)),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=job_id,
        )
        async with asyncio.timeout(10):
            await exchange.publish(message, routing_key, mandatory=True)


@dataclass
class Outcomes:
    """Every result and dead letter read back, by job id, duplicates kept."""

    results: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    dead: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    last_at: float = field(default_factory=time.monotonic)

    def add_result(self, message: AbstractIncomingMessage) -> None:
        document = orjson.loads(message.body)
        self.results[str(document.get("job_id"))].append(document)
        self.last_at = time.monotonic()

    def add_dead(self, message: AbstractIncomingMessage) -> None:
        headers = {key: _text(value) for key, value in (message.headers or {}).items()}
        self.dead[_body_job_id(message.body, message.message_id)].append(headers)
        self.last_at = time.monotonic()

    def ids(self) -> set[str]:
        return set(self.results) | set(self.dead)

    def categories(self) -> Counter[str]:
        """Jobs by dead-letter category: from the dead letters read, else from the failed results."""
        found: Counter[str] = Counter()
        for letters in self.dead.values():
            found[str(letters[0].get("x-dispatcher-category"))] += 1
        if not self.dead:
            for results in self.results.values():
                failed = [result for result in results if result.get("outcome") == "failed"]
                if failed:
                    found[str((failed[0].get("error") or {}).get("category"))] += 1
        return found


def _text(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _body_job_id(body: bytes, message_id: str | None) -> str:
    with contextlib.suppress(orjson.JSONDecodeError):
        document = orjson.loads(body)
        if isinstance(document, dict) and isinstance(document.get("job_id"), str):
            return document["job_id"]
    return str(message_id)


class OutcomeReader:
    """Consumes (and acks) the results and/or dead-letter queues in the background, into `Outcomes`."""

    def __init__(
        self, amqp_url: str, queues: Mapping[str, Callable[[Outcomes, AbstractIncomingMessage], None]]
    ) -> None:
        self._url = amqp_url
        self._queues = queues
        self.outcomes = Outcomes()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Outcomes]:
        connection = await aio_pika.connect(self._url, timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=500)
            for name, sink in self._queues.items():

                async def on_message(message: AbstractIncomingMessage, sink: Any = sink) -> None:
                    sink(self.outcomes, message)
                    await message.ack()

                queue = await channel.get_queue(name, ensure=False)
                await queue.consume(on_message)
            yield self.outcomes

    async def wait_until(self, done: Callable[[Outcomes], bool], *, timeout_s: float, quiet_s: float = 3.0) -> bool:
        """Wait until `done` holds and nothing came for `quiet_s`; False (not raised) on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not (done(self.outcomes) and time.monotonic() - self.outcomes.last_at >= quiet_s):
                    await asyncio.sleep(0.2)
                return True
        return False


def results_and_dead(prefix: str) -> dict[str, Callable[[Outcomes, AbstractIncomingMessage], None]]:
    """Both outcome queues of a test's names."""
    return {f"{prefix}.results": Outcomes.add_result, f"{prefix}.dead": Outcomes.add_dead}


@dataclass
class FaultReport:
    """What one fault run measured; `problems()` lists what breaks the guarantees."""

    fault: str
    published: int
    indeterminate: int
    lost: list[str]
    unexpected: list[str]
    duplicated_results: int
    duplicated_dead_letters: int
    duplicate_starts: dict[str, int]
    token_reuse: dict[str, int]
    token_jobs_started_twice: list[str]
    phantom_successes: list[str]
    dead_by_category: Counter[str]
    unexpected_categories: Counter[str]
    outcomes: Counter[str]
    failures: dict[str, str]
    aws_calls: int
    elapsed_s: float
    routing_key: dict[str, str] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} confirmed jobs lost, e.g. {sorted(self.lost)[:5]}")
        if self.unexpected:
            found.append(f"{len(self.unexpected)} job ids nobody published, e.g. {sorted(self.unexpected)[:5]}")
        if self.token_reuse:
            found.append(
                f"idempotency tokens that started more than one AWS job: {dict(list(self.token_reuse.items())[:5])}"
            )
        if self.token_jobs_started_twice:
            found.append(f"token-bearing jobs started twice: {self.token_jobs_started_twice[:5]}")
        if self.phantom_successes:
            found.append(f"succeeded results without an AWS start: {self.phantom_successes[:5]}")
        if self.unexpected_categories:
            found.append(f"dead letters of unexpected categories: {dict(self.unexpected_categories)}")
        token_unknown = [job_id for job_id, category in self.failures.items() if category == "unknown-outcome"]
        token_unknown = [job_id for job_id in token_unknown if self.routing_key.get(job_id) in TOKEN_BEARING]
        if token_unknown:
            found.append(f"token-bearing jobs dead-lettered as unknown outcomes: {token_unknown[:5]}")
        return found

    def line(self) -> str:
        dups = ", ".join(f"{key.split('.')[0]} {count}" for key, count in self.duplicate_starts.items() if count)
        return (
            f"[{self.fault}] published {self.published} (+{self.indeterminate} indeterminate), lost {len(self.lost)}, "
            f"unexpected {len(self.unexpected)}, duplicated results {self.duplicated_results}, duplicated dead "
            f"letters {self.duplicated_dead_letters}, token-less jobs started twice: {dups or 'none'}, dead letters "
            f"{dict(self.dead_by_category) or 'none'}, outcomes {dict(self.outcomes)}, AWS calls {self.aws_calls}, "
            f"{self.elapsed_s:.0f}s" + "".join(f"; {note}" for note in self.notes)
        )


def analyse(
    fault: str,
    publisher: LoadPublisher,
    outcomes: Outcomes,
    calls: Iterable[Mapping[str, Any]],
    *,
    allowed_categories: Iterable[str] = (),
    elapsed_s: float,
) -> FaultReport:
    """Compare what was confirmed with what came out, and what AWS was asked to start."""
    confirmed = publisher.confirmed
    seen = outcomes.ids()
    job_of_marker = {marker(publisher.routing_key[job_id], job_id): job_id for job_id in publisher.routing_key}
    starts: Counter[str] = Counter()
    calls_of: dict[str, list[str]] = {}
    answered: set[str] = set()
    token_starts: Counter[str] = Counter()
    call_count = 0
    for call in calls:
        call_count += 1
        job_id = job_of_marker.get(call_marker(call) or "")
        if job_id is not None:
            calls_of.setdefault(job_id, []).append(f"{call['received_at']} {call['outcome']}")
        if call["new_job"]:
            if job_id is not None:
                starts[job_id] += 1
            if call["routing_key"] in TOKEN_BEARING and call.get("idempotency_token"):
                token_starts[str(call["idempotency_token"])] += 1
        if job_id is not None and call["outcome"] in ANSWERED:
            answered.add(job_id)
    duplicate_starts = {
        key: sum(1 for job_id, count in starts.items() if count > 1 and publisher.routing_key[job_id] == key)
        for key in ROUTING_KEYS
        if key not in TOKEN_BEARING
    }
    succeeded = {
        job_id
        for job_id, results in outcomes.results.items()
        if any(result.get("outcome") == "succeeded" for result in results)
    }
    categories = outcomes.categories()
    allowed = set(allowed_categories)
    outcome_counts: Counter[str] = Counter()
    failures: dict[str, str] = {}
    for job_id in confirmed:
        results = outcomes.results.get(job_id) or []
        outcome_counts[results[0].get("outcome", "?") if results else "none"] += 1
        if results and results[0].get("outcome") == "failed":
            failures[job_id] = str((results[0].get("error") or {}).get("category"))
    return FaultReport(
        fault=fault,
        published=len(confirmed),
        indeterminate=len(publisher.indeterminate),
        lost=sorted(confirmed - seen),
        unexpected=sorted(seen - confirmed - publisher.indeterminate),
        duplicated_results=sum(1 for results in outcomes.results.values() if len(results) > 1),
        duplicated_dead_letters=sum(1 for letters in outcomes.dead.values() if len(letters) > 1),
        duplicate_starts=duplicate_starts,
        token_reuse={token: count for token, count in token_starts.items() if count > 1},
        token_jobs_started_twice=sorted(
            job_id for job_id, count in starts.items() if count > 1 and publisher.routing_key[job_id] in TOKEN_BEARING
        ),
        phantom_successes=sorted(succeeded - answered),
        dead_by_category=categories,
        unexpected_categories=Counter({c: n for c, n in categories.items() if c not in allowed}),
        outcomes=outcome_counts,
        failures=failures,
        aws_calls=call_count,
        elapsed_s=elapsed_s,
        routing_key=publisher.routing_key,
        notes=[
            f"{job_id} started {count} times: {', '.join(calls_of[job_id])}"
            for job_id, count in sorted(starts.items())
            if count > 1
        ][:3],
    )


class FaultRun:
    """One fault run: its publisher, the emulator whose call log it audits, and its report."""

    def __init__(
        self,
        fault: str,
        size: int,
        *,
        amqp_url: str,
        prefix: str,
        emulator: RunningEmulator,
        summary: list[FaultReport],
    ) -> None:
        self.fault = fault
        self.size = size
        self.amqp_url = amqp_url
        self.prefix = prefix
        self.emulator = emulator
        self.summary = summary
        self.publisher = LoadPublisher(amqp_url, f"{prefix}.jobs", uuid.uuid4().hex[:6], size)
        self._publishing: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()

    @property
    def patience_s(self) -> float:
        """How long to wait for anything that scales with the run's size, on a busy machine."""
        return 120 + self.size / 20

    def start_publishing(self) -> None:
        """Publish the run's jobs in the background, through whatever fault comes."""
        self._publishing = asyncio.ensure_future(self.publisher.run(deadline_s=self.patience_s))

    async def publish_one(self, routing_key: str, job_id: str) -> None:
        """Publish one more job of the test's own (confirmed), counted like the others."""
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(f"{self.prefix}.jobs", ensure=False)
            await LoadPublisher._publish_one(exchange, routing_key, job_id)
        self.publisher.routing_key[job_id] = routing_key
        self.publisher.confirmed.add(job_id)

    def calls(self) -> list[Mapping[str, Any]]:
        """The emulator's call log (the fixture keeps all of it)."""
        return self.emulator.state.calls.to_json()

    async def wait_for_calls(self, count: int) -> None:
        """Wait until AWS saw `count` calls: the load is under way."""
        state = self.emulator.state
        try:
            async with asyncio.timeout(self.patience_s):
                while state.calls.total < count:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            msg = f"AWS saw {state.calls.total} calls, never {count}: the worker stalled"
            raise AssertionError(msg) from None

    async def published(self) -> None:
        """Wait until every job is confirmed."""
        if self._publishing is not None:
            await self._publishing

    async def finish(self, *, allowed_categories: Iterable[str] = ()) -> FaultReport:
        """Wait for every confirmed job's outcome (or give up), then audit and record the run."""
        await self.published()
        reader = OutcomeReader(self.amqp_url, results_and_dead(self.prefix))
        async with reader.reading():
            await reader.wait_until(lambda seen: self.publisher.confirmed <= seen.ids(), timeout_s=self.patience_s)
        return self.report(reader.outcomes, allowed_categories=allowed_categories)

    def report(self, outcomes: Outcomes, *, allowed_categories: Iterable[str] = ()) -> FaultReport:
        """Audit the outcomes against the confirmed jobs and the call log; print and record the report."""
        report = analyse(
            self.fault,
            self.publisher,
            outcomes,
            self.calls(),
            allowed_categories=allowed_categories,
            elapsed_s=time.monotonic() - self._started_at,
        )
        self.summary.append(report)
        print(report.line())  # noqa: T201 - the run's figures, in the test's captured output
        return report


def rabbitmqctl(*args: str, timeout_s: float = 120) -> None:
    """Run `rabbitmqctl` (blocking: call it through `asyncio.to_thread`)."""
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None, "rabbitmqctl is not on PATH"
    subprocess.run([ctl, *args], check=True, capture_output=True, timeout=timeout_s)


def restart_broker_app(down_s: float) -> None:
    """`stop_app`, a short pause, then always `start_app` and `await_startup`.

    Blocking on purpose: run in a thread, which a cancelled test cannot interrupt, so the broker
    every user of this machine shares is always started again.
    """
    try:
        rabbitmqctl("stop_app")
        time.sleep(down_s)
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup", "--timeout", "120")
