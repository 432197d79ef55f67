"""The command line as an operator meets it: configuration mistakes, --version, -h, --debug anywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dispatcher.refusals import VHOST_REFUSED
from tests.integration.support import REPO_ROOT, WorkerProcess


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m dispatcher ARGS` with these DISPATCHER_* variables (and no others)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        env={**clean, "COLUMNS": "400", **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_sentence(run: subprocess.CompletedProcess[str]) -> str:
    """The single error line on stderr, without the `error: ` prefix."""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_config_naming_no_file_exits_2(tmp_path, kind):
    """DISPATCHER_CONFIG naming a missing file or a directory does not run on defaults."""
    path = tmp_path / "nope.yaml" if kind == "missing" else tmp_path
    run = cli("topology", DISPATCHER_CONFIG=str(path))
    assert run.returncode == 2, run.stderr
    assert one_sentence(run).startswith(f"DISPATCHER_CONFIG={path}: ")


def test_config_syntax_error_exits_2_naming_file_and_line(tmp_path):
    """A YAML syntax error is one sentence with the file and the line."""
    config = tmp_path / "c.yaml"
    config.write_text("concurrency: 4\nretry_delays: [1, 2\nlog_level: info\n")
    run = cli("topology", DISPATCHER_CONFIG=str(config))
    assert run.returncode == 2, run.stderr
    assert one_sentence(run).startswith(f"{config}, line 3")


def test_unknown_variable_exits_2_with_a_suggestion():
    """DISPATCHER_CONCURENCY=4 is not accepted silently."""
    run = cli("topology", DISPATCHER_CONCURENCY="4")
    assert run.returncode == 2, run.stderr
    assert one_sentence(run) == "DISPATCHER_CONCURENCY is not a setting; did you mean DISPATCHER_CONCURRENCY?"


def test_bad_list_exits_2_without_pydantic_internals():
    """The variable is named with an example; pydantic-settings' source names are not."""
    run = cli("topology", DISPATCHER_RETRY_DELAYS="1,soon")
    assert run.returncode == 2, run.stderr
    sentence = one_sentence(run)
    assert sentence.startswith("DISPATCHER_RETRY_DELAYS")
    assert "e.g. DISPATCHER_RETRY_DELAYS=1,5,30" in sentence
    assert "EnvSettingsSource" not in run.stderr


def test_http_broker_url_exits_2():
    """http:// is refused before any connection, in one sentence."""
    run = cli("topology", DISPATCHER_AMQP_URL="http://guest:guest@127.0.0.1:15672/")
    assert run.returncode == 2, run.stderr
    assert one_sentence(run).startswith("DISPATCHER_AMQP_URL: http:// is not a broker URL")


def test_missing_vhost_exits_2_in_one_sentence(amqp_url):
    """A vhost that does not exist is named as the problem, not as aiormq's unexpected frame."""
    url = amqp_url.rsplit("/", 1)[0] + "/no-such-vhost-for-dispatcher-tests"
    run = cli("topology", DISPATCHER_AMQP_URL=url)
    assert run.returncode == 2, run.stderr
    sentence = one_sentence(run)
    assert sentence.startswith("the broker refused the vhost of DISPATCHER_AMQP_URL")
    assert "Connection.OpenOk" not in sentence


def test_version():
    """`dispatcher --version` prints the version and exits 0."""
    run = cli("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("dispatcher ")
    assert run.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize("args", [["-h"], ["submit", "-h"], ["dlq", "-h"]])
def test_short_help(args):
    """`-h` works as `--help`, for the app and its commands."""
    run = cli(*args)
    assert run.returncode == 0, run.stderr
    assert "Usage:" in run.stdout


@pytest.mark.parametrize(
    "args", [["--debug", "schema", "bogus"], ["schema", "--debug", "bogus"], ["schema", "bogus", "--debug"]]
)
def test_debug_before_or_after_the_subcommand(args):
    """`--debug` shows the traceback wherever it is placed."""
    run = cli(*args)
    assert run.returncode == 2, run.stderr
    assert "Traceback (most recent call last)" in run.stderr
    assert "unknown schema 'bogus'" in run.stderr


async def test_a_worker_whose_vhost_is_missing_says_so_in_one_sentence(worker_env, amqp_url):
    """`dispatcher run` keeps retrying (the vhost may be created), saying why in words, not frame internals."""
    missing = amqp_url.rsplit("/", 1)[0] + "/no-such-vhost"
    worker = await WorkerProcess.start({**worker_env, "DISPATCHER_AMQP_URL": missing}, wait_ready=False)
    try:
        await worker.wait_for_event("broker_unavailable", timeout_s=60)
        [first, *_] = worker.events("broker_unavailable")
        assert first["error"] == VHOST_REFUSED
    finally:
        worker.kill()
