"""The worker: one broker session at a time, a consumer per operation, a clean drain on stop.

The broker connection is supervised here rather than left to a robust connection: when it
drops, the whole session (channels, exchanges, consumers) is rebuilt with backoff. Jobs still
in flight from the lost session finish their AWS call; their settlement fails on the dead
channel and the broker redelivers them, which the start ledger and idempotency tokens absorb.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aio_pika
import structlog

from dispatcher import amqp_values, metrics
from dispatcher import headers as names
from dispatcher.accounting import account
from dispatcher.outcome import Requeue
from dispatcher.pipeline import Arrival
from dispatcher.refusals import broker_refusal
from dispatcher.retry import RetryState
from dispatcher.settle import Exchanges, Settler
from dispatcher.topology import declare_for, poll_schedule

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

    from dispatcher.outcome import Outcome
    from dispatcher.wiring import Parts

log = structlog.get_logger("dispatcher.worker")

TRIAGE_LABEL = "triage"
FOLLOW_LABEL_SUFFIX = ".follow"  # `<service>.<Operation>.follow`: the polls of one operation


@dataclass(slots=True)
class Session:
    """One broker connection and what hangs off it."""

    connection: AbstractConnection
    consume_channel: AbstractChannel
    follow_channel: AbstractChannel
    settler: Settler
    consumers: list[tuple[AbstractQueue, str]]


class Worker:
    """Consumes every operation queue until stopped, then drains within the grace period."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.registry = parts.registry
        self.names = parts.names
        self._followed = tuple(op.routing_key for op in parts.registry if op.companion is not None)
        self._stopping = asyncio.Event()
        self._draining = parts.draining
        self._session: Session | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Start-up done (AWS clients open), consuming, and run() returned: for the probes, tests, tools.
        self.started = asyncio.Event()
        self.consuming = asyncio.Event()
        self.stopped = asyncio.Event()
        self.aws = parts.aws
        self.redis = parts.redis
        self.stamper = parts.stamper
        self.pipeline = parts.pipeline
        self.follower = parts.follower

    @property
    def ready(self) -> bool:
        """Consuming (AWS clients open, connected, topology declared, every consumer attached), not stopping."""
        return self.consuming.is_set() and not self._draining.is_set()

    def stop(self) -> None:
        """Begin the shutdown: stop taking jobs and drain (SIGTERM/SIGINT call this)."""
        if not self._stopping.is_set():
            log.info("stopping", in_flight=len(self._tasks), grace_s=self.settings.shutdown_grace_s)
        self._draining.set()
        self.pipeline.interrupt_waits()
        self.follower.interrupt_waits()
        self._stopping.set()

    async def run(self) -> None:
        """Serve until `stop()`, then finish what is in flight within the grace period."""
        metrics.RATE_LIMIT_SHARED.set(1 if self.redis else 0)
        await self.aws.open(self.registry.services, self.settings.enabled_regions or (self.settings.region,))
        # What start-up built (service models, clients) lives as long as the process: moved out of
        # the collector's reach, the first full collection no longer stalls the loop for ~0.4 s.
        gc.collect()
        gc.freeze()
        self.started.set()
        try:
            await self._supervise()
            await self._drain()
        finally:
            await self._close_session()
            await self.aws.close()
            if self.redis is not None:
                await self.redis.aclose()
            log.info("stopped", jobs_left_to_redelivery=len(self._tasks))
            self.stopped.set()

    async def _supervise(self) -> None:
        delay_s = 0.5
        connected_before = False
        while not self._stopping.is_set():
            closed = asyncio.get_running_loop().create_future()
            try:
                await self._open_session(closed)
            except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
                reason = broker_refusal(exc) or repr(exc)
                log.warning("broker_unavailable", error=reason, retry_in_s=round(delay_s, 1))
                await self._close_session()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay_s * random.uniform(0.5, 1.0))  # noqa: S311
                delay_s = min(delay_s * 2, self.settings.reconnect_max_delay_s)
                continue
            if connected_before:
                metrics.BROKER_RECONNECTS.inc()
            connected_before = True
            delay_s = 0.5
            log.info("consuming", queues=len(self._session.consumers) if self._session else 0)
            self.consuming.set()
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if closed.done():
                log.warning("broker_connection_lost", error=repr(closed.result()))
                await self._close_session()

    async def _open_session(self, closed: asyncio.Future[Any]) -> None:
        """Connect, declare, attach every consumer; `closed` resolves when any part of it is lost."""
        connection = await aio_pika.connect(
            self.settings.amqp_url.get_secret_value(),
            timeout=10,
            client_properties={"connection_name": "dispatcher"},
        )

        def on_close(_: object, exc: BaseException | None = None) -> None:
            if not closed.done():
                closed.set_result(exc)

        connection.close_callbacks.add(on_close)
        try:
            self._session = await self._attach(connection, on_close)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise

    async def _attach(self, connection: AbstractConnection, on_close: Any) -> Session:  # noqa: ANN401
        settings = self.settings
        publish_channels = [
            await connection.channel(publisher_confirms=True, on_return_raises=True)
            for _ in range(settings.publish_channels)
        ]
        await declare_for(publish_channels[0], settings, self.registry)
        settler = Settler(
            [await self._exchanges(channel) for channel in publish_channels],
            names=self.names,
            stamper=self.stamper,
            publish_timeout_s=settings.publish_timeout_s,
            results_queue_enabled=settings.results_queue_enabled,
            marks=self.parts.marks,
        )
        consume_channel = await connection.channel(publisher_confirms=False)
        await consume_channel.set_qos(prefetch_count=settings.concurrency)
        # Polls have a prefetch of their own: followed jobs never take the places of jobs to start.
        follow_channel = await connection.channel(publisher_confirms=False)
        await follow_channel.set_qos(prefetch_count=settings.follow_concurrency)
        # A channel the broker closes (a protocol error) ends the session like a lost connection.
        for channel in (*publish_channels, consume_channel, follow_channel):
            channel.close_callbacks.add(on_close)
        session = Session(connection, consume_channel, follow_channel, settler, [])
        for label in (*self.registry.routing_keys, TRIAGE_LABEL):
            name = self.names.triage if label == TRIAGE_LABEL else self.names.job_queue(label)
            queue = await consume_channel.get_queue(name, ensure=False)
            tag = await queue.consume(self._consumer(session, label))
            session.consumers.append((queue, tag))
        for routing_key in self._followed:
            queue = await follow_channel.get_queue(self.names.follow_queue(routing_key), ensure=False)
            tag = await queue.consume(self._consumer(session, routing_key + FOLLOW_LABEL_SUFFIX))
            session.consumers.append((queue, tag))
        metrics.CONSUMERS_ATTACHED.set(len(session.consumers))
        return session

    async def _exchanges(self, channel: AbstractChannel) -> Exchanges:
        return Exchanges(
            default=channel.default_exchange,
            results=await channel.get_exchange(self.names.results_exchange, ensure=False),
            dead=await channel.get_exchange(self.names.dead_exchange, ensure=False),
            retry={
                delay: await channel.get_exchange(self.names.retry_exchange(delay), ensure=False)
                for delay in self.settings.retry_delays
            },
            follow_wait={
                wait: await channel.get_exchange(self.names.follow_wait_exchange(wait), ensure=False)
                for wait in poll_schedule(self.settings).waits_s
            },
        )

    def _consumer(self, session: Session, label: str) -> Any:  # noqa: ANN401 - aio-pika's callback type
        async def on_message(message: AbstractIncomingMessage) -> None:
            # Our own task, not aiormq's: aiormq cancels its consumer tasks when the channel
            # closes, which would cut an AWS call mid-flight and leave its outcome unknown.
            task = asyncio.create_task(self._handle(session, message, label))
            self._tasks.add(task)
            task.add_done_callback(self._job_done)

        return on_message

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("job_task_failed", error=repr(task.exception()))

    async def _handle(self, session: Session, message: AbstractIncomingMessage, label: str) -> None:
        started_at = datetime.now(UTC)
        metrics.IN_FLIGHT.labels(label).inc()
        outcome: Outcome
        try:
            arrival = self._arrival(message, started_at, label)
            if label == TRIAGE_LABEL:
                outcome = self.pipeline.triage(arrival, dead_lettered=message.exchange == self.names.triage)
            elif label.endswith(FOLLOW_LABEL_SUFFIX):
                outcome = await self.follower.poll(arrival)
            else:
                outcome = await self.pipeline.run(arrival)
        except Exception:
            log.exception("job_crashed_requeueing")
            outcome = Requeue("the worker failed on this job; its delivery limit will dead-letter it")
        finally:
            metrics.IN_FLIGHT.labels(label).dec()
        settlement = await session.settler.settle(message, outcome)
        account(outcome, settlement, label, round((datetime.now(UTC) - started_at).total_seconds() * 1000, 1))

    def _arrival(self, message: AbstractIncomingMessage, received_at: datetime, label: str) -> Arrival:
        """What the pipeline reads of a delivery, with retry state only if a worker signed it."""
        headers: dict[str, object] = dict(message.headers or {})
        traceparent = amqp_values.traceparent(headers)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(operation=label, message_id=message.message_id)
        if traceparent:
            structlog.contextvars.bind_contextvars(traceparent=traceparent)
        signed = names.SIGNATURE in headers and self.stamper.verified(headers, message.body, message.message_id)
        return Arrival(
            body=message.body,
            routing_key=message.routing_key or "",
            message_id=message.message_id,
            headers=headers,
            received_at=received_at,
            state=RetryState.from_headers(headers) if signed else RetryState(),
            traceparent=traceparent,
            reply_to=amqp_values.optional_short_string(message.reply_to),
            correlation_id=amqp_values.optional_short_string(message.correlation_id),
        )

    async def _drain(self) -> None:
        """Stop consuming, then wait for in-flight jobs; what cannot finish is redelivered."""
        self._draining.set()
        session = self._session
        if session is not None:
            for queue, tag in session.consumers:
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
            metrics.CONSUMERS_ATTACHED.set(0)
        pending = set(self._tasks)
        if pending:
            log.info("draining", in_flight=len(pending), grace_s=self.settings.shutdown_grace_s)
            _, pending = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
        for task in pending:
            task.cancel()
        if pending:
            log.error("drain_timed_out_jobs_will_be_redelivered", jobs=len(pending))
            await asyncio.wait(pending, timeout=1)

    async def _close_session(self) -> None:
        session, self._session = self._session, None
        self.consuming.clear()
        metrics.CONSUMERS_ATTACHED.set(0)
        if session is not None:
            with contextlib.suppress(Exception):
                await session.connection.close()
