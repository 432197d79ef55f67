"""`dispatcher --debug` shows no fragment of the broker password, whatever characters it holds.

A `#`, `/` or `?` would make a URL parser end the password early and read its start as a port,
which then shows in the parser's error; the CLI refuses such a URL before it is parsed. Every
other password reaches the broker, fails there, and is masked in the traceback and the logs.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from tests.integration.support import REPO_ROOT

CUT_BY_PARSERS = "#/?"


def leaked(text: str, password: str) -> list[str]:
    """The pieces of `password` (split at its special characters) found in `text`."""
    return [piece for piece in re.split(r"[#/?@:% ]+", password) if piece and piece in text]


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_env(url: str) -> dict[str, str]:
    """The test environment (AWS pointed nowhere real) with this broker URL and debug logging."""
    return {**os.environ, "DISPATCHER_AMQP_URL": url, "DISPATCHER_LOG_LEVEL": "debug", "DISPATCHER_HTTP_PORT": "0"}


PASSWORDS = [f"Kq7{special}Zx9" for special in "#/?@:% "] + ["Kq7@Zx9:Wm4%Pt6 Rb2#", "Kq7%40Zx9@@Wm4"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("broker", ["closed-port", "wrong-password"])
def test_topology_with_debug_shows_no_fragment(password, broker, amqp_url):
    """A refused or failed connection ends in one masked sentence and a masked traceback."""
    if broker == "closed-port":
        url = f"amqp://dispatcher:{password}@127.0.0.1:{closed_port()}/jobs"
    else:
        url = amqp_url.replace("guest:guest", f"guest:{password}")
    run = subprocess.run(
        [sys.executable, "-m", "dispatcher", "--debug", "topology"],
        env=cli_env(url),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = run.stdout + run.stderr
    if any(char in password for char in CUT_BY_PARSERS):
        assert run.returncode == 2, output
        assert "DISPATCHER_AMQP_URL: a '#', '/' or '?' in the password must be percent-encoded" in output
    else:
        assert run.returncode == 1, output
        assert "Traceback (most recent call last)" in output, "no traceback, so --debug was not exercised"
    assert leaked(output, password) == []


async def test_run_with_debug_logs_no_fragment_while_the_broker_is_unreachable():
    """The worker's retries are logged at debug level with the password masked."""
    password = "Kq7@Zx9:Wm4%Pt6 Rb2"  # noqa: S105 - made up, to be looked for
    url = f"amqp://dispatcher:{password}@127.0.0.1:{closed_port()}/jobs"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatcher",
        "--debug",
        "run",
        env={**cli_env(url), "DISPATCHER_LOG_FORMAT": "json"},
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while b"broker_unavailable" not in b"".join(lines):
                line = await process.stderr.readline()
                assert line, b"".join(lines).decode()
                lines.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    output = (b"".join(lines) + stdout + stderr).decode()
    assert process.returncode == 0, output
    assert leaked(output, password) == []
