"""The start ledger in Redis at the default configuration: a busy pool, Redis gone, Redis back empty."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import orjson
import pytest
from redis.asyncio import Redis

from dispatcher.envelope import Decoder
from dispatcher.examples import example_job
from dispatcher.ledger import ClaimState, Finish, LedgerUnavailable, StartedEntry
from dispatcher.ledger_redis import RedisLedger
from dispatcher.metrics import REGISTRY
from dispatcher.registry import default_registry
from dispatcher.settings import Settings
from dispatcher.wiring import _redis, wire
from tests.integration.support import free_port, redis_server, wait_until

if TYPE_CHECKING:
    from dispatcher.envelope import Job

pytestmark = pytest.mark.redis

M2 = "m2.StartBatchJob"
DATAZONE = "datazone.StartDataSourceRun"
DECODER = Decoder(default_registry(), "us-east-1", ("us-east-1",), max_message_bytes=1_000_000)


def new_id() -> str:
    """A fresh job id."""
    return f"job-{uuid.uuid4().hex[:12]}"


def job(routing_key: str = M2) -> Job:
    """A decoded job, as the pipeline hands it to the ledger."""
    return DECODER.decode(orjson.dumps(example_job(routing_key, new_id())), routing_key, None)


def test_the_pool_fits_every_job_in_flight_at_the_default_concurrency():
    """redis-py's default pool (100) is smaller than five queues at 32 jobs each."""
    settings = Settings(redis_url="redis://127.0.0.1:6379/0")
    pool = wire(settings, default_registry()).redis.connection_pool  # type: ignore[union-attr]
    assert pool.max_connections >= settings.concurrency * len(default_registry())


async def test_a_pool_in_full_use_makes_claims_wait_not_fall_back(redis_url, prefix):
    """200 claims at once through a pool of 9 connections: every one is decided by Redis."""
    redis = _redis(Settings(redis_url=redis_url, concurrency=1), operations=1)
    ledger = RedisLedger(redis, ttl_s=60, stale_after_s=30, retry_unknown_outcome=False, prefix=prefix)
    jobs = [job() for _ in range(200)]
    try:
        claims = await asyncio.gather(*(ledger.claim(one) for one in jobs))
        assert {claim.state for claim in claims} == {ClaimState.CLAIMED}
        assert all(claim.claim_id for claim in claims), "a claim was made without Redis"
        assert await redis.exists(*(f"{prefix}:ledger:{one.job_id}" for one in jobs)) == len(jobs)
    finally:
        await redis.delete(*(f"{prefix}:ledger:{one.job_id}" for one in jobs))
        await redis.aclose()


async def test_a_redis_restarted_empty_cannot_make_this_process_start_a_job_twice(redis_url, prefix):
    """The process keeps what it recorded: a redelivery after Redis lost the entry is answered from it."""
    redis = Redis.from_url(redis_url)
    ledger = RedisLedger(redis, ttl_s=60, stale_after_s=30, retry_unknown_outcome=False, prefix=prefix)
    started, unknown = job(), job()
    try:
        for one, how in ((started, Finish.STARTED), (unknown, Finish.KEEP)):
            claim = await ledger.claim(one)
            await ledger.finish(one, claim, how, StartedEntry({"executionId": "e-1"}, "r-1", 1))
        await redis.delete(f"{prefix}:ledger:{started.job_id}", f"{prefix}:ledger:{unknown.job_id}")

        again = await ledger.claim(started)
        assert again.state is ClaimState.STARTED
        assert again.started is not None
        assert again.started.response == {"executionId": "e-1"}
        assert (await ledger.claim(unknown)).state is ClaimState.STALE
    finally:
        await redis.aclose()


