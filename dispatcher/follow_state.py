"""The follow message: everything a followed job needs between two polls, carried by the broker.

A followed job lives in no worker's memory: each poll reads this state from its delivery and
publishes the next one to a wait queue, signed like every other state the dispatcher acts on, so
a message a publisher wrote into the follow queues is never taken for one (`dispatcher.stamps`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dispatcher import headers as names
from dispatcher.results import to_json

if TYPE_CHECKING:
    from dispatcher.stamps import Stamper

FORMAT_VERSION = 1


class UnreadableFollow(Exception):
    """Raised for a follow message no worker signed, or one this version cannot read."""


class FollowState(BaseModel):
    """The body of a follow message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = FORMAT_VERSION
    job_id: str
    service: str
    operation: str
    region: str
    metadata: dict[str, str] = Field(default_factory=dict)
    aws_job: dict[str, str]
    started_at: datetime
    deadline: datetime
    progress: bool = False
    reply_to: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    polls: int = 0
    step: int = 0  # which of the poll delays comes next
    job_status: str | None = None
    describe: dict[str, Any] | None = None
    failures: int = 0  # refusals in a row (AccessDenied, ResourceNotFound, ...)
    last_error: dict[str, str] | None = None

    @property
    def routing_key(self) -> str:
        """`<service>.<Operation>`: routes the follow message to its operation's follow queue."""
        return f"{self.service}.{self.operation}"

    def body(self) -> bytes:
        """The message body; timestamps as RFC 3339."""
        return to_json(self.model_dump())

    def headers(self, stamper: Stamper) -> dict[str, Any]:
        """The signed headers that make a follow message one a worker wrote."""
        return stamper.sign({names.FOLLOW: FORMAT_VERSION}, self.body(), self.job_id)

    @classmethod
    def read(cls, body: bytes, headers: dict[str, Any], message_id: str | None, stamper: Stamper) -> FollowState:
        """The state of a delivery; raises `UnreadableFollow` unless a worker signed it."""
        if not stamper.verified(headers, body, message_id):
            msg = "a follow message without a valid x-dispatcher-signature: no worker wrote it"
            raise UnreadableFollow(msg)
        try:
            state = cls.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            msg = f"a signed follow message this version cannot read: {exc}"
            raise UnreadableFollow(msg) from None
        if state.job_id != message_id:
            msg = "a follow message whose message_id is not its job_id"
            raise UnreadableFollow(msg)
        return state
