"""Check rendered manifests where `kubernetes-validate` cannot: custom resources, cross-references.

Usage:
    python tools/check_crds.py --schemas DIR [--operations dispatcher/operations.py] RENDERED...

Each RENDERED file is the output of one `kubectl kustomize` (one overlay). For every document:

* a custom resource (KEDA, Prometheus Operator: PodMonitor, PrometheusRule) is validated against its JSON schema in DIR
  (apiVersion/kind -> file, see DIR/README.md), and its `metadata` against Kubernetes' ObjectMeta;
* any other kind must be one `kubernetes-validate` has a schema for: nothing passes unchecked.

Then, within each file, what no schema sees: the ScaledObject scales a Deployment of the same render
that has no `replicas` of its own, authenticates through a TriggerAuthentication of the render and
has one `rabbitmq` trigger (protocol http, mode QueueLength) per operation queue of the registry;
the PodMonitor selects the worker's pods and scrapes a port they name; the worker's
terminationGracePeriodSeconds covers DISPATCHER_SHUTDOWN_GRACE_S plus a margin, its liveness and
startup probes never use /readyz, it has CPU and memory requests and a memory limit; mounted
ConfigMaps are in the render. The Secrets it expects (never committed) are listed. With
--check-settings, the worker's environment and mounted config file are loaded into the real
`dispatcher.settings.Settings` (in a clean subprocess), so a wrong key or value fails here, not at
rollout.

Exit status: 0 when everything holds, 1 otherwise (every problem is printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate.utils as kv  # type: ignore[import-untyped]
import referencing
import yaml  # type: ignore[import-untyped]

CRD_SCHEMAS: dict[tuple[str, str], str] = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication_v1alpha1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor_v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule_v1.json",
}
QUEUE_PREFIX = "dispatcher.jobs."
WORKER_CONTAINER = "dispatcher"
DEFAULT_SHUTDOWN_GRACE_S = 30
SHUTDOWN_MARGIN_S = 10
REQUIRED_RESOURCES = (("requests", "cpu"), ("requests", "memory"), ("limits", "memory"))
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

Doc = dict[str, Any]


def object_meta_validator(kubernetes_version: str) -> Any:  # noqa: ANN401 (jsonschema is untyped)
    """Return a validator of Kubernetes ObjectMeta, from the schemas kubernetes-validate ships."""
    wanted = kv.major_minor(kubernetes_version)
    shipped = [v for v in kv.all_versions() if kv.major_minor(v) == wanted]
    if not shipped:
        msg = f"kubernetes-validate ships no schemas for Kubernetes {wanted}"
        raise SystemExit(msg)
    definitions = kv.schema_contents(
        f"kubernetes-json-schema/v{shipped[-1]}-local-strict/_definitions.json",
        kubernetes_version,
    )
    resource = referencing.Resource.from_contents(definitions)
    registry = referencing.Registry().with_resource(definitions["$id"], resource)
    meta = f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return jsonschema.Draft202012Validator({"$ref": meta}, registry=registry)


def has_kubernetes_schema(doc: Doc, kubernetes_version: str) -> bool:
    """Tell whether kubernetes-validate knows this apiVersion/kind (it validates those itself)."""
    try:
        kv.validate(doc, kubernetes_version, strict=True)
    except kv.SchemaNotFoundError:
        return False
    except jsonschema.ValidationError:
        return True
    return True


def path_of(error: jsonschema.ValidationError) -> str:
    """Return where in the document a schema error is, as a/b/0/c."""
    return "/".join(str(p) for p in error.absolute_path) or "(root)"


def check_schemas(docs: list[Doc], schema_dir: Path, kubernetes_version: str, where: str) -> list[str]:
    """Validate custom resources against their schemas; fail any kind that has no schema at all."""
    problems: list[str] = []
    meta_validator = object_meta_validator(kubernetes_version)
    for doc in docs:
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        metadata = doc.get("metadata", {})
        name = f"{key[1]}/{metadata.get('name', '?')}"
        if not DNS_SUBDOMAIN.match(str(metadata.get("name", ""))):
            problems.append(f"{where}: {name}: metadata.name is not a DNS subdomain")
        if key in CRD_SCHEMAS:
            schema = json.loads((schema_dir / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
            validator = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
            errors = [f"{path_of(e)}: {e.message}" for e in validator(schema).iter_errors(doc)]
            errors += [f"metadata/{path_of(e)}: {e.message}" for e in meta_validator.iter_errors(metadata)]
            problems += [f"{where}: {name}: {error}" for error in errors]
            if not errors:
                print(f"OK   {where}: {name} ({key[0]}) against {CRD_SCHEMAS[key]}")
        elif not has_kubernetes_schema(doc, kubernetes_version):
            problems.append(f"{where}: {name}: no schema for {key[0]} {key[1]}, not even a CRD's")
    return problems


def load_queue_names(operations_py: Path) -> set[str]:
    """Return the operation queues, from the registry module loaded by path (not the package)."""
    spec = importlib.util.spec_from_file_location("_dispatcher_operations", operations_py)
    if spec is None or spec.loader is None:
        msg = f"cannot load {operations_py}"
        raise SystemExit(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return {QUEUE_PREFIX + op.routing_key for op in module.OPERATION_SPECS}


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    """Return the documents of one kind, by name."""
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def pod_spec(deployment: Doc) -> Doc:
    """Return a Deployment's pod spec."""
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def check_deployment(name: str, deployment: Doc, configmaps: dict[str, Doc], where: str) -> list[str]:
    """Check the worker container: drain time, probes, resources, mounted ConfigMaps."""
    problems = [
        f"{where}: Deployment/{name}: ConfigMap {volume['configMap']['name']} not in the render"
        for volume in pod_spec(deployment).get("volumes", [])
        if "configMap" in volume and volume["configMap"]["name"] not in configmaps
    ]
    containers = pod_spec(deployment)["containers"]
    container = next((c for c in containers if c["name"] == WORKER_CONTAINER), None)
    if container is None:
        return [*problems, f"{where}: Deployment/{name}: no container named {WORKER_CONTAINER!r}"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    grace_s = int(env.get("DISPATCHER_SHUTDOWN_GRACE_S") or DEFAULT_SHUTDOWN_GRACE_S)
    termination_s = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
    if termination_s < grace_s + SHUTDOWN_MARGIN_S:
        problems.append(
            f"{where}: Deployment/{name}: terminationGracePeriodSeconds {termination_s} < "
            f"DISPATCHER_SHUTDOWN_GRACE_S {grace_s} + {SHUTDOWN_MARGIN_S} s: SIGKILL cuts the drain"
        )
    probes = {
        p: container.get(p, {}).get("httpGet", {}).get("path")
        for p in ("livenessProbe", "startupProbe", "readinessProbe")
    }
    problems += [
        f"{where}: Deployment/{name}: {probe} must be an HTTP probe of /livez, never /readyz "
        "(a broker outage would restart every pod)"
        for probe in ("livenessProbe", "startupProbe")
        if probes[probe] in (None, "/readyz")
    ]
    if probes["readinessProbe"] != "/readyz":
        problems.append(f"{where}: Deployment/{name}: readinessProbe is not /readyz")
    resources = container.get("resources", {})
    problems += [
        f"{where}: Deployment/{name}: the worker has no {kind}.{resource}"
        for kind, resource in REQUIRED_RESOURCES
        if resource not in resources.get(kind, {})
    ]
    problems += [
        f"{where}: Deployment/{name}: {kind}.{resource} {quantity!r} is not a quantity"
        for kind, quantities in resources.items()
        for resource, quantity in quantities.items()
        if not QUANTITY.match(str(quantity))
    ]
    return problems


def check_scaled_object(name: str, scaled: Doc, docs: list[Doc], queues: set[str] | None, where: str) -> list[str]:
    """Check the ScaledObject's target, authentication and one trigger per operation queue."""
    problems: list[str] = []
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    deployment = by_kind(docs, "Deployment").get(target["name"])
    if target.get("kind", "Deployment") != "Deployment" or deployment is None:
        problems.append(f"{where}: ScaledObject/{name}: {target['name']} is not a Deployment here")
    elif "replicas" in deployment["spec"]:
        problems.append(
            f"{where}: ScaledObject/{name}: Deployment/{target['name']} sets replicas, which every "
            "`kubectl apply` would force back over the autoscaler's choice"
        )
    auths = by_kind(docs, "TriggerAuthentication")
    queue_names: list[str] = []
    for trigger in spec["triggers"]:
        if trigger["type"] != "rabbitmq":
            continue
        meta = trigger["metadata"]
        queue_names.append(meta.get("queueName", ""))
        if meta.get("protocol") != "http" or meta.get("mode") != "QueueLength":
            problems.append(
                f"{where}: ScaledObject/{name}: trigger {meta.get('queueName')} needs protocol "
                "http and mode QueueLength (over AMQP unacknowledged jobs are not counted)"
            )
        auth = trigger.get("authenticationRef", {})
        if auth.get("kind", "TriggerAuthentication") == "TriggerAuthentication" and (auth.get("name") not in auths):
            problems.append(f"{where}: ScaledObject/{name}: TriggerAuthentication {auth.get('name')} is missing")
    if queues is not None and sorted(queue_names) != sorted(queues):
        problems.append(
            f"{where}: ScaledObject/{name}: rabbitmq triggers {sorted(queue_names)} are not one "
            f"per operation queue {sorted(queues)}"
        )
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        problems.append(f"{where}: ScaledObject/{name}: minReplicaCount > maxReplicaCount")
    return problems


def check_pod_monitor(name: str, monitor: Doc, docs: list[Doc], where: str) -> list[str]:
    """Check that the PodMonitor selects the worker's pods and scrapes a port they name."""
    wanted = monitor["spec"]["selector"].get("matchLabels", {})
    ports = {e.get("port") for e in monitor["spec"].get("podMetricsEndpoints", [])}
    matched = [
        d
        for d in by_kind(docs, "Deployment").values()
        if wanted.items() <= d["spec"]["template"].get("metadata", {}).get("labels", {}).items()
    ]
    if not matched:
        return [f"{where}: PodMonitor/{name}: selector {wanted} matches no Deployment's pods"]
    problems: list[str] = []
    for deployment in matched:
        named = {p.get("name") for c in pod_spec(deployment)["containers"] for p in c.get("ports", [])}
        if not ports <= named:
            problems.append(f"{where}: PodMonitor/{name}: ports {sorted(ports - named)} not named by the pods")
    return problems


def expected_secrets(docs: list[Doc]) -> set[str]:
    """Return the Secrets the render refers to and does not contain."""
    secrets = {
        f"{ref['name']} (key {ref['key']})"
        for deployment in by_kind(docs, "Deployment").values()
        for container in pod_spec(deployment)["containers"]
        for env in container.get("env", [])
        if (ref := env.get("valueFrom", {}).get("secretKeyRef"))
    }
    secrets |= {
        f"{ref['name']} (key {ref['key']}, read by KEDA)"
        for auth in by_kind(docs, "TriggerAuthentication").values()
        for ref in auth["spec"].get("secretTargetRef", [])
    }
    return secrets


REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_PROBE = "from dispatcher.settings import load_settings; load_settings()"
SECRET_STAND_INS = {
    "DISPATCHER_AMQP_URL": "amqps://user:password@broker.invalid:5671/vhost",
    "DISPATCHER_REDIS_URL": "rediss://:password@redis.invalid:6379/0",
}


def worker_environment(deployment: Doc, configmaps: dict[str, Doc], scratch: Path) -> dict[str, str]:
    """Return the worker's environment, secrets stood in for and its config file copied to scratch."""
    container = next(c for c in pod_spec(deployment)["containers"] if c["name"] == WORKER_CONTAINER)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif var["name"] in SECRET_STAND_INS:
            env[var["name"]] = SECRET_STAND_INS[var["name"]]
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])}
    files = {
        f"{mounts[volume['name']]}/{key}": text
        for volume in pod_spec(deployment).get("volumes", [])
        if volume["name"] in mounts and "configMap" in volume
        for key, text in configmaps.get(volume["configMap"]["name"], {}).get("data", {}).items()
    }
    if "DISPATCHER_CONFIG" in env:
        copy = scratch / "config.yaml"
        copy.write_text(files.get(env["DISPATCHER_CONFIG"], ""), encoding="utf-8")
        env["DISPATCHER_CONFIG"] = str(copy)
    return env


