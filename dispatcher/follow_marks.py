"""Which started jobs already have a follow chain: in this process, and in Redis for the fleet.

A start redelivered after its chain was published (its ack was lost) is answered by the ledger
without calling AWS; the mark keeps it from beginning a second chain. A mark that cannot be read
or written costs at most one extra chain, whose completion result consumers deduplicate by job_id,
so Redis trouble never holds a job here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("dispatcher.follow")
MAX_LOCAL_MARKS = 100_000


class ChainMarks:
    """Marks kept for `ttl_s` (as long as the ledger remembers a start), locally bounded by count."""

    def __init__(self, ttl_s: float, redis: Redis | None = None, prefix: str = "") -> None:
        self._ttl_s = ttl_s
        self._redis = redis
        self._prefix = prefix
        self._local: OrderedDict[str, None] = OrderedDict()

    async def followed(self, job_id: str) -> bool:
        """True if this process or, with Redis, any replica published the job's chain."""
        if job_id in self._local:
            return True
        if self._redis is None:
            return False
        try:
            return bool(await self._redis.exists(self._key(job_id)))
        except (RedisError, OSError) as exc:
            log.warning("follow_mark_unreadable", error=repr(exc))
            return False

    async def mark(self, job_id: str) -> None:
        """Remember the job's chain; never raises."""
        self._local[job_id] = None
        self._local.move_to_end(job_id)
        while len(self._local) > MAX_LOCAL_MARKS:
            self._local.popitem(last=False)
        if self._redis is None:
            return
        try:
            await self._redis.set(self._key(job_id), 1, ex=int(self._ttl_s))
        except (RedisError, OSError) as exc:
            log.warning("follow_mark_unwritten", error=repr(exc))

    def _key(self, job_id: str) -> str:
        return f"{self._prefix}:followed:{job_id}"
