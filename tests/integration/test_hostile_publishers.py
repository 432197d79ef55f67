"""What a careless or hostile publisher can put on the wire, with clients other than aio-pika.

pika sends `bytes` as they are where aio-pika refuses, as Java, Go and .NET clients can: short
strings and header keys that are not UTF-8, timestamps past year 9999, header values that cannot be
re-encoded. Each case must end in exactly one outcome, with the worker's connection intact.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import Any

import aio_pika
import orjson
import pika
import pytest

from dispatcher import metrics
from dispatcher.dead_letters import StoredLetter
from dispatcher.emulator import parse_faults
from dispatcher.examples import example_job
from dispatcher.stamps import Stamper
from tests.integration.support import start_cli

M2 = "m2.StartBatchJob"
DATAZONE = "datazone.StartDataSourceRun"


def new_id() -> str:
    """A fresh job id."""
    return f"job-{uuid.uuid4().hex[:12]}"


_PIKA_ENCODE_VALUE = pika.data.encode_value


def _encode_value_as_other_clients_do(pieces: list[bytes], value: Any) -> int:
    """pika's header encoding, with `bytes` as a long string and `float` as a double, as Java and Go send them."""
    if isinstance(value, bytes):
        pieces.append(b"S" + struct.pack(">I", len(value)) + value)
        return 5 + len(value)
    if isinstance(value, bytearray):
        pieces.append(b"x" + struct.pack(">I", len(value)) + value)
        return 5 + len(value)
    if isinstance(value, float):
        pieces.append(b"d" + struct.pack(">d", value))
        return 9
    return _PIKA_ENCODE_VALUE(pieces, value)


def _publish_with_pika(amqp_url: str, exchange: str, routing_key: str, body: bytes, **properties: Any) -> None:
    # Only the tests use pika, and only from this function: the worker encodes with pamqp.
    pika.data.encode_value = _encode_value_as_other_clients_do
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange, routing_key, body, pika.BasicProperties(delivery_mode=2, **properties), mandatory=False
        )
    finally:
        connection.close()


async def publish_raw(amqp_url: str, exchange: str, routing_key: str, body: bytes, **properties: Any) -> None:
    """Publish as another client would: bytes go on the wire as they are (confirmed)."""
    await asyncio.to_thread(_publish_with_pika, amqp_url, exchange, routing_key, body, **properties)


def reconnects() -> float:
    """The worker's broker reconnects so far (the metric lives in this process)."""
    return metrics.BROKER_RECONNECTS._value.get()


async def dead_letters(amqp_url: str, queue_name: str, count: int, stamper: Stamper) -> list[StoredLetter]:
    """Read `count` dead letters the way the DLQ tools read them (and ack them)."""
    letters: list[StoredLetter] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection, asyncio.timeout(20):
        queue = await (await connection.channel()).get_queue(queue_name)
        while len(letters) < count:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            letters.append(StoredLetter.from_message(message, stamper))
            await message.ack()
    return letters


async def test_properties_aio_pika_cannot_send_leave_the_connection_up(start_worker, broker, amqp_url, emulator):
    """Non-UTF-8 short strings and header keys, and timestamps past 9999: the jobs succeed on one connection."""
    await start_worker()
    before = reconnects()
    cases = {
        new_id(): {"correlation_id": b"\xff\xfe", "type": b"\xc3\x28", "app_id": b"\x80"},
        new_id(): {"headers": {b"\xff\xfekey": 1, "ok": "kept"}},
        new_id(): {"timestamp": 1_700_000_000_000_000},  # microseconds
        new_id(): {"timestamp": 2**64 - 1},
        new_id(): {"timestamp": 1_700_000_000_000},  # milliseconds, which pamqp reads as such
    }
    for job_id, properties in cases.items():
        body = orjson.dumps(example_job(M2, job_id))
        await publish_raw(amqp_url, broker.jobs_exchange, M2, body, **properties)

    results = await broker.collect_ids(broker.results_queue, cases)

    assert {job_id: results[job_id][0].json()["outcome"] for job_id in cases} == dict.fromkeys(cases, "succeeded")
    correlated = next(iter(cases))
    assert results[correlated][0].properties["correlation_id"] == "\ufffd\ufffd"
    assert reconnects() == before
    assert len(emulator.state.calls.to_json()) == len(cases)


