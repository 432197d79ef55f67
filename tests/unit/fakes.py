"""Small fakes of the protocols the decision modules take: AWS, a limiter, a delivery and an exchange.

They stand in for the broker and AWS only; every decision under test runs in the real `Pipeline`,
`Settler` and `Follower`. AWS errors are real botocore `ClientError` values, so classification
runs botocore's own retry knowledge on them.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import botocore.session
from aio_pika.exceptions import ChannelInvalidStateError, DeliveryError, PublishError
from botocore.exceptions import ClientError
from pamqp.commands import Basic

from dispatcher.aws import AwsAnswer
from dispatcher.ratelimit import Grant

if TYPE_CHECKING:
    from botocore.model import OperationModel

    from dispatcher.envelope import Job


@functools.cache
def operation_model(service: str, operation: str) -> OperationModel:
    """botocore's model of an operation, loaded once per test run."""
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


def client_error(
    code: str,
    status: int,
    operation: str = "StartBatchJob",
    *,
    message: str = "AWS said no",
    request_id: str = "req-1",
    retry_after: str | None = None,
) -> ClientError:
    """A `ClientError` shaped as botocore raises it from a parsed error response."""
    headers = {"x-amzn-requestid": request_id}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"RequestId": request_id, "HTTPStatusCode": status, "HTTPHeaders": headers},
    }
    return ClientError(response, operation)


def answer(response: dict[str, Any] | None = None, request_id: str = "req-ok") -> AwsAnswer:
    """A successful AWS call."""
    return AwsAnswer(response=response or {}, request_id=request_id, http_status=200, duration_s=0.001)


@dataclass
class ScriptedAws:
    """An `AwsCaller` that answers each call with the next step of its script.

    A step is an `AwsAnswer` to return, an exception to raise, or an async callable awaited for
    its answer (to block, or to do something mid-call). Calls past the script fail the test.
    """

    script: list[Any]
    calls: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    async def start(self, job: Job) -> AwsAnswer:
        """Call AWS once to start the job."""
        return await self.call(job.operation.service, job.operation.name, job.region, job.request)

    async def call(self, service: str, operation: str, region: str, request: dict[str, Any]) -> AwsAnswer:
        """The next scripted step."""
        self.calls.append((service, operation, region, request))
        assert self.script, f"AWS called more often than scripted: {operation} call {len(self.calls)}"
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return await step()
        return step

    def operation_model(self, service: str, operation: str, region: str) -> OperationModel:
        """botocore's real model of the operation."""
        return operation_model(service, operation)


@dataclass
class FakeLimiter:
    """A `Limiter` whose waits are scripted in seconds; records what the caller told it.

    `waits` gives the seconds of each `acquire` in turn (then 0); `block` makes every acquire
    wait until cancelled, like a bucket that never refills.
    """

    waits: list[float] = field(default_factory=list)
    block: bool = False
    rate: float = 10.0
    acquired: int = 0
    successes: int = 0
    throttles: list[tuple[Grant, float | None]] = field(default_factory=list)
    waiting: asyncio.Event = field(default_factory=asyncio.Event)

    async def acquire(self) -> Grant:
        """Wait as scripted, then grant a token."""
        self.waiting.set()
        if self.block:
            await asyncio.Event().wait()
        wait_s = self.waits.pop(0) if self.waits else 0.0
        await asyncio.sleep(wait_s)
        self.acquired += 1
        return Grant(float(self.acquired))

    def on_success(self) -> None:
        """Count a call that went through."""
        self.successes += 1

    async def on_throttle(self, grant: Grant, retry_after_s: float | None = None) -> None:
        """Record a throttle and the Retry-After it carried."""
        self.throttles.append((grant, retry_after_s))


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeIncoming:
    """The delivery a settler reads and settles: properties, and `ack`/`nack` that record or fail."""

    body: bytes = b"{}"
    routing_key: str | None = "m2.StartBatchJob"
    message_id: str | None = "job-1"
    reply_to: str | None = None
    correlation_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = "application/json"
    content_encoding: str | None = None
    priority: int | None = None
    timestamp: Any = None
    type: str | None = None
    app_id: str | None = None
    exchange: str | None = "t.jobs"
    expiration: Any = None
    user_id: str | None = None
    channel_gone: bool = False
    settled: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        """Ack, or fail as a closed channel does."""
        if self.channel_gone:
            raise ChannelInvalidStateError("channel closed")
        self.settled.append("ack")

    async def nack(self, *, requeue: bool = True) -> None:
        """Nack, or fail as a closed channel does."""
        if self.channel_gone:
            raise ChannelInvalidStateError("channel closed")
        self.settled.append(f"nack(requeue={requeue})")


def nacked() -> DeliveryError:
    """What aiormq raises when the broker nacks a publish."""
    return DeliveryError(None, Basic.Nack(delivery_tag=1))


def returned(routing_key: str) -> PublishError:
    """What aiormq raises when a mandatory publish comes back unroutable."""
    frame = Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="", routing_key=routing_key)
    return PublishError(SimpleNamespace(delivery=frame), frame)


@dataclass
class Published:
    """One confirmed publish."""

    exchange: str
    message: Any
    routing_key: str
    mandatory: bool


@dataclass
class FakeExchange:
    """An exchange whose publishes are confirmed into `log`, or fail with `fail`, or never confirm."""

    name: str
    log: list[Published]
    fail: BaseException | None = None
    hang: bool = False
    fail_times: int = -1  # how many publishes fail before they succeed; -1: all of them

    async def publish(self, message: Any, routing_key: str, *, mandatory: bool = True) -> None:
        """Confirm the publish, or fail it as scripted."""
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None and self.fail_times != 0:
            self.fail_times -= 1
            raise self.fail
        self.log.append(Published(self.name, message, routing_key, mandatory))
