"""Fleet-wide rate limits in Redis: every replica takes its tokens from one shared state.

One Lua script per token, run atomically by Redis on its own clock, so no replica's clock and
no read-modify-write race can let the fleet exceed the rate. The state of one operation is a
hash: `tat` (GCRA's theoretical arrival time) and, after a throttle, `w_max` and `last_fail`
(botocore's CUBIC parameters), so a throttle seen by one replica slows every replica and the
recovery is shared too. If Redis cannot be reached, each replica falls back to a local limiter
of `rate / expected_replicas` until Redis answers again.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

from dispatcher import metrics
from dispatcher.ratelimit import MAX_POLL_S, MIN_RATE, AdaptiveLimiter, Grant

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = structlog.get_logger("dispatcher.ratelimit")

RETRY_REDIS_AFTER_S = 5.0
STATE_TTL_MS = 3_600_000

# CUBIC as in botocore/retries/throttling.py: rate(t) = C (t - K)^3 + w_max, K = cbrt(w_max (1 - beta) / C).
_CURRENT_RATE = """
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function current_rate(state, ceiling, now)
  local w_max, last_fail = tonumber(state[2]), tonumber(state[3])
  if not w_max then return ceiling end
  local k = ((w_max * 0.3) / 0.4) ^ (1 / 3)
  local d = now - last_fail - k
  return math.max(MIN_RATE, math.min(ceiling, 0.4 * d * d * d + w_max))
end
""".replace("MIN_RATE", repr(MIN_RATE))

ACQUIRE = (
    _CURRENT_RATE
    + """
local ceiling, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_s()
local state = redis.call('HMGET', KEYS[1], 'tat', 'w_max', 'last_fail')
local rate = current_rate(state, ceiling, now)
if state[2] and rate >= ceiling then redis.call('HDEL', KEYS[1], 'w_max', 'last_fail') end
local interval = 1 / rate
local tat = math.max(tonumber(state[1]) or now, now)
local wait = tat - (burst - 1) * interval - now
if wait > 0 then return {0, tostring(wait), tostring(rate), tostring(now)} end
redis.call('HSET', KEYS[1], 'tat', tostring(tat + interval))
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, '0', tostring(rate), tostring(now)}
"""
)

THROTTLE = (
    _CURRENT_RATE
    + """
local ceiling, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local sent_at, retry_after = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_s()
local state = redis.call('HMGET', KEYS[1], 'tat', 'w_max', 'last_fail')
local rate = current_rate(state, ceiling, now)
if sent_at >= (tonumber(state[3]) or 0) then
  redis.call('HSET', KEYS[1], 'w_max', tostring(rate), 'last_fail', tostring(now))
  rate = math.max(MIN_RATE, rate * 0.7)
end
local interval = 1 / rate
local tat = math.max(tonumber(state[1]) or now, now + retry_after + (burst - 1) * interval)
redis.call('HSET', KEYS[1], 'tat', tostring(tat))
redis.call('PEXPIRE', KEYS[1], ttl)
return tostring(rate)
""".replace("MIN_RATE", repr(MIN_RATE))
)


class SharedLimiter:
    """One operation's limit shared by the fleet through Redis, with a local fallback."""

    def __init__(self, redis: Redis, key: str, ceiling: float, burst: int, expected_replicas: int) -> None:
        self.ceiling = ceiling
        self._key = key
        self._burst = burst
        self._acquire = redis.register_script(ACQUIRE)
        self._throttle = redis.register_script(THROTTLE)
        self._fallback = AdaptiveLimiter(ceiling / expected_replicas, max(1, burst // expected_replicas))
        self._rate = ceiling
        self._redis_down_until = 0.0

    @property
    def rate(self) -> float:
        """The rate allowed now: the fleet's, or this replica's share while Redis is away."""
        return self._fallback.rate if self._using_fallback() else self._rate

    async def acquire(self) -> Grant:
        """Wait for a fleet-wide token (or a local one while Redis cannot be reached)."""
        while not self._using_fallback():
            try:
                allowed, wait_s, rate, now = await self._acquire(
                    keys=[self._key], args=[self.ceiling, self._burst, STATE_TTL_MS]
                )
            except (RedisError, OSError) as exc:
                self._fall_back(exc)
                break
            self._answered()
            self._rate = float(rate)
            if int(allowed):
                return Grant(float(now), shared=True)
            await asyncio.sleep(min(float(wait_s), MAX_POLL_S))
        return await self._fallback.acquire()

    def on_success(self) -> None:
        """Shared recovery is a function of time in Redis; only the local fallback is told."""
        if self._using_fallback():
            self._fallback.on_success()

    async def on_throttle(self, grant: Grant, retry_after_s: float | None = None) -> None:
        """Lower the fleet's rate (once per round trip) and pause it for Retry-After."""
        if not grant.shared:
            await self._fallback.on_throttle(grant, retry_after_s)
            return
        try:
            rate = await self._throttle(
                keys=[self._key], args=[self.ceiling, self._burst, STATE_TTL_MS, grant.at, retry_after_s or 0.0]
            )
        except (RedisError, OSError) as exc:
            self._fall_back(exc)
            return
        self._rate = float(rate)

    def _using_fallback(self) -> bool:
        return time.monotonic() < self._redis_down_until

    def _answered(self) -> None:
        if self._redis_down_until:
            log.info("redis_reachable_again_sharing_rate_limit", operation=self._key)
            self._redis_down_until = 0.0
        metrics.RATE_LIMIT_SHARED.set(1)

    def _fall_back(self, exc: BaseException) -> None:
        if not self._redis_down_until:
            log.warning(
                "redis_unreachable_using_local_rate_limit",
                operation=self._key,
                local_rate=round(self._fallback.ceiling, 3),
                error=repr(exc),
            )
        metrics.RATE_LIMIT_SHARED.set(0)
        self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