def check_settings(docs: list[Doc], where: str) -> list[str]:
    """Load each worker's environment and mounted config file into the dispatcher's Settings."""
    problems: list[str] = []
    configmaps = by_kind(docs, "ConfigMap")
    for name, deployment in by_kind(docs, "Deployment").items():
        with tempfile.TemporaryDirectory() as scratch:
            env = worker_environment(deployment, configmaps, Path(scratch))
            if "DISPATCHER_CONFIG" in env and not Path(env["DISPATCHER_CONFIG"]).read_text(encoding="utf-8"):
                problems.append(f"{where}: Deployment/{name}: DISPATCHER_CONFIG names no mounted ConfigMap key")
                continue
            run = subprocess.run(
                [sys.executable, "-c", SETTINGS_PROBE], env=env, capture_output=True, text=True, check=False
            )
        if run.returncode != 0:
            lines = [line.strip() for line in run.stderr.splitlines() if line.strip()]
            first = next((i for i, line in enumerate(lines) if "ValidationError" in line), max(0, len(lines) - 4))
            detail = " | ".join(lines[first:])
            problems.append(f"{where}: Deployment/{name}: the worker's settings do not load: {detail}")
        else:
            print(f"OK   {where}: Deployment/{name}: environment and config file load into Settings")
    return problems


