"""The rendered overlays agree with `dispatcher capacity`: KEDA bounds, pod resources, memory bound."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from dispatcher import capacity
from dispatcher.cli import app
from dispatcher.registry import default_registry
from dispatcher.settings import read_config_file

DEPLOY = Path(__file__).parents[2] / "deploy"
PROD = DEPLOY / "overlays" / "prod"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl (the deploy dependency group) renders the overlays")


@functools.cache
def rendered(overlay: Path) -> tuple[dict[str, Any], ...]:
    """The overlay as `kubectl kustomize` renders it, as .ci/check-deploy does."""
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(overlay)], check=True, capture_output=True, text=True, timeout=60)
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def one(overlay: Path, kind: str) -> dict[str, Any]:
    """The overlay's only document of this kind."""
    [document] = [doc for doc in rendered(overlay) if doc["kind"] == kind]
    return document


def container(overlay: Path) -> dict[str, Any]:
    """The worker container of the overlay's Deployment."""
    [worker] = one(overlay, "Deployment")["spec"]["template"]["spec"]["containers"]
    return worker


def config(overlay: Path) -> dict[str, Any]:
    """The settings file the overlay's ConfigMap mounts."""
    data = one(overlay, "ConfigMap")["data"]["config.yaml"]
    return yaml.safe_load(data) or {}


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity.removesuffix(suffix)) * factor
    return float(quantity) / (1024 * 1024)


def command_output(config_file: Path) -> dict[str, Any]:
    """What `dispatcher capacity --config FILE --json` prints."""
    result = CliRunner().invoke(app, ["capacity", "--config", str(config_file), "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = orjson.loads(result.stdout)
    return document


@needs_kubectl
def test_prod_overlay_is_what_the_command_recommends_for_its_config():
    """ScaledObject bounds, pod requests and limits, prefetch and expected_replicas equal the command's figures."""
    figures = command_output(PROD / "config.yaml")
    scaled = one(PROD, "ScaledObject")["spec"]
    resources = container(PROD)["resources"]
    settings = config(PROD)
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (figures["min_replicas"], figures["max_replicas"])
    assert scaled["fallback"]["replicas"] == figures["min_replicas"]
    assert resources["requests"] == {"cpu": figures["cpu_request"], "memory": figures["memory_request"]}
    assert resources["limits"] == {"memory": figures["memory_limit"]}
    assert settings["concurrency"] == figures["concurrency"]
    assert settings["follow_concurrency"] == figures["follow_concurrency"]
    assert settings["expected_replicas"] == figures["expected_replicas"]


@needs_kubectl
def test_prod_expected_replicas_is_the_scaled_objects_maximum():
    """In a Redis outage each pod takes rate / expected_replicas: at maxReplicaCount the fleet keeps to the rates."""
    assert config(PROD)["expected_replicas"] == one(PROD, "ScaledObject")["spec"]["maxReplicaCount"]


@needs_kubectl
@pytest.mark.parametrize("overlay", [DEPLOY / "base", DEPLOY / "overlays" / "dev", PROD], ids=lambda p: p.name)
def test_memory_limit_covers_the_worst_case_of_the_config(overlay):
    """Every held message at max_message_bytes, decoded, plus the baseline fits the container's memory limit."""
    worker = container(overlay)
    settings = config(overlay)
    limit_mib = mebibytes(worker["resources"]["limits"]["memory"])
    registry = default_registry()
    followed = sum(1 for op in registry if op.companion is not None)
    defaults = read_config_file(Path(__file__).parents[2] / "config" / "default.yaml")
    messages = capacity.in_flight_messages(
        settings.get("concurrency", defaults["concurrency"]),
        settings.get("follow_concurrency", defaults["follow_concurrency"]),
        len(registry),
        followed,
    )
    worst = capacity.worst_case_mib(messages, settings.get("max_message_bytes", defaults["max_message_bytes"]))
    assert worst <= limit_mib, f"{overlay.name}: {worst:.0f} MiB worst case over a {limit_mib:.0f} MiB limit"
    # The worker checks the same at start-up, against the limit the downward API gives it.
    [variable] = [env for env in worker["env"] if env["name"] == "DISPATCHER_MEMORY_LIMIT_MIB"]
    field = variable["valueFrom"]["resourceFieldRef"]
    assert (field["resource"], field["divisor"], field["containerName"]) == ("limits.memory", "1Mi", worker["name"])
