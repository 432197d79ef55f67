"""The published contract (JSON Schemas, AsyncAPI document, example jobs) is what the code says today."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any

import orjson
import yaml
from jsonschema import Draft202012Validator

from dispatcher.envelope import Decoder
from dispatcher.registry import default_registry
from tools import write_schemas
from tools.write_schemas import ASYNCAPI, COMPLETION_SCHEMA, DOCS, REPO_ROOT, RESULT_SCHEMA, main, render


def test_committed_files_are_what_the_code_generates() -> None:
    """`write_schemas.py --check`, in a fresh interpreter as `make` runs it, finds every file under docs/ fresh."""
    checked = subprocess.run(
        [sys.executable, "tools/write_schemas.py", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, f"stale: run `make schemas`\n{checked.stdout}{checked.stderr}"
    assert checked.stdout == ""


def test_check_mode_fails_with_a_diff_on_a_stale_file(tmp_path, monkeypatch, capsys) -> None:
    """`--check` exits 1 and shows the difference when a committed file was edited by hand."""
    shutil.copytree(DOCS, tmp_path, dirs_exist_ok=True)
    stale = tmp_path / ASYNCAPI
    stale.write_text(stale.read_text(encoding="utf-8").replace("dispatcher.dead", "dispatcher.graveyard"))
    monkeypatch.setattr(write_schemas, "DOCS", tmp_path)
    assert main(["--check"]) == 1
    assert "-    address: dispatcher.graveyard" in capsys.readouterr().out


def test_asyncapi_has_a_job_channel_and_queue_per_registered_operation() -> None:
    """Every operation has its routing key on the jobs exchange and its own queue, with a message of its schema."""
    document = yaml.safe_load(render()[ASYNCAPI])
    channels = document["channels"]
    for operation in default_registry():
        key = operation.routing_key.replace(".", "_")
        assert channels[f"jobs_{key}"]["address"] == operation.routing_key
        assert channels[f"jobs_{key}"]["bindings"]["amqp"]["exchange"]["name"] == "dispatcher.jobs"
        assert channels[f"jobQueue_{key}"]["address"] == f"dispatcher.jobs.{operation.routing_key}"
        assert document["operations"][f"start_{key}"]["action"] == "receive"
    assert channels["deadLetterQueue"]["address"] == "dispatcher.dead"


def publishers_guide_blocks() -> list[dict[str, Any]]:
    """The JSON objects docs/publishers.md shows."""
    text = (DOCS / "publishers.md").read_text(encoding="utf-8")
    return [orjson.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)]


def test_publishers_guide_has_one_valid_example_job_per_operation() -> None:
    """Each JSON job in docs/publishers.md passes the worker's validation, and every operation has one.

    Jobs with `follow` are examples of following, on top of the one plain job per operation.
    """
    jobs = [block for block in publishers_guide_blocks() if "params" in block]
    registry = default_registry()
    decoder = Decoder(registry, "us-east-1", ("us-east-1",), max_message_bytes=8 * 1024 * 1024)
    for job in jobs:
        decoder.decode(orjson.dumps(job), f"{job['service']}.{job['operation']}", None)
    plain = [job for job in jobs if "follow" not in job]
    assert sorted(f"{job['service']}.{job['operation']}" for job in plain) == sorted(registry.routing_keys)
    assert any("follow" in job for job in jobs), "no example of a followed job"


def test_publishers_guide_results_and_completions_are_valid() -> None:
    """The results and completions docs/publishers.md shows pass their committed schemas."""
    blocks = publishers_guide_blocks()
    schemas = {"outcome": RESULT_SCHEMA, "phase": COMPLETION_SCHEMA}
    for key, path in schemas.items():
        shown = [block for block in blocks if key in block]
        assert shown, f"no {path} example"
        validator = Draft202012Validator(orjson.loads((DOCS / path).read_bytes()))
        for block in shown:
            assert list(validator.iter_errors(block)) == [], block


def test_asyncapi_lists_the_follow_queues_as_internal() -> None:
    """Each operation that can be followed has its follow queue in the AsyncAPI document, marked internal."""
    channels = yaml.safe_load(render()[ASYNCAPI])["channels"]
    for operation in default_registry():
        if operation.companion is None:
            continue
        channel = channels[f"followQueue_{operation.routing_key.replace('.', '_')}"]
        assert channel["address"] == f"dispatcher.jobs.follow.{operation.routing_key}"
        assert channel["description"].startswith("Internal.")
    assert channels["followWaitQueues"]["address"] == "dispatcher.jobs.follow.wait.{wait}"
