"""`dispatcher dlq` and `dispatcher submit` as an operator runs them: subprocesses against the real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aio_pika import DeliveryMode, Message

from dispatcher.dlq import CHUNK_SIZE
from dispatcher.emulator import parse_faults
from dispatcher.errors import InvalidJob, JobError, RejectedByAws
from dispatcher.examples import example_job
from dispatcher.settings import Settings
from dispatcher.settle import dead_letter_headers
from dispatcher.stamps import Stamper
from tests.integration.support import Received, job_id_of, start_cli

M2 = "m2.StartBatchJob"
DATAZONE = "datazone.StartDataSourceRun"
ACCESS_DENIED = {"error_rate": 1.0, "error_code": "AccessDeniedException"}


def new_id() -> str:
    """A fresh job id."""
    return f"job-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Completed:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[Any]:
        return [orjson.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture
def cli_env(amqp_url, prefix) -> dict[str, str]:
    """The environment of a CLI run against this test's vhost and names, in a wide terminal."""
    return {
        **os.environ,
        "COLUMNS": "200",
        "DISPATCHER_AMQP_URL": amqp_url,
        "DISPATCHER_JOBS_EXCHANGE": f"{prefix}.jobs",
        "DISPATCHER_RESULTS_EXCHANGE": f"{prefix}.results",
        "DISPATCHER_DEAD_EXCHANGE": f"{prefix}.dead",
    }


@pytest.fixture
def cli(cli_env):
    """Run `dispatcher ...` in a subprocess without blocking the loop the worker runs on."""

    async def run(*args: str) -> Completed:
        process = await start_cli(cli_env, *args)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return Completed(process.returncode, stdout.decode(), stderr.decode())

    return run


async def dead_letter(
    broker, job_id: str, routing_key: str, error: JobError, *, body: bytes | None = None, **headers: Any
) -> None:
    """Put a dead letter in the test's DLQ as the worker would have (confirmed)."""
    exchange = await broker.channel.get_exchange(f"{broker.prefix}.dead")
    raw = orjson.dumps(example_job(routing_key, job_id)) if body is None else body
    stamper = Stamper.from_settings(Settings(amqp_url=broker.url))
    message = Message(
        raw,
        headers=stamper.sign({**dead_letter_headers(error, 1, routing_key), **headers}, raw, job_id),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=job_id,
    )
    await exchange.publish(message, routing_key)


def rejected() -> JobError:
    """What AWS answered to a job it was not allowed to start."""
    return RejectedByAws("AccessDeniedException", "User is not authorized to perform m2:StartBatchJob", http_status=403)


def invalid() -> JobError:
    """What the schema said of a job with a field too many."""
    return InvalidJob("InvalidJobMessage", "priority: Extra inputs are not permitted")


async def drain(broker, queue_name: str) -> list[str]:
    """Consume every message now in a queue; their job ids in queue order."""
    channel = await broker.connection.channel()
    try:
        queue = await channel.get_queue(queue_name)
        ids = []
        while (incoming := await queue.get(fail=False)) is not None:
            received = Received(
                incoming.body, dict(incoming.headers or {}), incoming.routing_key or "", incoming.info()
            )
            ids.append(job_id_of(received))
            await incoming.ack()
        return ids
    finally:
        await channel.close()


async def failed_results(broker, job_ids: list[str]) -> None:
    """Wait until each job has its failed result, so each is in the DLQ too (it is dead-lettered first)."""
    results = await broker.collect_ids(broker.results_queue, job_ids)
    assert {message.json()["outcome"] for messages in results.values() for message in messages} == {"failed"}


async def test_list_leaves_the_queue_as_it_was(declare, broker, cli):
    """`list` (filtered, limited, table or JSON) shows what matches and keeps all dead letters in order."""
    await declare()
    ids = [new_id() for _ in range(CHUNK_SIZE + 50)]
    for number, job_id in enumerate(ids):
        await dead_letter(broker, job_id, M2, rejected() if number % 2 else invalid())

    listed = await cli("dlq", "list", "--json", "--category", "rejected")
    table = await cli("dlq", "list", "--job-id", ids[0], "--job-id", ids[-1], "--newer-than", "1h")
    limited = await cli("dlq", "list", "--json", "--limit", "2", "--older-than", "0s")
    none = await cli("dlq", "list", "--json", "--older-than", "1d")

    assert listed.returncode == 0, listed.stderr
    assert [line["job_id"] for line in listed.json_lines()] == ids[1::2]
    assert {line["category"] for line in listed.json_lines()} == {"rejected"}
    assert f"listed {len(ids) // 2} of {len(ids)} dead letters" in listed.stderr
    assert table.returncode == 0, table.stderr
    assert ids[0] in table.stdout
    assert ids[-1] in table.stdout
    assert [line["job_id"] for line in limited.json_lines()] == ids[:2]
    assert none.json_lines() == []
    assert await drain(broker, broker.dead_queue) == ids