def check_references(docs: list[Doc], queues: set[str] | None, where: str) -> list[str]:
    """Check what refers to what within one render."""
    problems: list[str] = []
    configmaps = by_kind(docs, "ConfigMap")
    for name, deployment in by_kind(docs, "Deployment").items():
        problems += check_deployment(name, deployment, configmaps, where)
    for name, scaled in by_kind(docs, "ScaledObject").items():
        problems += check_scaled_object(name, scaled, docs, queues, where)
    for name, monitor in by_kind(docs, "PodMonitor").items():
        problems += check_pod_monitor(name, monitor, docs, where)
    for secret in sorted(expected_secrets(docs)):
        print(f"INFO {where}: expects Secret {secret} to exist (not committed)")
    return problems


def main() -> int:
    """Check every rendered file; print the problems; return the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--schemas", type=Path, required=True, help="directory of CRD schemas")
    parser.add_argument("--operations", type=Path, help="dispatcher/operations.py (queue names)")
    parser.add_argument("-k", "--kubernetes-version", default="1.31.0", help="for ObjectMeta")
    parser.add_argument("--check-settings", action="store_true", help="load the worker's settings (needs the package)")
    parser.add_argument("rendered", nargs="+", type=Path, help="`kubectl kustomize` output")
    args = parser.parse_args()

    missing = [f for f in CRD_SCHEMAS.values() if not (args.schemas / f).is_file()]
    if missing:
        print(f"FAIL CRD schemas {missing} not found in {args.schemas}", file=sys.stderr)
        return 1
    queues = load_queue_names(args.operations) if args.operations else None

    problems: list[str] = []
    for rendered in args.rendered:
        docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
        where = rendered.stem
        problems += check_schemas(docs, args.schemas, args.kubernetes_version, where)
        problems += check_references(docs, queues, where)
        if args.check_settings:
            problems += check_settings(docs, where)

    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
