"""Dead letters the broker makes get the same headers as ours: unknown routing key, delivery limit, expiry.

Only headers are read for the category: whatever in the body kept crashing workers must not crash
this too. Nothing here raises, whatever a publisher put in the headers: the triage queue has no
delivery limit, so a message this could not handle would be redelivered forever.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from dispatcher.errors import Category, ExpiredJob, JobError

if TYPE_CHECKING:
    from collections.abc import Mapping

DELIVERY_LIMIT_REASON = "delivery_limit"
EXPIRED_REASON = "expired"
UNKNOWN_ROUTING_KEY_CODE = "UnknownRoutingKey"
# The contract's job_id (section 2); anything else in a bad body is not taken for one.
_JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class DeliveryLimitExceeded(JobError):
    """Raised for a job the broker dead-lettered after too many deliveries without a settlement."""

    category = Category.DELIVERY_LIMIT


class UnknownRoutingKey(JobError):
    """Raised for a job published with a routing key that no operation is bound to."""

    category = Category.UNROUTABLE


def triage(
    headers: dict[str, Any] | None, routing_key: str, job_queues: Mapping[str, str], *, dead_lettered: bool
) -> JobError:
    """Why the broker dead-lettered this message, read from its latest `x-death` entry.

    `dead_lettered` says the message came through the triage exchange, where only the broker's
    dead-lettering puts it; through the alternate exchange it carries only what its publisher
    wrote, `x-death` included, so it is unroutable whatever that says. `job_queues` maps each
    operation queue to its routing key; only an entry naming one of them is believed: there a
    delivery limit or the job's own AMQP `expiration` ended it.
    """
    headers = headers if isinstance(headers, dict) else {}
    latest = latest_death(headers.get("x-death")) if dead_lettered else {}
    queue = _text(latest.get("queue"))
    reason = _text(latest.get("reason")) if queue in job_queues else ""
    if reason == DELIVERY_LIMIT_REASON:
        count = headers.get("x-delivery-count")
        times = f"{count} times" if isinstance(count, int) else "too many times"
        return DeliveryLimitExceeded(
            "DeliveryLimitExceeded",
            f"delivered {times} without being settled: workers crashed or lost their connection while "
            "holding it; look up its job_id in the worker logs before replaying it",
        )
    if reason == EXPIRED_REASON:
        return ExpiredJob(
            "MessageExpired",
            f"the message's AMQP expiration passed while it waited in {queue}, before a worker took it",
        )
    return UnknownRoutingKey(
        UNKNOWN_ROUTING_KEY_CODE,
        f"no operation is bound to routing key {routing_key!r}; known: {', '.join(job_queues.values())}",
    )


def job_id_of(body: bytes, max_bytes: int) -> str | None:
    """The body's job_id if it is a small JSON object that has a valid one; never raises."""
    if len(body) > max_bytes:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    job_id = document.get("job_id") if isinstance(document, dict) else None
    return job_id if isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) else None


def latest_death(deaths: object) -> dict[str, Any]:
    """The newest entry of an `x-death` header (the broker puts it first), or {} if there is none."""
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""
