"""Following started jobs to their end (contract section 8), against the real broker and the emulator."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aio_pika
import aiohttp
import orjson
import pytest

from dispatcher.client import DispatcherClient, JobRequest
from dispatcher.emulator import parse_faults
from dispatcher.examples import example_job
from dispatcher.follow_state import FollowState
from dispatcher.operations import OPERATION_SPECS, JobOutcome, OperationSpec
from tests.integration.support import Broker, Received

if TYPE_CHECKING:
    from dispatcher.emulator import RunningEmulator

M2 = "m2.StartBatchJob"
DESCRIBE_M2 = "m2.GetBatchJobExecution"
QUICK = 0.3  # seconds an emulated job runs in these tests: a poll or two


def new_id(prefix: str = "job") -> str:
    """A fresh job id."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def set_lifecycle(emulator: RunningEmulator, routing_key: str, **settings: Any) -> None:
    """How the emulator's next jobs of one operation go, through its control API."""
    async with aiohttp.ClientSession() as session:
        url = f"{emulator.url}/_emulator/lifecycle/{routing_key}"
        async with session.put(url, data=orjson.dumps(settings)) as response:
            assert response.status == 200, await response.text()


def fates(spec: OperationSpec) -> dict[str, dict[str, Any]]:
    """Each way a job of `spec` can end, as lifecycle settings that make every job end that way."""
    assert spec.companion is not None
    outcomes = set(spec.companion.terminal.values())
    chosen = {"succeeded": {}, "failed": {"failure_rate": 1.0}}
    if JobOutcome.CANCELLED in outcomes:
        chosen["cancelled"] = {"cancel_rate": 1.0}
    if spec.companion.warnings:
        chosen["warning"] = {"warning_rate": 1.0}
    return chosen


async def completions(broker: Broker, job_ids: list[str], timeout_s: float = 30) -> dict[str, list[Received]]:
    """Every message of the results queue until each job has its completion, by job id."""
    wanted = set(job_ids)
    by_job: dict[str, list[Received]] = {}

    def done(messages: list[Received]) -> bool:
        by_job.clear()
        for message in messages:
            by_job.setdefault(message.properties["message_id"], []).append(message)
        finished = {job for job, got in by_job.items() if any(m.routing_key.endswith(".finished") for m in got)}
        return wanted <= finished

    await broker.collect_until(broker.results_queue, done, timeout_s)
    return by_job


async def leftovers(broker: Broker, queue_name: str) -> list[Received]:
    """Whatever the queue holds now, read and acked."""
    channel = await broker.connection.channel()
    try:
        queue = await channel.get_queue(queue_name)
        messages = []
        while (incoming := await queue.get(fail=False)) is not None:
            messages.append(
                Received(incoming.body, dict(incoming.headers or {}), incoming.routing_key or "", incoming.info())
            )
            await incoming.ack()
        return messages
    finally:
        await channel.close()


def finished_of(messages: list[Received]) -> list[dict[str, Any]]:
    """The completion results among a job's messages."""
    return [m.json() for m in messages if m.routing_key.endswith(".finished")]


@pytest.mark.parametrize("spec", OPERATION_SPECS, ids=lambda spec: spec.routing_key)
async def test_each_operation_is_followed_to_each_way_it_can_end(spec, start_worker, broker, emulator):
    """Succeeded, failed, cancelled, succeeded with a warning: one completion each, as section 8 describes."""
    assert spec.companion is not None
    await start_worker()
    expected: dict[str, str] = {}
    for fate, settings in fates(spec).items():
        await set_lifecycle(emulator, spec.routing_key, duration_s=QUICK, **settings)
        job_id = new_id(fate)
        expected[job_id] = fate
        await broker.publish(
            example_job(spec.routing_key, job_id, follow=True, metadata={"fate": fate}), spec.routing_key
        )
        # The fate is drawn when the job starts: wait for the start before changing the settings.
        await broker.collect_until(
            broker.results_queue, lambda got, j=job_id: any(m.properties["message_id"] == j for m in got), 20
        )

    by_job = await completions(broker, list(expected))
    for job_id, fate in expected.items():
        [completion] = finished_of(by_job[job_id])
        outcome = "succeeded" if fate == "warning" else fate
        assert completion["phase"] == "finished"
        assert completion["job_outcome"] == outcome
        assert spec.companion.terminal[completion["job_status"]] == outcome
        assert ("warning" in completion) == (fate == "warning")
        if fate == "warning":
            assert completion["job_status"] in spec.companion.warnings
        assert spec.companion.status_of(completion["describe"]) == completion["job_status"]
        assert set(completion["aws_job"]) == {member for member, _ in spec.companion.parameters}
        assert completion["polls"] >= 1
        assert completion["metadata"] == {"fate": fate}
        assert completion["started_at"] <= completion["finished_at"]
        message = next(m for m in by_job[job_id] if m.routing_key.endswith(".finished"))
        assert message.routing_key == f"{spec.routing_key}.finished"
        assert message.properties["delivery_mode"] == aio_pika.DeliveryMode.PERSISTENT