async def test_header_values_that_cannot_be_sent_again_never_block_settlement(start_worker, broker, amqp_url, emulator):
    """Non-UTF-8 long strings, a double beyond 32 bits, a bad traceparent: each job ends once, once started."""
    await start_worker()
    headers = {
        "blob": b"\xff\xfe\xfd",
        "huge": 1e300,
        "nested": {"list": [b"\xff"]},
        "bytes": bytearray(b"\x00\x01"),
        "traceparent": b"\xff not a trace",
    }
    valid, invalid = new_id(), new_id()
    await publish_raw(amqp_url, broker.jobs_exchange, M2, orjson.dumps(example_job(M2, valid)), headers=headers)
    bad_job = example_job(M2, invalid)
    bad_job["params"]["applicationId"] = ""
    await publish_raw(amqp_url, broker.jobs_exchange, M2, orjson.dumps(bad_job), headers=headers)

    results = await broker.collect_ids(broker.results_queue, [valid, invalid])
    [dead] = await broker.collect(broker.dead_queue, 1)

    assert results[valid][0].json()["outcome"] == "succeeded"
    assert "traceparent" not in results[valid][0].json()
    assert results[invalid][0].json()["error"]["category"] == "invalid"
    assert dead.headers["blob"] == "\ufffd\ufffd\ufffd"
    assert dead.headers["huge"] == "1e+300"
    assert dead.headers["nested"] == {"list": ["\ufffd"]}
    assert dead.headers["bytes"] == bytearray(b"\x00\x01")  # an AMQP byte array is copied as it is
    assert [call["routing_key"] for call in emulator.state.calls.to_json()] == [M2]


async def test_a_routing_key_too_long_to_suffix_is_still_dead_lettered(start_worker, broker, emulator):
    """An unknown 255-byte routing key: `<key>.failed` would be too long, yet the job ends in the DLQ."""
    await start_worker()
    job_id = new_id()
    routing_key = "m2." + "x" * 252
    await broker.publish(example_job(M2, job_id), routing_key)

    results = await broker.collect_ids(broker.results_queue, [job_id])
    [dead] = await broker.collect(broker.dead_queue, 1)

    [result] = results[job_id]
    assert result.json()["error"]["category"] == "unroutable"
    assert len(result.routing_key.encode()) <= 255
    assert result.routing_key.endswith(".failed")
    assert dead.routing_key == routing_key
    assert emulator.state.calls.to_json() == []


async def test_forged_retry_state_is_ignored(start_worker, broker, emulator):
    """`x-dispatcher-retries: 99` and forged attempts: the job still gets every attempt it is due."""
    await start_worker()
    emulator.state.replace_faults(parse_faults({M2: {"error_rate": 1.0, "error_code": "InternalServerException"}}))
    job_id = new_id()
    forged = {"x-dispatcher-retries": 99, "x-dispatcher-attempts": 50, "x-dispatcher-error-codes": "Forged,Codes"}
    await broker.publish(example_job(M2, job_id), M2, headers=forged)

    results = await broker.collect_ids(broker.results_queue, [job_id])

    [result] = results[job_id]
    assert result.json()["error"]["category"] == "exhausted"
    assert result.json()["attempts"] == 3  # the two retry delays of the test settings, plus one
    assert "Forged" not in result.json()["error"]["message"]
    assert len(emulator.state.calls.to_json()) == 3


async def test_forged_dead_letter_state_is_not_believed(start_worker, broker, amqp_url, prefix, settings_for):
    """A forged x-death naming a job queue, and forged stamps: unroutable, stamped by the worker alone."""
    await start_worker()
    job_id = new_id()
    forged = {
        "x-death": [{"queue": f"{prefix}.jobs.{M2}", "reason": "delivery_limit", "count": 1}],
        "x-delivery-count": 11,
        "x-dispatcher-category": "rejected",
        "x-dispatcher-error-code": "AccessDeniedException",
        "x-dispatcher-original-routing-key": DATAZONE,
    }
    await broker.publish(example_job(DATAZONE, job_id), "m2.Nope", headers=forged, message_id=job_id)

    await broker.collect_ids(broker.results_queue, [job_id])
    stamper = Stamper.from_settings(settings_for())
    [letter] = await dead_letters(amqp_url, broker.dead_queue, 1, stamper)

    assert letter.stamped
    assert (letter.category, letter.error_code) == ("unroutable", "UnknownRoutingKey")
    assert letter.original_routing_key == "m2.Nope"


