"""Building a worker's parts from its settings: clients, limiters, ledger, follower and pipeline.

The worker itself only supervises the broker session, consumes and drains; everything it runs
jobs with is made here, once, so tests and tools can build the same parts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from dispatcher import metrics
from dispatcher.aws import AwsClients
from dispatcher.envelope import Decoder, FollowDefaults
from dispatcher.follow import Follower, FollowPolicy
from dispatcher.follow_marks import ChainMarks
from dispatcher.ledger import Ledger, LocalLedger
from dispatcher.ledger_redis import RedisLedger
from dispatcher.pipeline import JobPolicy, Pipeline, TriageQueues
from dispatcher.ratelimit import AdaptiveLimiter, Limiter, Limiters
from dispatcher.ratelimit_redis import SharedLimiter
from dispatcher.retry import RetrySchedule
from dispatcher.stamps import Stamper
from dispatcher.topology import Names, poll_schedule
from dispatcher.worker import Worker

if TYPE_CHECKING:
    from dispatcher.registry import Registry
    from dispatcher.settings import RateLimit, Settings

REDIS_TIMEOUT_S = 2.0
REDIS_POOL_WAIT_S = 5.0
REDIS_SPARE_CONNECTIONS = 8
# A claim older than a call can take means its worker died mid-call.
LEDGER_STALE_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Parts:
    """Everything a worker runs jobs with; `draining` is set when it shuts down."""

    settings: Settings
    registry: Registry
    names: Names
    stamper: Stamper
    aws: AwsClients
    redis: Redis | None
    limiters: Limiters
    poll_limiters: Limiters
    marks: ChainMarks
    follower: Follower
    pipeline: Pipeline
    draining: asyncio.Event


def build_worker(settings: Settings, registry: Registry) -> Worker:
    """A worker with these settings serving these operations, ready to `run()`."""
    return Worker(wire(settings, registry))


def wire(settings: Settings, registry: Registry) -> Parts:
    """The parts of a worker with these settings serving these operations."""
    names = Names.from_settings(settings)
    draining = asyncio.Event()
    stamper = Stamper.from_settings(settings)
    aws = AwsClients(
        pool_size=settings.concurrency * max(1, len(registry)),
        connect_timeout_s=settings.aws_connect_timeout_s,
        call_timeout_s=settings.aws_call_timeout_s,
    )
    redis = _redis(settings, len(registry)) if settings.redis_url else None

    def start_limiter(routing_key: str, region: str) -> Limiter:
        return _limiter(settings, redis, routing_key, region, settings.rate_limit_for(routing_key))

    def poll_limiter(companion_routing_key: str, region: str) -> Limiter:
        # A Describe call's own limit: polls never take the tokens of starts.
        limit = settings.follow_rate_limit_for(companion_routing_key)
        return _limiter(settings, redis, companion_routing_key, region, limit)

    limiters, poll_limiters = Limiters(start_limiter), Limiters(poll_limiter)
    for op in registry:
        for region in settings.enabled_regions or (settings.region,):
            limiters[(op.routing_key, region)] = start_limiter(op.routing_key, region)
            if op.spec.companion_routing_key is not None:
                poll_limiters[(op.spec.companion_routing_key, region)] = poll_limiter(
                    op.spec.companion_routing_key, region
                )
    marks = ChainMarks(settings.ledger_ttl_s, redis, settings.jobs_exchange)
    follower = Follower(
        registry,
        aws,
        poll_limiters,
        FollowPolicy(
            schedule=poll_schedule(settings),
            max_failures=settings.follow_max_failures,
            max_poll_wait_s=settings.follow_max_poll_wait_s,
        ),
        stamper,
        marks,
        draining,
    )
    follow_defaults = FollowDefaults(
        frozenset(settings.follow_operations), settings.follow_timeout_s, settings.follow_progress
    )
    followed = [op.routing_key for op in registry if op.companion is not None]
    pipeline = Pipeline(
        Decoder(registry, settings.region, settings.enabled_regions, settings.max_message_bytes, follow_defaults),
        aws,
        limiters,
        _ledger(settings, redis),
        JobPolicy(
            schedule=RetrySchedule(tuple(settings.retry_delays)),
            retry_jitter=settings.retry_jitter,
            retry_unknown_outcome=settings.retry_unknown_outcome,
            max_throttle_wait_s=settings.max_throttle_wait_s,
        ),
        draining,
        follower,
        TriageQueues(
            {names.job_queue(key): key for key in registry.routing_keys},
            {names.follow_queue(key): key for key in followed},
        ),
    )
    return Parts(
        settings, registry, names, stamper, aws, redis, limiters, poll_limiters, marks, follower, pipeline, draining
    )


def _limiter(settings: Settings, redis: Redis | None, routing_key: str, region: str, limit: RateLimit) -> Limiter:
    """A limiter for one operation and region; its rate gauges exist from the moment it does."""
    limiter: Limiter
    if redis is None:
        limiter = AdaptiveLimiter(limit.rate, limit.burst)
    else:
        key = f"{settings.jobs_exchange}:rate:{routing_key}:{region}"
        limiter = SharedLimiter(redis, key, limit.rate, limit.burst, settings.expected_replicas)
    metrics.RATE_LIMIT_CONFIGURED_CALLS_PER_SECOND.labels(routing_key, region).set(limit.rate)
    metrics.RATE_LIMIT_CALLS_PER_SECOND.labels(routing_key, region).set(limiter.rate)
    return limiter


def _ledger(settings: Settings, redis: Redis | None) -> Ledger:
    if redis is None:
        return LocalLedger(settings.ledger_ttl_s)
    return RedisLedger(
        redis,
        ttl_s=settings.ledger_ttl_s,
        stale_after_s=settings.aws_call_timeout_s + LEDGER_STALE_MARGIN_S,
        retry_unknown_outcome=settings.retry_unknown_outcome,
        prefix=settings.jobs_exchange,
        hold_when_unavailable=settings.ledger_fallback == "hold",
    )


def _redis(settings: Settings, operations: int) -> Redis:
    """A client whose pool fits every job that can be in flight at once, waiting rather than failing.

    redis-py's default pool holds 100 connections and raises at once past that, which the ledger
    would take for an outage; each job in flight uses one connection at a time. Its own retries
    are off: the ledger and the limiters fall back at once, and a job must not sit for seconds
    behind ten reconnect attempts while holding a delivery that AWS already started.
    """
    assert settings.redis_url is not None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=settings.concurrency * operations + REDIS_SPARE_CONNECTIONS,
        timeout=REDIS_POOL_WAIT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