async def test_start_result_says_following_and_consumers_of_succeeded_see_no_completion(
    start_worker, broker, emulator, prefix
):
    """A queue bound to `*.*.succeeded` gets the start result only; `*.*.finished` gets the completion."""
    channel = broker.channel
    results = await channel.declare_exchange(f"{prefix}.results", aio_pika.ExchangeType.TOPIC, durable=True)
    succeeded = await channel.declare_queue(exclusive=True)
    await succeeded.bind(results, "*.*.succeeded")
    finished = await channel.declare_queue(exclusive=True)
    await finished.bind(results, "*.*.finished")
    await set_lifecycle(emulator, M2, duration_s=QUICK)
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job(M2, job_id, follow=True), M2)

    await completions(broker, [job_id])
    got_succeeded = await succeeded.get(timeout=5)
    assert orjson.loads(got_succeeded.body)["following"] is True
    got_finished = await finished.get(timeout=5)
    assert orjson.loads(got_finished.body)["job_outcome"] == "succeeded"
    assert await succeeded.get(fail=False) is None


async def test_a_job_not_followed_gets_no_completion(start_worker, broker, emulator):
    """Without `follow` (and no default for its operation) nothing is polled."""
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job(M2, job_id), M2)
    [result] = await broker.collect(broker.results_queue, 1)
    assert "following" not in result.json()
    await asyncio.sleep(1.0)
    assert not emulator.state.calls.to_json(DESCRIBE_M2)


async def test_operation_followed_by_default_unless_the_job_says_false(start_worker, broker, emulator):
    """`follow_operations` follows every job of an operation; `follow: false` opts out."""
    await set_lifecycle(emulator, M2, duration_s=QUICK)
    await start_worker(follow_operations=[M2])
    followed, opted_out = new_id("default"), new_id("optout")
    await broker.publish(example_job(M2, followed), M2)
    await broker.publish(example_job(M2, opted_out, follow=False), M2)
    by_job = await completions(broker, [followed])
    assert finished_of(by_job[followed])[0]["job_outcome"] == "succeeded"
    assert [m.routing_key for m in by_job[opted_out]] == [f"{M2}.succeeded"]


async def test_a_job_that_never_ends_times_out_and_is_left_alone(start_worker, broker, emulator):
    """Past `timeout_s` the completion says `timed-out` with AWS's last status; nothing stops the AWS job."""
    await set_lifecycle(emulator, M2, duration_s=QUICK, never_end_rate=1.0)
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job(M2, job_id, follow={"timeout_s": 1.5}), M2)
    by_job = await completions(broker, [job_id])
    [completion] = finished_of(by_job[job_id])
    assert completion["job_outcome"] == "timed-out"
    assert completion["job_status"] == "Running"
    assert completion["polls"] >= 2
    assert "error" not in completion


async def test_throttled_describe_calls_never_end_a_follow(start_worker, broker, emulator):
    """AWS throttling the Describe call stretches the polls; every job still gets its completion."""
    emulator.state.replace_faults(parse_faults({DESCRIBE_M2: {"rate_limit_per_s": 3, "rate_limit_burst": 1}}))
    await set_lifecycle(emulator, M2, duration_s=QUICK)
    await start_worker()
    job_ids = [new_id() for _ in range(8)]
    for job_id in job_ids:
        await broker.publish(example_job(M2, job_id, follow=True), M2)
    by_job = await completions(broker, job_ids, timeout_s=60)
    assert {finished_of(by_job[job_id])[0]["job_outcome"] for job_id in job_ids} == {"succeeded"}
    codes = Counter(call["error_code"] for call in emulator.state.calls.to_json(DESCRIBE_M2))
    assert codes["ThrottlingException"] > 0, "AWS never throttled, so this proved nothing"