async def test_unknown_routing_key_that_expires_before_any_worker_still_reaches_the_dlq(declare, broker, cli):
    """With no worker running, a job to an unknown key that expires in triage is dead-lettered, read as `unroutable`."""
    await declare()
    job_id = new_id()
    await broker.publish(example_job(M2, job_id), "m2.StopBatchJob", expiration=0.05)

    async with asyncio.timeout(20):
        while not (
            await broker.channel.declare_queue(broker.dead_queue, passive=True)
        ).declaration_result.message_count:
            await asyncio.sleep(0.1)
    listed = await cli("dlq", "list", "--json", "--category", "unroutable")

    assert listed.returncode == 0, listed.stderr
    [line] = listed.json_lines()
    assert line["job_id"] == job_id
    assert line["error_code"] == "UnknownRoutingKey"
    assert "'m2.StopBatchJob'" in line["error_message"]
    assert "expiration" in line["error_message"]
    assert 0 <= line["age_s"] < 60


async def test_show_prints_the_whole_dead_letter(declare, broker, cli):
    """`show` prints the full error, properties, headers and the pretty body; bytes that are no text come as base64."""
    await declare()
    job_id, binary_id = new_id(), new_id()
    long_message = "params.jobParams: " + "x" * 150 + " is not a valid parameter name"
    await dead_letter(broker, job_id, M2, InvalidJob("InvalidParameters", long_message), traceparent="00-trace-01")
    await dead_letter(broker, binary_id, M2, invalid(), body=b"\xff\x00\x1b[31m")

    shown = await cli("dlq", "show", job_id)
    binary = await cli("dlq", "show", binary_id)
    missing = await cli("dlq", "show", "no-such-job")

    assert shown.returncode == 0, shown.stderr
    assert "".join(long_message.split()) in "".join(shown.stdout.split())
    for text in (
        "InvalidParameters",
        "00-trace-01",
        "x-dispatcher-original-routing-key",
        '"applicationId": "app-billing"',
    ):
        assert text in shown.stdout, text
    assert binary.returncode == 0, binary.stderr
    assert "/wAbWzMxbQ==" in binary.stdout
    assert "\x1b" not in binary.stdout
    assert missing.returncode == 1
    assert "no-such-job" in missing.stderr
    assert await drain(broker, broker.dead_queue) == [job_id, binary_id]


async def test_replay_copy_is_the_job_as_first_published(declare, broker, cli):
    """A replayed copy keeps body, message_id and other headers, loses every dead-letter header and counts replays."""
    await declare()
    job_id = new_id()
    body = orjson.dumps(example_job(M2, job_id))
    await dead_letter(
        broker, job_id, M2, rejected(), body=body, traceparent="00-trace-01", **{"x-dispatcher-replays": 2}
    )

    replayed = await cli("dlq", "replay")

    assert replayed.returncode == 0, replayed.stderr
    assert "moved 1, kept 0, failed 0" in replayed.stderr
    [copy] = await broker.collect(f"{broker.prefix}.jobs.{M2}", 1)
    assert copy.body == body
    assert copy.properties["message_id"] == job_id
    assert copy.properties["delivery_mode"] == DeliveryMode.PERSISTENT
    headers = {name: value for name, value in copy.headers.items() if name != "x-delivery-count"}
    assert headers == {"traceparent": "00-trace-01", "x-dispatcher-replays": 3}
    assert await drain(broker, broker.dead_queue) == []


async def test_replay_moves_only_matching_dead_letters_which_then_succeed(start_worker, broker, emulator, cli):
    """Once AWS is fixed, `replay --service m2` moves the m2 jobs, which succeed; the rest stay, in order."""
    emulator.state.replace_faults(parse_faults({M2: ACCESS_DENIED, DATAZONE: ACCESS_DENIED}))
    await start_worker()
    m2_ids, datazone_ids, invalid_id = [new_id() for _ in range(3)], [new_id() for _ in range(2)], new_id()
    for job_id in m2_ids:
        await broker.publish(example_job(M2, job_id), M2, message_id=job_id)
    for job_id in datazone_ids:
        await broker.publish(example_job(DATAZONE, job_id), DATAZONE, message_id=job_id)
    await broker.publish(example_job(M2, invalid_id, priority="high"), M2, message_id=invalid_id)
    await failed_results(broker, [*m2_ids, *datazone_ids, invalid_id])
    before = [line["job_id"] for line in (await cli("dlq", "list", "--json")).json_lines()]
    emulator.state.replace_faults({})

    dry = await cli("dlq", "replay", "--service", "m2", "--dry-run")
    replayed = await cli("dlq", "replay", "--service", "m2")

    assert "would move 3, would keep 1 (dry run)" in dry.stderr
    assert replayed.returncode == 0, replayed.stderr
    assert "moved 3, kept 1, failed 0" in replayed.stderr
    assert invalid_id in replayed.stdout
    results = await broker.collect_ids(broker.results_queue, m2_ids)
    assert {job_id: [m.json()["outcome"] for m in results[job_id]] for job_id in m2_ids} == {
        job_id: ["succeeded"] for job_id in m2_ids
    }
    assert await drain(broker, broker.dead_queue) == [job_id for job_id in before if job_id not in m2_ids]


