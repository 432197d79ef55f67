"""A typed async client for publishers: submit jobs, optionally await their results.

    async with DispatcherClient("amqp://guest:guest@localhost:5672/") as client:
        job_id = await client.submit(JobRequest(service="m2", operation="StartBatchJob", params={...}))
        result = await client.submit_and_wait(JobRequest(...), timeout_s=60)
        followed = await client.submit_and_follow(JobRequest(...), on_status=print)  # to the AWS job's end

Jobs are validated with the same models the worker uses before they are published, and every
publish is confirmed by the broker (or raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import aio_pika
import orjson
from aio_pika import DeliveryMode, Message
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dispatcher.envelope import Decoder, FollowRequest, describe_errors
from dispatcher.errors import InvalidJob
from dispatcher.publisher import publish_confirmed
from dispatcher.registry import Registry, default_registry

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
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
    follow: bool | FollowRequest | None = None

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


@dataclass(frozen=True, slots=True)
class FollowedJob:
    """What `submit_and_follow` waited for: the start result, and the completion if the job started."""

    result: dict[str, Any]
    completion: dict[str, Any] | None

    @property
    def succeeded(self) -> bool:
        """The job started and AWS reported that it succeeded."""
        return self.completion is not None and self.completion.get("job_outcome") == "succeeded"


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
        max_message_bytes: int = 1024 * 1024,  # the workers' default
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
        self._inboxes: dict[str, asyncio.Queue[dict[str, Any]]] = {}

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
        _positive(timeout_s)
        async with self._inbox(job) as inbox:
            await self._submit_for_replies(job)
            async with self._deadline(job, timeout_s, "result"):
                return await _next(inbox, phase=None)

    async def submit_and_follow(
        self,
        job: JobRequest,
        *,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> FollowedJob:
        """Publish a job asking to be followed and wait until AWS reports its end (contract section 8).

        `on_status` gets each progress message (the job's AWS status changed). Without `timeout_s`
        this waits as long as the follow does (its own `timeout_s`, else the worker's default).
        Raises `TimeoutError` naming the job when `timeout_s` passes first.
        """
        if job.follow is False:
            msg = "submit_and_follow needs a job that may be followed, not follow=false"
            raise ValueError(msg)
        if timeout_s is not None:
            _positive(timeout_s)
        asked = job.follow if isinstance(job.follow, FollowRequest) else FollowRequest()
        if on_status is not None and asked.progress is None:
            asked = asked.model_copy(update={"progress": True})
        job = job.model_copy(update={"follow": asked})
        async with self._inbox(job) as inbox:
            await self._submit_for_replies(job)
            async with self._deadline(job, timeout_s, "completion"):
                result = await _next(inbox, phase=None)
                if result.get("outcome") != "succeeded" or not result.get("following"):
                    return FollowedJob(result, None)
                while (message := await _next(inbox, phase=("progress", "finished")))["phase"] == "progress":
                    if on_status is not None:
                        on_status(message)
                return FollowedJob(result, message)

    @contextlib.asynccontextmanager
    async def _inbox(self, job: JobRequest) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._inboxes[job.job_id] = inbox
        try:
            yield inbox
        finally:
            self._inboxes.pop(job.job_id, None)

    @contextlib.asynccontextmanager
    async def _deadline(self, job: JobRequest, timeout_s: float | None, waiting_for: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(timeout_s):
                yield
        except TimeoutError:
            msg = (
                f"no {waiting_for} for job {job.job_id} ({job.routing_key}) within {timeout_s:g} s; it was "
                "published and may still run: its results will be in dispatcher.results"
            )
            raise TimeoutError(msg) from None

    async def _submit_for_replies(self, job: JobRequest) -> None:
        replies = await self._reply_queue()
        await self.submit(job, reply_to=replies.name, correlation_id=job.job_id)

    async def _reply_queue(self) -> AbstractQueue:
        if self._replies is None:
            channel = self._require_channel()
            self._replies = await channel.declare_queue(exclusive=True, auto_delete=True)
            await self._replies.consume(self._on_reply, no_ack=True)
        return self._replies

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        inbox = self._inboxes.get(message.correlation_id or "")
        if inbox is not None:
            inbox.put_nowait(orjson.loads(message.body))

    def _require_channel(self) -> AbstractChannel:
        if self._channel is None:
            msg = "use `async with DispatcherClient(...)` before submitting"
            raise RuntimeError(msg)
        return self._channel


def _positive(timeout_s: float) -> None:
    if timeout_s <= 0:
        msg = f"timeout_s must be positive, got {timeout_s:g}"
        raise ValueError(msg)


async def _next(inbox: asyncio.Queue[dict[str, Any]], phase: tuple[str, ...] | None) -> dict[str, Any]:
    """The next reply of a phase (None: a start result, which has none); others are skipped.

    Results are delivered at least once: a second copy of one already read is skipped the same way.
    """
    while True:
        message = await inbox.get()
        wanted = message.get("phase") is None if phase is None else message.get("phase") in phase
        if wanted:
            return message
