"""The one place that settles deliveries: publish what the outcome needs, confirmed, then ack.

Nothing else in the dispatcher acks, nacks or rejects. A publish that is not confirmed leaves
the delivery unacked (requeued), so the job is redelivered rather than lost; a settlement on a
channel that is gone is left to the broker, which redelivers it.

Whatever a message carries, settlement does not raise: what is copied from the delivery is made
encodable first (`amqp_values`), and if building or publishing a copy still fails, the outcome is
settled once more with messages made only of the body and the dispatcher's own values.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aio_pika import DeliveryMode, Message
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, MessageProcessError

from dispatcher import amqp_values
from dispatcher import headers as names
from dispatcher.outcome import DeadLetter, Finished, PollLater, Requeue, RetryLater, Succeeded
from dispatcher.publisher import PublishFailed, publish_confirmed
from dispatcher.results import Completion, Result, rfc3339
from dispatcher.stamps import without_dispatcher_headers

if TYPE_CHECKING:
    from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

    from dispatcher.errors import JobError
    from dispatcher.follow import FollowMarks
    from dispatcher.follow_state import FollowState
    from dispatcher.outcome import Outcome
    from dispatcher.stamps import Stamper
    from dispatcher.topology import Names

log = structlog.get_logger("dispatcher.settle")

SETTLE_ERRORS = (ChannelInvalidStateError, AMQPError, MessageProcessError, ConnectionError, RuntimeError)


@dataclass(frozen=True, slots=True)
class Exchanges:
    """The exchanges of one broker session that outcomes are published to."""

    default: AbstractExchange
    results: AbstractExchange
    dead: AbstractExchange
    retry: dict[float, AbstractExchange]
    follow_wait: dict[float, AbstractExchange]


class Settler:
    """Turns an `Outcome` into confirmed publishes and exactly one ack or nack."""

    def __init__(
        self,
        channels: list[Exchanges],
        *,
        names: Names,
        stamper: Stamper,
        publish_timeout_s: float,
        results_queue_enabled: bool,
        marks: FollowMarks | None = None,
    ) -> None:
        # Publishes on one channel go one at a time (aiormq holds a lock per frame written), so
        # outcomes are spread over a few channels; each settlement stays on one of them.
        self._channels = itertools.cycle(channels)
        self._names = names
        self._stamper = stamper
        self._timeout_s = publish_timeout_s
        self._results_mandatory = results_queue_enabled
        self._marks = marks

    async def settle(self, message: AbstractIncomingMessage, outcome: Outcome) -> Settlement:
        """Act on the outcome and say what was done. Never raises."""
        exchanges = next(self._channels)
        if isinstance(outcome, Requeue):
            return Settlement(published=False, acked=False, ack_lost=not await _nack(message), requeued=outcome.reason)
        try:
            try:
                await self._publish(exchanges, _Copier(message, outcome), outcome)
            except PublishFailed:
                raise
            except Exception as exc:
                log.exception("settlement_failed_settling_a_safe_copy", error=repr(exc))
                await self._publish(exchanges, _Copier(message, outcome, safe_reason=repr(exc)), outcome)
        except PublishFailed as exc:
            reason = f"publish not confirmed: {exc}"
        except Exception as exc:
            log.exception("safe_copy_failed_requeueing")
            reason = f"even the safe copy failed: {exc!r}"
        else:
            if isinstance(outcome, Succeeded) and outcome.follow is not None and self._marks is not None:
                await self._marks.mark(outcome.follow.state.job_id)
            acked = await _ack(message)
            return Settlement(published=True, acked=acked, ack_lost=not acked)
        return Settlement(published=False, acked=False, ack_lost=not await _nack(message), requeued=reason)

    async def _publish(self, exchanges: Exchanges, copier: _Copier, outcome: Outcome) -> None:
        """Build every message first, so a copy that cannot be built fails before anything is sent."""
        for publish in self._publishes(exchanges, copier, outcome):
            try:
                await publish_confirmed(
                    publish.exchange,
                    publish.message,
                    publish.routing_key,
                    timeout_s=self._timeout_s,
                    mandatory=publish.mandatory,
                )
            except PublishFailed as exc:
                if not publish.is_reply:
                    raise
                # The result is safe in dispatcher.results; a publisher that went away must not block the job.
                log.warning("reply_to_unreachable", reply_to=publish.routing_key, error=str(exc))

    def _publishes(self, exchanges: Exchanges, copier: _Copier, outcome: Outcome) -> list[_Publish]:
        if isinstance(outcome, RetryLater):
            retry = copier.copy(outcome.state.to_headers(), self._stamper)
            return [_Publish(exchanges.retry[outcome.delay_s], retry, copier.routing_key)]
        if isinstance(outcome, DeadLetter):
            stamp = dead_letter_headers(outcome.error, outcome.attempts, copier.routing_key)
            dead = _Publish(exchanges.dead, copier.copy(stamp, self._stamper), copier.routing_key)
            if outcome.result is None:
                return [dead]
            return [dead, *self._result_publishes(exchanges, copier, outcome.result)]
        if isinstance(outcome, Succeeded):
            # The follow message first: a result whose chain was never published would promise a completion.
            chain = [] if outcome.follow is None else [self._follow_publish(exchanges, outcome.follow)]
            return [*chain, *self._result_publishes(exchanges, copier, outcome.result)]
        if isinstance(outcome, PollLater):
            progress = (
                []
                if outcome.progress is None
                else self._completion_publishes(exchanges, outcome.progress, outcome.state)
            )
            return [self._follow_publish(exchanges, outcome), *progress]
        if isinstance(outcome, Finished):
            return self._completion_publishes(exchanges, outcome.completion, outcome.state)
        return []

    def _follow_publish(self, exchanges: Exchanges, later: PollLater) -> _Publish:
        """The next follow message, signed, to the wait queue of its delay."""
        state = later.state
        message = Message(
            state.body(),
            headers=state.headers(self._stamper),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=state.job_id,
        )
        return _Publish(exchanges.follow_wait[later.delay_s], message, state.routing_key)

    def _completion_publishes(self, exchanges: Exchanges, completion: Completion, state: FollowState) -> list[_Publish]:
        """A completion or progress message (contract section 8), to the results and to `reply_to`."""
        message = Message(
            completion.to_json(),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=completion.job_id,
            correlation_id=state.correlation_id or completion.job_id,
            headers={"traceparent": completion.traceparent} if completion.traceparent else {},
            timestamp=completion.finished_at,
        )
        return self._publishes_to_readers(exchanges, message, completion.routing_key(), state.reply_to)

    def _result_publishes(self, exchanges: Exchanges, copier: _Copier, result: Result) -> list[_Publish]:
        message = copier.result(result)
        routing_key = result.routing_key(copier.routing_key or "unknown")
        return self._publishes_to_readers(exchanges, message, routing_key, copier.reply_to)

    def _publishes_to_readers(
        self, exchanges: Exchanges, message: Message, routing_key: str, reply_to: str | None
    ) -> list[_Publish]:
        """The results exchange, and the publisher's `reply_to` queue if it named one of its own."""
        publishes = [_Publish(exchanges.results, message, routing_key, mandatory=self._results_mandatory)]
        if reply_to is not None and self._names.owns(reply_to):
            # A reply into our own queues would turn a result into a job or a dead letter.
            log.warning("reply_to_is_a_dispatcher_queue_not_replying", reply_to=reply_to)
        elif reply_to is not None:
            publishes.append(_Publish(exchanges.default, message, reply_to, is_reply=True))
        return publishes


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling a delivery did: the outcome's messages published, and the delivery acked or handed back.

    `requeued` says why the delivery went back to the broker (it is redelivered); `ack_lost` that
    the channel was gone when it was acked or nacked (the broker redelivers it anyway).
    """

    published: bool
    acked: bool
    ack_lost: bool = False
    requeued: str | None = None


@dataclass(frozen=True, slots=True)
class _Publish:
    exchange: AbstractExchange
    message: Message
    routing_key: str
    mandatory: bool = True
    is_reply: bool = False


class _Copier:
    """Builds the messages a settlement publishes from a delivery, copying only what can be sent.

    With `safe_reason` (the last resort) nothing of the delivery is copied but its body and the
    dispatcher's own values, and the copy says why in `x-dispatcher-safe-copy`.
    """

    def __init__(self, incoming: AbstractIncomingMessage, outcome: Outcome, safe_reason: str | None = None) -> None:
        self._incoming = incoming
        self._safe_reason = safe_reason
        self.routing_key = amqp_values.short_string(incoming.routing_key or "")
        # A copy without a message_id would get a random one from aiormq: it takes the job's id.
        self.message_id = amqp_values.optional_short_string(incoming.message_id) or _job_id(outcome)
        self.reply_to = None if safe_reason else amqp_values.optional_short_string(incoming.reply_to)

    def result(self, result: Result) -> Message:
        """The result message of contract section 3."""
        incoming = self._incoming
        trace = None if self._safe_reason else amqp_values.traceparent(incoming.headers)
        correlation_id = None if self._safe_reason else amqp_values.optional_short_string(incoming.correlation_id)
        return Message(
            result.to_json(),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=amqp_values.optional_short_string(result.job_id),
            correlation_id=correlation_id or self.message_id or amqp_values.optional_short_string(result.job_id),
            headers={"traceparent": trace} if trace else {},
            timestamp=result.finished_at,
        )

    def copy(self, stamp: dict[str, Any], stamper: Stamper) -> Message:
        """The same body byte for byte and the same properties, with the dispatcher's signed headers.

        `expiration` is dropped (a dead letter must not expire) and `user_id` too (the broker
        checks it against the connection's user, and a mismatch closes the channel).
        """
        incoming = self._incoming
        if self._safe_reason:
            headers: dict[str, Any] = {names.SAFE_COPY: amqp_values.header_value(self._safe_reason), **stamp}
            return Message(
                incoming.body,
                headers=stamper.sign(headers, incoming.body, self.message_id),
                delivery_mode=DeliveryMode.PERSISTENT,
                message_id=self.message_id,
            )
        headers = {**amqp_values.headers(without_dispatcher_headers(incoming.headers)), **stamp}
        return Message(
            incoming.body,
            headers=stamper.sign(headers, incoming.body, self.message_id),
            content_type=amqp_values.optional_short_string(incoming.content_type),
            content_encoding=amqp_values.optional_short_string(incoming.content_encoding),
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=incoming.priority,
            correlation_id=amqp_values.optional_short_string(incoming.correlation_id),
            reply_to=self.reply_to,
            message_id=self.message_id,
            timestamp=incoming.timestamp,
            type=amqp_values.optional_short_string(incoming.type),
            app_id=amqp_values.optional_short_string(incoming.app_id),
        )


def dead_letter_headers(error: JobError, attempts: int, routing_key: str) -> dict[str, Any]:
    """The `x-dispatcher-*` headers of contract section 4."""
    headers: dict[str, Any] = {
        names.CATEGORY: str(error.category),
        names.ERROR_CODE: error.code,
        names.ERROR_MESSAGE: error.message,
        names.ATTEMPTS: attempts,
        names.DEAD_LETTERED_AT: rfc3339(datetime.now(UTC)),
        names.ORIGINAL_ROUTING_KEY: routing_key,
    }
    if error.aws_request_id:
        headers[names.AWS_REQUEST_ID] = error.aws_request_id
    if error.http_status:
        headers[names.HTTP_STATUS] = error.http_status
    return headers


def _job_id(outcome: Outcome) -> str | None:
    if isinstance(outcome, RetryLater):
        return outcome.job_id
    if isinstance(outcome, DeadLetter | Succeeded) and outcome.result is not None:
        return amqp_values.optional_short_string(outcome.result.job_id)
    return None


async def _ack(message: AbstractIncomingMessage) -> bool:
    """True if the ack went out; False when the channel is gone (the broker redelivers)."""
    try:
        await message.ack()
    except SETTLE_ERRORS:
        return False
    return True


async def _nack(message: AbstractIncomingMessage) -> bool:
    """True if the nack went out; False when the channel is gone (the broker redelivers)."""
    try:
        await message.nack(requeue=True)
    except SETTLE_ERRORS:
        return False
    return True
