"""AWS stage: one aiobotocore client per (service, region), and a call with a total deadline."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import xform_name
from botocore.context import get_context

from dispatcher.aws_timestamps import use_fast_timestamps
from dispatcher.redact import ResponseRedactor

if TYPE_CHECKING:
    from collections.abc import Iterable

    from botocore.model import OperationModel
    from botocore.useragent import UserAgentString

    from dispatcher.envelope import Job


@dataclass(frozen=True, slots=True)
class AwsAnswer:
    """A successful call: the response without `ResponseMetadata`, and how long it took.

    `response` has every member the model marks `sensitive` replaced with `redact.REDACTED`: it is
    what results echo and the start ledger stores, and neither may hold such values.
    """

    response: dict[str, Any]
    request_id: str | None
    http_status: int | None
    duration_s: float


class AwsCaller(Protocol):
    """What the pipeline and the follower need of AWS: one call, and botocore's model to classify its failure."""

    async def start(self, job: Job) -> AwsAnswer:
        """Call AWS once to start the job."""
        ...

    async def call(self, service: str, operation: str, region: str, request: dict[str, Any]) -> AwsAnswer:
        """Call an operation once."""
        ...

    def operation_model(self, service: str, operation: str, region: str) -> OperationModel:
        """botocore's model of an operation."""
        ...


class AwsClients:
    """Owns every client for the worker's lifetime; created at start-up, closed at shutdown.

    Credentials, region and endpoints come from the standard AWS chain (`AWS_ENDPOINT_URL`,
    `AWS_ENDPOINT_URL_<SERVICE>`, IRSA, Pod Identity, ...). botocore's own retries are off:
    the dispatcher's policy is the only one that decides when AWS is called again.
    """

    def __init__(self, *, pool_size: int, connect_timeout_s: float, call_timeout_s: float) -> None:
        self._config = AioConfig(
            retries={"total_max_attempts": 1},
            max_pool_connections=pool_size,
            connect_timeout=connect_timeout_s,
            read_timeout=call_timeout_s,
        )
        self._call_timeout_s = call_timeout_s
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}
        self._creating = asyncio.Lock()
        self._session = get_session()
        use_fast_timestamps(self._session)
        self._redactors: dict[tuple[str, str], ResponseRedactor | None] = {}

    async def open(self, services: Iterable[str], regions: Iterable[str]) -> None:
        """Create the clients of the regions known at start-up: the first one loads each service model."""
        for region in regions:
            for service in services:
                await self._client(service, region)

    async def _client(self, service: str, region: str) -> Any:  # noqa: ANN401 - an aiobotocore client
        """The client of a region, made on first use and kept.

        After the start-up clients have loaded the service models, a client for another region
        takes a few milliseconds of the loop (measured 2-5 ms), once per service and region.
        """
        key = (service, region)
        if key not in self._clients:
            async with self._creating:
                if key not in self._clients:
                    client = self._session.create_client(service, region_name=region, config=self._config)
                    self._clients[key] = await self._stack.enter_async_context(client)
                    remember_user_agents(self._clients[key]._user_agent_creator)  # noqa: SLF001 - see there
        return self._clients[key]

    async def close(self) -> None:
        """Close every client and its connection pool."""
        await self._stack.aclose()
        self._clients.clear()

    def operation_model(self, service: str, operation: str, region: str) -> OperationModel:
        """botocore's model of an operation, for error classification (every region has the same)."""
        client = self._clients.get((service, region)) or next(
            client for (name, _), client in self._clients.items() if name == service
        )
        return client.meta.service_model.operation_model(operation)

    async def start(self, job: Job) -> AwsAnswer:
        """Call AWS once to start the job."""
        return await self.call(job.operation.service, job.operation.name, job.region, job.request)

    async def call(self, service: str, operation: str, region: str, request: dict[str, Any]) -> AwsAnswer:
        """Call an operation once, bounded by a total deadline (botocore has none)."""
        client = await self._client(service, region)
        method = getattr(client, xform_name(operation))
        started = time.perf_counter()
        async with asyncio.timeout(self._call_timeout_s):
            response: dict[str, Any] = await method(**request)
        duration_s = time.perf_counter() - started
        meta = response.pop("ResponseMetadata", {})
        redactor = self._redactor(client, service, operation)
        return AwsAnswer(
            response=response if redactor is None else redactor.redact(response),
            request_id=meta.get("RequestId"),
            http_status=meta.get("HTTPStatusCode"),
            duration_s=duration_s,
        )

    def _redactor(self, client: Any, service: str, operation: str) -> ResponseRedactor | None:  # noqa: ANN401 - an aiobotocore client
        """The operation's redactor, built from its output shape on its first call; None: nothing to redact."""
        key = (service, operation)
        if key not in self._redactors:
            model = client.meta.service_model.operation_model(operation)
            self._redactors[key] = ResponseRedactor.for_shape(model.output_shape)
        return self._redactors[key]


def remember_user_agents(creator: UserAgentString) -> None:
    """Build a client's User-Agent once per feature set instead of twice per call.

    botocore rebuilds the header from scratch for every request (about 4% of the worker's CPU),
    yet only its feature list (`m/...`: the client's features and those the call registered in
    its context) can change during a client's life; everything else is fixed when the client is
    made. tests/unit/test_aws_user_agent.py checks the remembered strings equal botocore's own.
    """
    build = creator.to_string
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(creator._client_features or ())  # noqa: SLF001 - what botocore reads
        if context is not None and context.features:
            features |= context.features
        user_agent = built.get(features)
        if user_agent is None:
            user_agent = built[features] = build()
        return user_agent

    creator.to_string = to_string
