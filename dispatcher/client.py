"""A typed async client for publishers: submit jobs, optionally await their results.

    async with DispatcherClient("amqp://guest:guest@localhost:5672/") as client:
        job_id = await client.submit(JobRequest(service="m2", operation="StartBatchJob", params={...}))
        result = await client.submit_and_wait(JobRequest(...), timeout_s=60)

Jobs are validated with the same models the worker uses before they are published, and every
publish is confirmed by the broker (or raises).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import aio_pika
import orjson
from aio_pika import DeliveryMode, Message
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dispatcher.envelope import Decoder, describe_errors
from dispatcher.errors import InvalidJob
from dispatcher.publisher import publish_confirmed
from dispatcher.registry import Registry, default_registry

if TYPE_CHECKING:
    from types import TracebackType

    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
    from pydantic import ModelWrapValidatorHandler


class JobRequest(BaseModel):
    """A job to submit; `job_id` is generated when not given (and returned by `submit`)."""

    model_config = ConfigDict(extra="forbid")

    service: str
    operation: str
    params: dict[str, Any]
    job_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    region: str | None = None
    not_after: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _as_job_error(cls, data: Any, handler: ModelWrapValidatorHandler[JobRequest]) -> JobRequest:  # noqa: ANN401
        """A bad request raises the documented `JobError` (`InvalidJobMessage`), not pydantic's error."""
        try:
            return handler(data)
        except ValidationError as exc:
            raise InvalidJob("InvalidJobMessage", describe_errors(exc.errors(include_input=False))) from None

    @property
    def routing_key(self) -> str:
        """`<service>.<Operation>`."""
        return f"{self.service}.{self.operation}"

    def body(self) -> bytes:
        """The job message body, exactly as the contract describes it."""
        # Python mode: an exact `InputPayload` number (an `orjson.Fragment`) is written as it came;
        # pydantic's JSON mode, for what orjson cannot write itself (a `Decimal`, say).
        try:
            return orjson.dumps(self.model_dump(exclude_none=True))
        except orjson.JSONEncodeError:
            return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


class DispatcherClient:
    """Publishes jobs to `dispatcher.jobs` with confirms; results come back through `reply_to`."""

    def __init__(
        self,
        amqp_url: str,
        *,
        jobs_exchange: str = "dispatcher.jobs",
        registry: Registry | None = None,
        publish_timeout_s: float = 10.0,
        validate: bool = True,
        max_message_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self._url = amqp_url
        self._jobs_exchange_name = jobs_exchange
        self._registry = registry or default_registry()
        self._timeout_s = publish_timeout_s
        self._validate = validate
        self._max_message_bytes = max_message_bytes
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._replies: AbstractQueue | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def __aenter__(self) -> Self:
        self._connection = await aio_pika.connect(self._url, timeout=10)
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    def check(self, job: JobRequest) -> None:
        """Validate the job as the worker will; raises `dispatcher.errors.JobError` if it would fail."""
        # Which regions a worker enables is its own configuration: any region passes here.
        region = job.region or "us-east-1"
        decoder = Decoder(self._registry, region, (region,), max_message_bytes=self._max_message_bytes)
        decoder.decode(job.body(), job.routing_key, None)

    async def submit(self, job: JobRequest, *, reply_to: str | None = None, correlation_id: str | None = None) -> str:
        """Publish one job (confirmed) and return its job_id."""
        if self._validate:
            self.check(job)
        channel = self._require_channel()
        exchange = await channel.get_exchange(self._jobs_exchange_name, ensure=False)
        message = Message(
            job.body(),
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=job.job_id,
            correlation_id=correlation_id or job.job_id,
            reply_to=reply_to,
        )
        await publish_confirmed(exchange, message, job.routing_key, timeout_s=self._timeout_s)
        return job.job_id

    async def submit_and_wait(self, job: JobRequest, *, timeout_s: float = 60.0) -> dict[str, Any]:
        """Publish a job and wait for its result message (succeeded or failed).

        Raises `TimeoutError` naming the job when no result came in `timeout_s`.
        """
        if timeout_s <= 0:
            msg = f"timeout_s must be positive, got {timeout_s:g}"
            raise ValueError(msg)
        replies = await self._reply_queue()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[job.job_id] = future
        try:
            await self.submit(job, reply_to=replies.name, correlation_id=job.job_id)
            try:
                async with asyncio.timeout(timeout_s):
                    return await future
            except TimeoutError:
                msg = (
                    f"no result for job {job.job_id} ({job.routing_key}) within {timeout_s:g} s; it was "
                    "published and may still run: its result will be in dispatcher.results"
                )
                raise TimeoutError(msg) from None
        finally:
            self._waiting.pop(job.job_id, None)

    async def _reply_queue(self) -> AbstractQueue:
        if self._replies is None:
            channel = self._require_channel()
            self._replies = await channel.declare_queue(exclusive=True, auto_delete=True)
            await self._replies.consume(self._on_reply, no_ack=True)
        return self._replies

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._waiting.get(message.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(orjson.loads(message.body))

    def _require_channel(self) -> AbstractChannel:
        if self._channel is None:
            msg = "use `async with DispatcherClient(...)` before submitting"
            raise RuntimeError(msg)
        return self._channel
