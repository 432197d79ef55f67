"""The one place that settles deliveries: publish what the outcome needs, confirmed, then ack.

Nothing else in the dispatcher acks, nacks or rejects. A publish that is not confirmed leaves
the delivery unacked (requeued), so the job is redelivered rather than lost; a settlement on a
channel that is gone is left to the broker, which redelivers it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aio_pika import DeliveryMode, Message
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, MessageProcessError

from dispatcher import metrics
from dispatcher.outcome import DeadLetter, Requeue, RetryLater, Succeeded
from dispatcher.publisher import PublishFailed, publish_confirmed
from dispatcher.results import Result, rfc3339

if TYPE_CHECKING:
    from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

    from dispatcher.errors import JobError
    from dispatcher.outcome import Outcome

log = structlog.get_logger("dispatcher.settle")

DISPATCHER_HEADER_PREFIX = "x-dispatcher-"
REPLAYS_HEADER = "x-dispatcher-replays"
SETTLE_ERRORS = (ChannelInvalidStateError, AMQPError, MessageProcessError, ConnectionError, RuntimeError)


@dataclass(frozen=True, slots=True)
class Exchanges:
    """The exchanges of one broker session that outcomes are published to."""

    default: AbstractExchange
    results: AbstractExchange
    dead: AbstractExchange
    retry: dict[float, AbstractExchange]


class Settler:
    """Turns an `Outcome` into confirmed publishes and exactly one ack or nack."""

    def __init__(self, channels: list[Exchanges], *, publish_timeout_s: float, results_queue_enabled: bool) -> None:
        # Publishes on one channel go one at a time (aiormq holds a lock per frame written), so
        # outcomes are spread over a few channels; each settlement stays on one of them.
        self._channels = itertools.cycle(channels)
        self._timeout_s = publish_timeout_s
        self._results_mandatory = results_queue_enabled

    async def settle(self, message: AbstractIncomingMessage, outcome: Outcome, label: str) -> bool:
        """Act on the outcome; True if the delivery was acked (the job is done here)."""
        exchanges = next(self._channels)
        try:
            if isinstance(outcome, Requeue):
                await _nack(message, label)
                return False
            if isinstance(outcome, RetryLater):
                await self._publish_retry(exchanges, message, outcome)
                metrics.RETRIES.labels(label).inc()
            elif isinstance(outcome, DeadLetter):
                await self._publish_dead_letter(exchanges, message, outcome)
                await self._publish_result(exchanges, message, outcome.result)
                metrics.DEAD_LETTERS.labels(label, str(outcome.error.category)).inc()
            elif isinstance(outcome, Succeeded):
                await self._publish_result(exchanges, message, outcome.result)
        except PublishFailed as exc:
            log.warning("publish_failed_requeueing", error=str(exc))
            await _nack(message, label)
            return False
        return await _ack(message, label)

    async def _publish_result(self, exchanges: Exchanges, incoming: AbstractIncomingMessage, result: Result) -> None:
        body = result.to_json()
        message = Message(
            body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=result.job_id,
            correlation_id=incoming.correlation_id or incoming.message_id or result.job_id,
            headers=_trace_headers(incoming.headers),
            timestamp=result.finished_at,
        )
        routing_key = result.routing_key(incoming.routing_key or "unknown")
        await publish_confirmed(
            exchanges.results,
            message,
            routing_key,
            timeout_s=self._timeout_s,
            mandatory=self._results_mandatory,
        )
        if incoming.reply_to:
            try:
                await publish_confirmed(exchanges.default, message, incoming.reply_to, timeout_s=self._timeout_s)
            except PublishFailed as exc:
                # The result is safe in dispatcher.results; a publisher that went away must not block the job.
                log.warning("reply_to_unreachable", reply_to=incoming.reply_to, error=str(exc))

    async def _publish_dead_letter(
        self, exchanges: Exchanges, incoming: AbstractIncomingMessage, outcome: DeadLetter
    ) -> None:
        headers = _without_dispatcher_headers(incoming.headers)
        headers.update(dead_letter_headers(outcome.error, outcome.attempts, incoming.routing_key or ""))
        await publish_confirmed(
            exchanges.dead,
            _copy(incoming, headers),
            incoming.routing_key or "",
            timeout_s=self._timeout_s,
        )

    async def _publish_retry(
        self, exchanges: Exchanges, incoming: AbstractIncomingMessage, outcome: RetryLater
    ) -> None:
        headers = _without_dispatcher_headers(incoming.headers)
        headers.update(outcome.state.to_headers())
        exchange = exchanges.retry[outcome.delay_s]
        await publish_confirmed(
            exchange, _copy(incoming, headers), incoming.routing_key or "", timeout_s=self._timeout_s
        )


def dead_letter_headers(error: JobError, attempts: int, routing_key: str) -> dict[str, Any]:
    """The `x-dispatcher-*` headers of contract section 4."""
    headers: dict[str, Any] = {
        "x-dispatcher-category": str(error.category),
        "x-dispatcher-error-code": error.code,
        "x-dispatcher-error-message": error.message,
        "x-dispatcher-attempts": attempts,
        "x-dispatcher-dead-lettered-at": rfc3339(datetime.now(UTC)),
        "x-dispatcher-original-routing-key": routing_key,
    }
    if error.aws_request_id:
        headers["x-dispatcher-aws-request-id"] = error.aws_request_id
    if error.http_status:
        headers["x-dispatcher-http-status"] = error.http_status
    return headers


def _without_dispatcher_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """The headers minus the dispatcher's own, except the replay count, which a job keeps for good."""
    return {
        k: v for k, v in (headers or {}).items() if not k.startswith(DISPATCHER_HEADER_PREFIX) or k == REPLAYS_HEADER
    }


def _trace_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    traceparent = (headers or {}).get("traceparent")
    return {"traceparent": traceparent} if traceparent else {}


def _copy(incoming: AbstractIncomingMessage, headers: dict[str, Any]) -> Message:
    """The same body byte for byte and the same properties, with new headers.

    `expiration` is dropped (a dead letter must not expire) and `user_id` too (the broker
    checks it against the connection's user, and a mismatch closes the channel).
    """
    return Message(
        incoming.body,
        headers=headers,
        content_type=incoming.content_type,
        content_encoding=incoming.content_encoding,
        delivery_mode=DeliveryMode.PERSISTENT,
        priority=incoming.priority,
        correlation_id=incoming.correlation_id,
        reply_to=incoming.reply_to,
        message_id=incoming.message_id,
        timestamp=incoming.timestamp,
        type=incoming.type,
        app_id=incoming.app_id,
    )


async def _ack(message: AbstractIncomingMessage, label: str) -> bool:
    try:
        await message.ack()
    except SETTLE_ERRORS as exc:
        metrics.ACKS_LOST.labels(label).inc()
        log.warning("ack_lost_will_be_redelivered", error=repr(exc))
        return False
    return True


async def _nack(message: AbstractIncomingMessage, label: str) -> None:
    try:
        await message.nack(requeue=True)
    except SETTLE_ERRORS as exc:
        metrics.ACKS_LOST.labels(label).inc()
        log.warning("nack_lost_will_be_redelivered", error=repr(exc))
