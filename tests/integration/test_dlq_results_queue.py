"""The bounded results queue: the default bound, drop-head under confirms, and queues declared before it."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import aio_pika
import pytest
from aio_pika import Message
from aio_pika.exceptions import ChannelPreconditionFailed

from dispatcher import metrics
from dispatcher.publisher import publish_confirmed
from dispatcher.registry import default_registry
from dispatcher.topology import QUORUM, RESULTS_MAX_LENGTH, Names, declare_topology, results_queue_arguments
from tests.integration.support import start_cli
from tests.integration.test_dlq import cli_env  # noqa: F401 - a fixture

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def names_of(prefix: str) -> Names:
    """The names of a test's topology."""
    return Names(f"{prefix}.jobs", f"{prefix}.results", f"{prefix}.dead")


@contextlib.asynccontextmanager
async def declare(amqp_url: str, prefix: str, **options: Any) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """Declare the test's topology on a confirming channel, as the worker does; the channel stays open."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await declare_topology(
            channel,
            names_of(prefix),
            default_registry().routing_keys,
            retry_delays_s=[0.2, 0.4],
            delivery_limit=10,
            **options,
        )
        yield channel


async def test_the_results_queue_is_declared_with_the_documented_bound(amqp_url, prefix):
    """`dispatcher topology` and the worker declare dispatcher.results bounded, dropping its oldest results."""
    async with declare(amqp_url, prefix) as channel:
        same = await channel.declare_queue(
            names_of(prefix).results_queue, durable=True, arguments=results_queue_arguments()
        )
        assert same.declaration_result.message_count == 0
        assert results_queue_arguments()["x-max-length"] == RESULTS_MAX_LENGTH
        assert results_queue_arguments()["x-overflow"] == "drop-head"
        assert metrics.RESULTS_QUEUE_BOUNDED._value.get() == 1
        with pytest.raises(ChannelPreconditionFailed):
            await channel.declare_queue(names_of(prefix).results_queue, durable=True, arguments=QUORUM)


async def test_a_full_results_queue_never_fails_a_confirmed_mandatory_result_publish(amqp_url, prefix):
    """Past the bound every result publish is still confirmed (nothing is requeued); the oldest are dropped."""
    async with declare(amqp_url, prefix, results_arguments=results_queue_arguments(max_length=5)) as channel:
        exchange = await channel.get_exchange(names_of(prefix).results_exchange)
        for number in range(12):
            await publish_confirmed(
                exchange, Message(str(number).encode(), message_id=str(number)), M2_SUCCEEDED, timeout_s=5
            )
        queue = await channel.get_queue(names_of(prefix).results_queue)
        kept = []
        while (message := await queue.get(fail=False)) is not None:
            kept.append(message.body.decode())
            await message.ack()
        assert kept == [str(number) for number in range(7, 12)]


M2_SUCCEEDED = "m2.StartBatchJob.succeeded"


async def test_a_results_queue_declared_before_the_bound_keeps_working(amqp_url, prefix, cli_env):  # noqa: F811
    """An existing unbounded dispatcher.results (declared by an older version) is used as it is, not a 406."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        old = await connection.channel()
        await old.declare_queue(names_of(prefix).results_queue, durable=True, arguments=QUORUM)
    async with declare(amqp_url, prefix) as channel:
        exchange = await channel.get_exchange(names_of(prefix).results_exchange)
        await publish_confirmed(exchange, Message(b"{}", message_id="after-upgrade"), M2_SUCCEEDED, timeout_s=5)
        queue = await channel.get_queue(names_of(prefix).results_queue)
        message = await queue.get()
        assert message.message_id == "after-upgrade"
        await message.ack()
        assert metrics.RESULTS_QUEUE_BOUNDED._value.get() == 0

    process = await start_cli(cli_env, "topology")
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()


async def test_the_documented_operator_policy_bounds_a_results_queue_declared_before_the_bound(amqp_url, vhost, prefix):
    """The upgrade path of deployment.md: an operator policy bounds the old queue in place, dropping the oldest."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        old = await connection.channel()
        await old.declare_queue(names_of(prefix).results_queue, durable=True, arguments=QUORUM)
    pattern = "^" + re.escape(names_of(prefix).results_queue) + "$"
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None
    subprocess.run(
        [
            ctl,
            "set_operator_policy",
            "-p",
            vhost,
            f"{prefix}-results",
            pattern,
            '{"max-length": 3}',
            "--apply-to",
            "queues",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    async with declare(amqp_url, prefix) as channel:
        exchange = await channel.get_exchange(names_of(prefix).results_exchange)
        for number in range(8):
            await publish_confirmed(exchange, Message(str(number).encode()), M2_SUCCEEDED, timeout_s=5)
        queue = await channel.get_queue(names_of(prefix).results_queue)
        kept = []
        while (message := await queue.get(fail=False)) is not None:
            kept.append(message.body.decode())
            await message.ack()
    assert kept == ["5", "6", "7"]