async def test_transient_describe_failures_never_end_a_follow(start_worker, broker, emulator):
    """Half the Describe calls fail with a server error; the follows go on and end with the job."""
    emulator.state.replace_faults(parse_faults({DESCRIBE_M2: {"error_rate": 0.5}}))
    emulator.state.rng.seed(3)
    await set_lifecycle(emulator, M2, duration_s=1.0)
    await start_worker()
    job_ids = [new_id() for _ in range(5)]
    for job_id in job_ids:
        await broker.publish(example_job(M2, job_id, follow=True), M2)
    by_job = await completions(broker, job_ids, timeout_s=60)
    assert {finished_of(by_job[job_id])[0]["job_outcome"] for job_id in job_ids} == {"succeeded"}
    assert any(call["error_code"] for call in emulator.state.calls.to_json(DESCRIBE_M2))


async def test_describe_refused_again_and_again_ends_as_unknown(start_worker, broker, emulator):
    """AccessDenied past `follow_max_failures` ends the follow `unknown`, with a reason to act on."""
    emulator.state.replace_faults(
        parse_faults({DESCRIBE_M2: {"error_rate": 1.0, "error_code": "AccessDeniedException"}})
    )
    await start_worker(follow_max_failures=3)
    job_id = new_id()
    await broker.publish(example_job(M2, job_id, follow=True), M2)
    by_job = await completions(broker, [job_id])
    [completion] = finished_of(by_job[job_id])
    assert completion["job_outcome"] == "unknown"
    assert completion["polls"] == 3
    assert completion["error"]["code"] == "AccessDeniedException"
    assert "GetBatchJobExecution" in completion["error"]["message"]
    assert "IAM" in completion["error"]["message"]


async def test_progress_messages_follow_the_jobs_statuses_in_order(start_worker, broker, emulator):
    """With `progress`, each status change is published, in the order AWS went through them."""
    await set_lifecycle(emulator, M2, duration_s=2.5)
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job(M2, job_id, follow={"progress": True}), M2)
    by_job = await completions(broker, [job_id])
    messages = by_job[job_id]
    kinds = [m.routing_key.rsplit(".", 1)[1] for m in messages]
    assert kinds[0] == "succeeded"
    assert kinds[-1] == "finished"
    statuses = [m.json()["job_status"] for m in messages if m.routing_key.endswith(".progress")]
    assert len(statuses) >= 2, statuses
    order = ["Submitting", "Holding", "Dispatching", "Running"]
    assert statuses == sorted(statuses, key=order.index), statuses
    assert len(set(statuses)) == len(statuses)
    assert all(m.json()["phase"] == "progress" and "job_outcome" not in m.json() for m in messages[1:-1])


async def test_submit_and_follow_through_reply_to(start_worker, emulator, amqp_url, prefix):
    """The client publishes with reply_to and gets the start result, each status, then the completion."""
    await set_lifecycle(emulator, M2, duration_s=1.5)
    await start_worker()
    seen: list[str] = []
    async with DispatcherClient(amqp_url, jobs_exchange=f"{prefix}.jobs") as client:
        job = JobRequest.model_validate(example_job(M2, new_id()))
        followed = await client.submit_and_follow(
            job, timeout_s=30, on_status=lambda progress: seen.append(progress["job_status"])
        )
    assert followed.result["following"] is True
    assert followed.completion is not None
    assert followed.completion["job_outcome"] == "succeeded"
    assert followed.succeeded
    assert seen, "no progress message reached reply_to"


async def test_a_redelivered_start_answered_by_the_ledger_begins_no_second_chain(start_worker, broker, emulator):
    """The same job published twice: one AWS start, one follow chain, one completion."""
    await set_lifecycle(emulator, M2, duration_s=1.0)
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job(M2, job_id, follow=True), M2)
    await broker.collect_until(broker.results_queue, lambda got: len(got) >= 1, 20)
    await broker.publish(example_job(M2, job_id, follow=True), M2)
    by_job = await completions(broker, [job_id])
    await asyncio.sleep(1.5)  # room for a second chain's completion, if there were one
    late = await leftovers(broker, broker.results_queue)
    messages = by_job[job_id] + late
    starts = [m.json() for m in messages if m.routing_key.endswith(".succeeded")]
    assert [start.get("deduplicated", False) for start in starts] == [True]  # the first was read above
    assert all(start["following"] for start in starts)
    assert len([m for m in messages if m.routing_key.endswith(".finished")]) == 1
    assert len({call["job_id"] for call in emulator.state.calls.to_json(M2) if call["new_job"]}) == 1


