"""The start ledger in Redis: every replica sees what AWS already did for a job.

An entry per job_id, JSON, expiring after `ledger_ttl_s`: `in-flight` (with the request's
fingerprint, the Redis time of the claim and the claim's id) while a worker calls AWS, then
`started` with the response. Claims are one Lua script, so two replicas can never both claim.

What this process itself recorded is also kept in its own ledger and consulted first, so a Redis
restarted empty (or one that failed to take a `started` entry) cannot make this process start a
job twice; and when Redis answers again after failing, the process writes what it remembers back
(never over an entry Redis has), so that other replicas are covered again too.

While Redis cannot be reached, a job whose operation has an idempotency token goes ahead on the
process's own ledger (AWS itself refuses a second job for the same token); a job without one is
held (`LedgerUnavailable`: it waits in a retry queue) unless the deployment chose
`ledger_fallback: local`, which cannot see other replicas' starts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

import orjson
import structlog
from redis.exceptions import RedisError

from dispatcher.ledger import Claim, ClaimState, Finish, LedgerUnavailable, LocalLedger, StartedEntry, fingerprint

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from dispatcher.envelope import Job

log = structlog.get_logger("dispatcher.ledger")

RETRY_REDIS_AFTER_S = 5.0
WRITE_BACK_BATCH = 500

CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local raw = redis.call('GET', KEYS[1])
if raw then
  local entry = cjson.decode(raw)
  if entry.fp ~= ARGV[1] then return {'mismatch', '', '0'} end
  if entry.state == 'started' then return {'started', raw, '0'} end
  local age = now - tonumber(entry.at)
  if ARGV[2] ~= '1' then
    if age < tonumber(ARGV[3]) then return {'busy', '', tostring(age)} end
    return {'stale', '', tostring(age)}
  end
end
local claim = cjson.encode({state = 'in-flight', fp = ARGV[1], at = now, claim = ARGV[5], operation = ARGV[6]})
redis.call('SET', KEYS[1], claim, 'PX', ARGV[4])
return {'claimed', '', '0'}
"""

CLEAR = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw).claim == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class RedisLedger:
    """The fleet's ledger; a call in flight elsewhere is waited for until it is older than `stale_after_s`."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: float,
        stale_after_s: float,
        retry_unknown_outcome: bool,
        prefix: str,
        hold_when_unavailable: bool = True,
    ) -> None:
        self._redis = redis
        self._ttl_ms = int(ttl_s * 1000)
        self._stale_after_s = stale_after_s
        self._retry_unknown_outcome = retry_unknown_outcome
        self._prefix = prefix
        self._claim = redis.register_script(CLAIM)
        self._clear = redis.register_script(CLEAR)
        self._local = LocalLedger(ttl_s)
        self._hold_when_unavailable = hold_when_unavailable
        self._redis_down_until = 0.0
        self._write_back_pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def claim(self, job: Job) -> Claim:
        """Claim the job for a call, unless this process or the fleet already knows something about it."""
        job_print = fingerprint(job)
        recalled = await self._local.recall(job, job_print)
        if recalled is not None:
            return recalled
        if time.monotonic() >= self._redis_down_until:
            # Another delivery of this job in this process waits for this one, whatever Redis does.
            self._local.begin(job, job_print)
            try:
                claim = await self._claim_in_redis(job, job_print)
            except BaseException:
                self._local.end(job)
                raise
            if claim is not None and claim.state is ClaimState.CLAIMED:
                return claim
            self._local.end(job)
            if claim is not None:
                return claim
        return await self._without_redis(job)

    async def _claim_in_redis(self, job: Job, job_print: str) -> Claim | None:
        """Redis's answer, or None when it cannot give one."""
        claim_id = uuid.uuid4().hex
        # With a token AWS itself protects a repeated call; without one only the ledger does.
        may_take_over = job.operation.idempotency_token_member is not None or self._retry_unknown_outcome
        try:
            state, raw, age = await self._claim(
                keys=[self._key(job.job_id)],
                args=[
                    job_print,
                    "1" if may_take_over else "0",
                    self._stale_after_s,
                    self._ttl_ms,
                    claim_id,
                    job.operation.routing_key,
                ],
            )
        except (RedisError, OSError) as exc:
            self._fall_back(exc)
            return None
        self._answered()
        state = ClaimState(_text(state))
        started = _started(raw) if state is ClaimState.STARTED else None
        return Claim(state, started, claim_id, float(age))

    async def finish(self, job: Job, claim: Claim, how: Finish, started: StartedEntry | None = None) -> None:
        """Record `started`, drop our claim, or keep it as the marker of an unknown outcome."""
        job_print = self._local.record(job, how, started)
        if not claim.claim_id:
            return
        try:
            if how is Finish.STARTED and started is not None:
                await self._redis.set(self._key(job.job_id), _started_entry(job_print, started), px=self._ttl_ms)
            elif how is Finish.CLEAR:
                await self._clear(keys=[self._key(job.job_id)], args=[claim.claim_id])
        except (RedisError, OSError) as exc:
            # This process remembers it; Redis gets it back when it answers again (`_write_back`).
            self._fall_back(exc)
        else:
            self._answered()

    async def _without_redis(self, job: Job) -> Claim:
        if job.operation.idempotency_token_member is None and self._hold_when_unavailable:
            msg = (
                "the start ledger in Redis cannot be reached and this operation has no idempotency token: "
                "the job waits until Redis answers rather than risk starting it twice"
            )
            raise LedgerUnavailable("LedgerUnavailable", msg)
        return await self._local.claim(job)

    def _key(self, job_id: str) -> str:
        return f"{self._prefix}:ledger:{job_id}"

    def _fall_back(self, exc: BaseException) -> None:
        if time.monotonic() >= self._redis_down_until:
            log.warning("redis_unreachable", error=repr(exc), hold_tokenless_jobs=self._hold_when_unavailable)
        self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
        self._write_back_pending = True

    def _answered(self) -> None:
        self._redis_down_until = 0.0
        if self._write_back_pending:
            self._write_back_pending = False
            task = asyncio.ensure_future(self._write_back())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write_back(self) -> None:
        """Redis failed and answers again, perhaps restarted empty: give it back what this process knows.

        `SET NX` never replaces what Redis has. An unknown outcome goes back as a claim so old that
        every later delivery finds it stale, as it would have.
        """
        entries = 0
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id, job_print, started, keep_s in self._local.entries():
                    body = _started_entry(job_print, started) if started else _unknown_entry(job_print)
                    pipe.set(self._key(job_id), body, px=max(1, int(keep_s * 1000)), nx=True)
                    entries += 1
                    if entries % WRITE_BACK_BATCH == 0:
                        await pipe.execute()
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._fall_back(exc)
            return
        log.info("ledger_written_back_to_redis", entries=entries)


def _started_entry(job_print: str, started: StartedEntry) -> bytes:
    entry = {
        "state": "started",
        "fp": job_print,
        "at": time.time(),
        "response": started.response,
        "aws_request_id": started.aws_request_id,
        "attempts": started.attempts,
    }
    return orjson.dumps(entry, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def _unknown_entry(job_print: str) -> bytes:
    return orjson.dumps({"state": "in-flight", "fp": job_print, "at": 0, "claim": ""})


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _started(raw: object) -> StartedEntry:
    entry = orjson.loads(raw if isinstance(raw, bytes | str) else str(raw))
    return StartedEntry(entry["response"], entry.get("aws_request_id"), int(entry.get("attempts", 1)))
