"""Shared fixtures: a RabbitMQ vhost of the run's own, the emulator, and a worker factory."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

# AWS is the emulator, reached with dummy credentials; nothing of the host's AWS set-up is read.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
for _name in [k for k in os.environ if k.startswith("DISPATCHER_")]:
    del os.environ[_name]

BROKER = os.environ.get("TEST_AMQP_HOST", "127.0.0.1:5672")


def _rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl is not on PATH: install rabbitmq-server (see .ci/run)")
    subprocess.run([ctl, *args], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    """A vhost created for this test run and deleted after it, so runs never share queues."""
    name = f"dispatcher-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    _rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="session")
def amqp_url(vhost: str) -> str:
    """The broker URL of the test vhost."""
    return f"amqp://guest:guest@{BROKER}/{vhost}"
