# ruff: noqa: F811 - the cli and cli_env fixtures are imported from test_dlq
"""The dlq commands' safe paths: export-and-purge, purge by export file, busy queues, operator UX."""

from __future__ import annotations

import asyncio
import signal

import orjson

from dispatcher.errors import InvalidJob
from dispatcher.examples import example_job
from tests.integration.support import start_cli
from tests.integration.test_dlq import (  # noqa: F401 - cli and cli_env are fixtures
    M2,
    cli,
    cli_env,
    dead_letter,
    drain,
    invalid,
    new_id,
    rejected,
)


async def test_purge_from_file_spares_a_letter_that_arrived_after_the_export(declare, broker, cli, tmp_path):
    """The documented recipe: export, edit, purge --from-file: a letter that came in between stays."""
    await declare()
    old = [new_id() for _ in range(3)]
    for job_id in old:
        await dead_letter(broker, job_id, M2, invalid())
    await dead_letter(broker, kept := new_id(), M2, rejected())
    exported_file = tmp_path / "invalid.jsonl"

    exported = await cli("dlq", "export", "--category", "invalid", str(exported_file))
    late = new_id()
    await dead_letter(broker, late, M2, invalid())  # arrives after the export
    records = [orjson.loads(line) for line in exported_file.read_bytes().splitlines()]
    for record in records:
        record["body"]["metadata"] = {"edited": "yes"}  # the operator fixes the jobs in the file
    exported_file.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    purged = await cli("dlq", "purge", "--from-file", str(exported_file), "--yes")

    assert exported.returncode == 0, exported.stderr
    assert purged.returncode == 0, purged.stderr
    assert "deleted 3 of 5" in purged.stderr
    assert await drain(broker, broker.dead_queue) == [kept, late]


async def test_purge_from_file_matches_the_body_as_exported_not_only_the_job_id(declare, broker, cli, tmp_path):
    """A letter with an exported message_id but another body (the job, dead-lettered again) is not deleted."""
    await declare()
    job_id = new_id()
    await dead_letter(broker, job_id, M2, invalid())
    exported_file = tmp_path / "one.jsonl"
    await cli("dlq", "export", str(exported_file))
    other_body = orjson.dumps(example_job(M2, job_id, metadata={"second": "try"}))
    await dead_letter(broker, job_id, M2, invalid(), body=other_body)

    purged = await cli("dlq", "purge", "--from-file", str(exported_file), "--yes")
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_bytes(orjson.dumps({"properties": {"message_id": job_id}, "body": {"job_id": job_id}}) + b"\n")
    refused = await cli("dlq", "purge", "--from-file", str(legacy), "--yes")

    assert "deleted 1 of 2" in purged.stderr
    assert refused.returncode == 2
    assert "export it again" in refused.stderr
    channel = await broker.connection.channel()
    queue = await channel.get_queue(broker.dead_queue)
    remaining = await queue.get()
    assert remaining.body == other_body
    await remaining.ack()
    await channel.close()


async def test_export_purge_deletes_exactly_what_it_wrote(declare, broker, cli, tmp_path):
    """`export --purge` writes and syncs each letter before deleting it; the rest stay in order."""
    await declare()
    ids = [new_id() for _ in range(6)]
    for number, job_id in enumerate(ids):
        await dead_letter(broker, job_id, M2, invalid() if number % 2 else rejected())
    target = tmp_path / "invalid.jsonl"

    done = await cli("dlq", "export", "--category", "invalid", "--purge", str(target))
    again = await cli("dlq", "export", "--category", "invalid", str(target))
    forced = await cli("dlq", "export", "--force", str(target))
    to_stdout = await cli("dlq", "export", "--purge", "-")

    assert done.returncode == 0, done.stderr
    assert "exported and deleted 3 of 6" in done.stderr
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert forced.returncode == 0, forced.stderr
    assert [orjson.loads(line)["body"]["job_id"] for line in target.read_bytes().splitlines()] == ids[0::2]
    assert to_stdout.returncode == 2
    assert await drain(broker, broker.dead_queue) == ids[0::2]