async def test_a_follow_message_no_worker_signed_is_dead_lettered_and_never_polled(
    start_worker, broker, emulator, prefix
):
    """Anyone can publish into the follow exchange: an unsigned state is a dead letter, never a Describe call."""
    await start_worker()
    forged = FollowState(
        job_id="forged-1",
        service="m2",
        operation="StartBatchJob",
        region="us-east-1",
        aws_job={"applicationId": "someone-elses-app", "executionId": "e-1"},
        started_at="2026-01-01T00:00:00Z",
        deadline="2099-01-01T00:00:00Z",
        reply_to="attacker-queue",
    )
    exchange = await broker.channel.get_exchange(f"{prefix}.jobs.follow")
    await exchange.publish(aio_pika.Message(forged.body(), message_id="forged-1"), M2)
    [dead] = await broker.collect(broker.dead_queue, 1)
    assert dead.headers["x-dispatcher-error-code"] == "UnreadableFollow"
    assert dead.headers["x-dispatcher-category"] == "invalid"
    await asyncio.sleep(0.5)
    assert not emulator.state.calls.to_json(DESCRIBE_M2)
    assert await leftovers(broker, broker.results_queue) == []


async def test_followed_jobs_survive_kill_9_of_every_worker(spawn_worker, broker, emulator, declare):
    """Workers killed mid-follow and restarted: every job still ends with its completion result."""
    await declare()
    await set_lifecycle(emulator, M2, duration_s=4.0)
    job_ids = [new_id() for _ in range(20)]
    for job_id in job_ids:
        await broker.publish(example_job(M2, job_id, follow=True), M2)
    first = await spawn_worker(DISPATCHER_FOLLOW_POLL_DELAYS="0.5")
    await first.wait_for_event("job_settled", count=len(job_ids))
    async with asyncio.timeout(10):  # kill it mid-follow: after the first polls, before the jobs end
        while len(emulator.state.calls.to_json(DESCRIBE_M2)) < len(job_ids):
            await asyncio.sleep(0.05)
    first.kill()
    await first.wait()
    await spawn_worker(DISPATCHER_FOLLOW_POLL_DELAYS="0.5")

    by_job = await completions(broker, job_ids, timeout_s=60)
    for job_id in job_ids:
        finished = finished_of(by_job[job_id])
        assert {c["job_outcome"] for c in finished} == {"succeeded"}
        assert len(finished) <= 2  # at least once; a poll killed after publishing may repeat once


async def test_followed_jobs_survive_the_broker_closing_connections(start_worker, broker, emulator, vhost):
    """Connections closed mid-follow: the worker reconnects and every follow ends with one completion."""
    await set_lifecycle(emulator, M2, duration_s=3.0)
    await start_worker()
    job_ids = [new_id() for _ in range(20)]
    for job_id in job_ids:
        await broker.publish(example_job(M2, job_id, follow=True), M2)
    await broker.collect_until(broker.results_queue, lambda got: len(got) >= len(job_ids), 20)
    for _ in range(2):
        await asyncio.sleep(0.8)
        await asyncio.to_thread(_close_worker_connections, vhost)

    async with Broker.connect(broker.url, broker.prefix) as reader:
        by_job = await completions(reader, job_ids, timeout_s=60)
    assert all({c["job_outcome"] for c in finished_of(by_job[j])} == {"succeeded"} for j in job_ids)


def _close_worker_connections(vhost: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None
    subprocess.run([ctl, "close_all_connections", "-p", vhost, "test: connection loss"], check=True, timeout=60)


async def test_two_workers_share_the_describe_limit_through_redis(start_worker, broker, emulator, redis_url):
    """With Redis, polls of every replica together stay within one Describe limit, apart from the starts'."""
    await set_lifecycle(emulator, M2, duration_s=2.0)
    shared = {"redis_url": redis_url, "follow_rate_limits": {DESCRIBE_M2: {"rate": 4, "burst": 1}}}
    await start_worker(**shared)
    await start_worker(**shared)
    job_ids = [new_id() for _ in range(16)]
    for job_id in job_ids:
        await broker.publish(example_job(M2, job_id, follow=True), M2)
    by_job = await completions(broker, job_ids, timeout_s=90)
    assert {finished_of(by_job[job_id])[0]["job_outcome"] for job_id in job_ids} == {"succeeded"}
    times = sorted(
        datetime.fromisoformat(c["received_at"]).timestamp() for c in emulator.state.calls.to_json(DESCRIBE_M2)
    )
    assert len(times) >= len(job_ids)
    # Any 2 s window holds at most rate * 2 + burst polls, whichever replica made them.
    most = max(sum(1 for t in times if start <= t < start + 2.0) for start in times)
    assert most <= 4 * 2 + 1, most
    # The start limit is untouched by polls: all 16 starts went out at once.
    starts = [datetime.fromisoformat(c["received_at"]).timestamp() for c in emulator.state.calls.to_json(M2)]
    assert max(starts) - min(starts) < 2.0