async def test_replay_killed_midway_loses_nothing(start_worker, broker, cli_env):
    """A rate-limited replay killed with SIGKILL leaves every job either replayed (and run) or still dead-lettered."""
    await start_worker()
    ids = [new_id() for _ in range(20)]
    for job_id in ids:
        await dead_letter(broker, job_id, M2, rejected())
    process = await start_cli(cli_env, "dlq", "replay", "--rate", "5")
    succeeded: set[str] = set()
    async with asyncio.timeout(30):
        while not succeeded:
            succeeded |= {job_id for job_id in await drain(broker, broker.results_queue) if job_id in ids}
            await asyncio.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    await process.wait()

    still_dead: set[str] = set()
    async with asyncio.timeout(30):
        while not set(ids) <= succeeded | still_dead:
            succeeded |= set(await drain(broker, broker.results_queue))
            still_dead |= set(await drain(broker, broker.dead_queue))
            await asyncio.sleep(0.2)
    assert succeeded & set(ids)
    assert still_dead, "the replay finished before it was killed: nothing was tested"


async def test_purge_backs_up_what_it_deletes(declare, broker, cli, tmp_path):
    """`purge` refuses without --yes; with --backup it writes exactly what it deletes, and the rest stay in order."""
    await declare()
    ids = [new_id() for _ in range(6)]
    for number, job_id in enumerate(ids):
        await dead_letter(broker, job_id, M2, invalid() if number % 2 else rejected())
    backup = tmp_path / "purged.jsonl"

    refused = await cli("dlq", "purge", "--category", "invalid")
    dry = await cli("dlq", "purge", "--category", "invalid", "--dry-run")
    purged = await cli("dlq", "purge", "--category", "invalid", "--backup", str(backup), "--yes")

    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert "would delete 3 of 6" in dry.stderr
    assert purged.returncode == 0, purged.stderr
    assert "deleted 3 of 6" in purged.stderr
    records = [orjson.loads(line) for line in backup.read_bytes().splitlines()]
    assert [record["body"]["job_id"] for record in records] == ids[1::2]
    assert {record["headers"]["x-dispatcher-category"] for record in records} == {"invalid"}
    assert all(record["properties"]["message_id"] == record["body"]["job_id"] for record in records)
    assert await drain(broker, broker.dead_queue) == ids[0::2]


async def test_export_then_submit_file_runs_the_edited_jobs(start_worker, broker, emulator, cli, tmp_path):
    """Jobs exported from the DLQ (which keeps them), edited and published with `submit --file` run with the edits."""
    emulator.state.replace_faults(parse_faults({M2: ACCESS_DENIED}))
    await start_worker()
    ids = [new_id(), new_id()]
    for job_id in ids:
        await broker.publish(example_job(M2, job_id), M2, message_id=job_id)
    await failed_results(broker, ids)
    emulator.state.replace_faults({})
    exported_file = tmp_path / "dead.jsonl"

    exported = await cli("dlq", "export", str(exported_file))
    records = [orjson.loads(line) for line in exported_file.read_bytes().splitlines()]
    for record in records:
        record["body"]["metadata"] = {"edited": "yes"}
    exported_file.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    purged = await cli("dlq", "purge", "--yes")
    submitted = await cli("submit", "--file", str(exported_file))

    assert exported.returncode == 0, exported.stderr
    assert sorted(record["body"]["job_id"] for record in records) == sorted(ids)
    assert "deleted 2 of 2" in purged.stderr
    assert submitted.returncode == 0, submitted.stderr
    assert sorted(submitted.stdout.split()) == sorted(ids)
    results = await broker.collect_ids(broker.results_queue, ids)
    for job_id in ids:
        [result] = [message.json() for message in results[job_id]]
        assert (result["outcome"], result["metadata"]) == ("succeeded", {"edited": "yes"})


async def test_submit_wait_prints_the_result_and_exits_by_outcome(start_worker, emulator, cli):
    """`submit --wait` prints the result: exit 0 when the job started, 1 when AWS refused it."""
    await start_worker()
    params = orjson.dumps(example_job(M2, "unused")["params"]).decode()
    submit = ("submit", "--service", "m2", "--operation", "StartBatchJob", "--params", params, "--wait")

    succeeded = await cli(*submit, "--job-id", "job-wait-ok")
    emulator.state.replace_faults(parse_faults({M2: ACCESS_DENIED}))
    failed = await cli(*submit, "--job-id", "job-wait-denied")

    assert succeeded.returncode == 0, succeeded.stderr
    assert orjson.loads(succeeded.stdout)["outcome"] == "succeeded"
    assert orjson.loads(succeeded.stdout)["job_id"] == "job-wait-ok"
    assert failed.returncode == 1, failed.stderr
    result = orjson.loads(failed.stdout)
    assert (result["outcome"], result["error"]["code"]) == ("failed", "AccessDeniedException")