async def test_a_command_sees_that_a_running_replay_holds_the_letters(declare, broker, cli, cli_env):
    """While a replay holds every letter, `list` warns that it is incomplete and `purge` refuses."""
    await declare()
    ids = [new_id() for _ in range(30)]
    for job_id in ids:
        await dead_letter(broker, job_id, M2, rejected())
    # 30 s of replay at 1/s: still running, on a loaded machine too, when the three commands below are done.
    replaying = await start_cli(cli_env, "dlq", "replay", "--rate", "1")
    jobs_queue = f"{broker.prefix}.jobs.{M2}"
    async with asyncio.timeout(30):
        while not (await broker.channel.declare_queue(jobs_queue, passive=True)).declaration_result.message_count:
            await asyncio.sleep(0.1)

    listed = await cli("dlq", "list")
    purged = await cli("dlq", "purge", "--yes")
    replayed = await cli("dlq", "replay")
    replaying.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(replaying.communicate(), 30)

    assert listed.returncode == 0, listed.stderr
    assert "another `dispatcher dlq` command is running" in listed.stderr
    assert "incomplete" in listed.stderr
    assert purged.returncode == 1
    assert "nothing was changed" in purged.stderr
    assert replayed.returncode == 1
    assert "another `dispatcher dlq` command is running" in replayed.stderr
    assert replaying.returncode == 130
    moved = int(stderr.decode().split("interrupted: moved ", 1)[1].split(",", 1)[0])
    assert f"{len(ids) - moved} left" in stderr.decode()
    assert len(await drain(broker, broker.dead_queue)) == len(ids) - moved


async def test_a_foreign_consumer_on_the_dlq_is_reported(declare, broker, cli):
    """A consumer attached to the DLQ (holding letters unacked) makes `list` warn and `purge` refuse."""
    await declare()
    await dead_letter(broker, new_id(), M2, rejected())
    channel = await broker.connection.channel()
    queue = await channel.get_queue(broker.dead_queue)
    held: asyncio.Queue[object] = asyncio.Queue()
    tag = await queue.consume(held.put)
    await asyncio.wait_for(held.get(), 10)

    listed = await cli("dlq", "list")
    purged = await cli("dlq", "purge", "--yes")
    await queue.cancel(tag)
    await channel.close()

    assert "0 of 0" in listed.stderr
    assert "1 other consumer(s) are attached" in listed.stderr
    assert purged.returncode == 1
    assert "nothing was changed" in purged.stderr


async def test_replay_without_a_terminal_prints_progress_lines_and_ctrl_c_says_what_it_did(declare, broker, cli_env):
    """Piped, a slow replay prints a progress line every few seconds; SIGINT ends it with a summary.

    At 4/s the 40 letters take 10 s: SIGINT, sent after the first progress line, finds it running.
    """
    await declare()
    ids = [new_id() for _ in range(40)]
    for job_id in ids:
        await dead_letter(broker, job_id, M2, rejected())
    process = await start_cli({**cli_env, "DISPATCHER_DLQ_PROGRESS_EVERY_S": "0.5"}, "dlq", "replay", "--rate", "4")
    assert process.stderr is not None
    first = await asyncio.wait_for(process.stderr.readline(), 30)
    process.send_signal(signal.SIGINT)
    rest = await asyncio.wait_for(process.stderr.read(), 30)
    await process.wait()

    assert first.decode().startswith("replaying: ")
    assert "of 40 dead letters read, moved" in first.decode()
    assert process.returncode == 130
    summary = rest.decode()
    assert "interrupted: moved " in summary
    moved = int(summary.split("interrupted: moved ", 1)[1].split(",", 1)[0])
    assert 0 < moved < len(ids)
    assert f"{len(ids) - moved} left" in summary
    assert len(await drain(broker, broker.dead_queue)) == len(ids) - moved


async def test_list_without_a_terminal_prints_tab_separated_columns(declare, broker, cli):
    """Piped, `list` prints a header and one tab-separated line per letter, the whole message, nothing wrapped."""
    await declare()
    job_id = "billing-nightly-2026-11-23-with-a-rather-long-identifier"
    long_message = "params.jobParams: " + " ".join(["word"] * 40)
    await dead_letter(broker, job_id, "lookoutequipment.StartDataIngestionJob", invalid(), body=None)
    await dead_letter(broker, "second", M2, InvalidJob("InvalidParameters", long_message))

    listed = await cli("dlq", "list")

    lines = listed.stdout.splitlines()
    assert lines[0].split("\t") == ["job id", "operation", "category", "error code", "message", "attempts", "age"]
    assert lines[1].split("\t")[:2] == [job_id, "lookoutequipment.StartDataIngestionJob"]
    assert lines[2].split("\t")[4] == long_message
    assert len(lines) == 3