async def test_without_redis_a_job_with_no_token_waits_until_redis_answers(start_worker, broker, emulator):
    """The default never risks a second start: M2 waits in the retry queue, DataZone (token) goes ahead."""
    port = free_port()
    await start_worker(redis_url=f"redis://127.0.0.1:{port}/0")
    held, tokened = new_id(), new_id()
    retries_before = _retries(M2)
    await broker.publish(example_job(M2, held), M2)
    await broker.publish(example_job(DATAZONE, tokened), DATAZONE)

    results = await broker.collect_ids(broker.results_queue, [tokened])
    # The held job was decided (sent to wait in the retry queue) without a call.
    await wait_until(lambda: _retries(M2) > retries_before, "the M2 job sent to its retry queue")
    assert [call["routing_key"] for call in emulator.state.calls.to_json()] == [DATAZONE]
    with redis_server(port):
        results = await broker.collect_ids(broker.results_queue, [held], timeout_s=45)

    assert results[held][0].json()["outcome"] == "succeeded"
    assert sorted(call["routing_key"] for call in emulator.state.calls.to_json()) == [DATAZONE, M2]


async def test_the_local_fallback_is_an_explicit_choice(start_worker, broker, emulator):
    """`ledger_fallback: local` starts a job with no token without Redis, as documented (unsafe)."""
    await start_worker(redis_url=f"redis://127.0.0.1:{free_port()}/0", ledger_fallback="local")
    job_id = new_id()
    await broker.publish(example_job(M2, job_id), M2)

    results = await broker.collect_ids(broker.results_queue, [job_id], timeout_s=30)

    assert results[job_id][0].json()["outcome"] == "succeeded"
    assert len(emulator.state.calls.to_json()) == 1


async def test_a_second_delivery_in_this_process_waits_for_the_call_in_flight(redis_url, prefix):
    """Redis loses the claim mid-call: the second delivery still waits, then gets the first call's result."""
    redis = Redis.from_url(redis_url)
    ledger = RedisLedger(redis, ttl_s=60, stale_after_s=30, retry_unknown_outcome=False, prefix=prefix)
    one = job()
    try:
        first = await ledger.claim(one)
        assert first.state is ClaimState.CLAIMED
        await redis.delete(f"{prefix}:ledger:{one.job_id}")
        second = asyncio.ensure_future(ledger.claim(one))
        await asyncio.sleep(0.3)
        assert not second.done(), "the second delivery did not wait for the call in flight"
        await ledger.finish(one, first, Finish.STARTED, StartedEntry({"executionId": "e-2"}, "r-2", 1))
        assert (await asyncio.wait_for(second, 5)).state is ClaimState.STARTED
    finally:
        await redis.delete(f"{prefix}:ledger:{one.job_id}")
        await redis.aclose()


async def test_a_redis_back_empty_gets_what_this_process_recorded_written_back(redis_url, prefix):
    """After Redis failed, the first answer makes the process write its entries back: other replicas see them."""
    with redis_server(free_port()) as server:
        redis = _redis(Settings(redis_url=server.url), operations=1)
        ledger = RedisLedger(redis, ttl_s=60, stale_after_s=30, retry_unknown_outcome=False, prefix=prefix)
        other = RedisLedger(redis, ttl_s=60, stale_after_s=30, retry_unknown_outcome=False, prefix=prefix)
        started, unknown, later = job(), job(), job()
        try:
            for one, how in ((started, Finish.STARTED), (unknown, Finish.KEEP)):
                claim = await ledger.claim(one)
                await ledger.finish(one, claim, how, StartedEntry({"executionId": "e-3"}, "r-3", 1))
            server.kill()
            with pytest.raises(LedgerUnavailable):
                await ledger.claim(later)  # Redis is gone: noticed
            server.start()  # back, empty
            ledger._redis_down_until = 0
            assert (await ledger.claim(later)).state is ClaimState.CLAIMED
            async with asyncio.timeout(5):
                while not await redis.exists(f"{prefix}:ledger:{started.job_id}"):
                    await asyncio.sleep(0.05)

            assert (await other.claim(started)).state is ClaimState.STARTED
            assert (await other.claim(unknown)).state is ClaimState.STALE
        finally:
            await redis.aclose()


def _retries(operation: str) -> float:
    return REGISTRY.get_sample_value("dispatcher_retries_total", {"operation": operation}) or 0.0