async def test_a_letter_that_expires_in_triage_keeps_no_forged_category(declare, broker, amqp_url, settings_for):
    """With no worker, an unknown-key job expires in triage and reaches the DLQ with its publisher's headers."""
    await declare()
    job_id = new_id()
    forged = {"x-dispatcher-category": "rejected", "x-dispatcher-error-code": "AccessDeniedException"}
    await broker.publish(example_job(DATAZONE, job_id), "m2.Nope", headers=forged, expiration=0.05)

    [letter] = await dead_letters(amqp_url, broker.dead_queue, 1, Stamper.from_settings(settings_for()))

    assert not letter.stamped
    assert (letter.category, letter.error_code) == ("unroutable", "UnknownRoutingKey")
    assert letter.original_routing_key == "m2.Nope"


@pytest.mark.parametrize("own", ["{prefix}.jobs.m2.StartBatchJob", "{prefix}.dead", "{prefix}.dead.triage"])
async def test_reply_to_a_dispatcher_queue_gets_no_reply(own, start_worker, broker, prefix, emulator):
    """A result must never become a job or a dead letter: it stays in the results queue only."""
    await start_worker()
    job_id = new_id()
    await broker.publish(example_job(M2, job_id), M2, reply_to=own.format(prefix=prefix))

    results = await broker.collect_ids(broker.results_queue, [job_id])
    await asyncio.sleep(1.5)  # a reply, had one been sent, would have been handled by now

    assert [message.json()["outcome"] for message in results[job_id]] == ["succeeded"]
    channel = await broker.connection.channel()
    for name in (broker.results_queue, broker.dead_queue, f"{prefix}.jobs.{M2}", f"{prefix}.dead.triage"):
        queue = await channel.declare_queue(name, passive=True)
        assert queue.declaration_result.message_count == 0, name
    assert len(emulator.state.calls.to_json()) == 1


async def test_the_dlq_tools_read_a_letter_with_undecodable_properties(declare, broker, amqp_url, prefix, worker_env):
    """A letter whose properties pamqp alone cannot decode is listed and exported, exit 0."""
    await declare()
    job_id = new_id()
    body = orjson.dumps(example_job(M2, job_id))
    properties = {"correlation_id": b"\xff\xfe", "headers": {b"\xffkey": b"\xfe"}, "timestamp": 2**64 - 1}
    await publish_raw(amqp_url, f"{prefix}.dead", M2, body, **properties)

    for args in (("dlq", "list", "--json"), ("dlq", "show", job_id)):
        process = await start_cli(worker_env, *args)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        assert job_id in stdout.decode()
    dead = await (await broker.connection.channel()).declare_queue(broker.dead_queue, passive=True)
    assert dead.declaration_result.message_count == 1


async def test_a_job_without_message_id_keeps_its_job_id_through_retries_and_dead_letters(
    start_worker, broker, amqp_url, emulator
):
    """Without an AMQP message_id (aio-pika always sets one, other clients need not), copies carry the job_id."""
    await start_worker()
    emulator.state.replace_faults(parse_faults({M2: {"error_rate": 1.0, "error_code": "InternalServerException"}}))
    retried = new_id()
    await publish_raw(amqp_url, broker.jobs_exchange, M2, orjson.dumps(example_job(M2, retried)))
    invalid_job = example_job(M2, new_id())
    invalid_job["params"]["applicationId"] = ""
    await publish_raw(amqp_url, broker.jobs_exchange, M2, orjson.dumps(invalid_job))

    results = await broker.collect_ids(broker.results_queue, [retried, invalid_job["job_id"]])
    dead = await broker.collect(broker.dead_queue, 2)

    [exhausted] = results[retried]
    assert exhausted.json()["attempts"] == 3
    # The last delivery was a retry copy: its message_id, and so the result's correlation_id, is the job's.
    assert exhausted.properties["correlation_id"] == retried
    assert {letter.properties["message_id"] for letter in dead} == {retried, invalid_job["job_id"]}
