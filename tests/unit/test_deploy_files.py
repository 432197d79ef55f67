"""Deploy files agree with the code: IAM actions with the registry, the dashboard with the metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dispatcher.metrics import REGISTRY
from dispatcher.registry import default_registry
from tests.unit.kustomize_render import render, worker_container

DEPLOY = Path(__file__).parents[2] / "deploy"
DOCS = Path(__file__).parents[2] / "docs"
# The ingestion roles the workers may hand to Lookout for Equipment (docs/deployment.md, "IAM permissions").
LOOKOUT_ROLE_PATTERN = "arn:aws:iam::*:role/job-dispatcher-lookout-*"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def test_iam_policy_allows_exactly_the_registry_actions():
    """The policy grants each registered operation's actions, start and follow, and nothing else."""
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    granted: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        granted.update([actions] if isinstance(actions, str) else actions)
    needed = {action for op in default_registry() for action in (*op.iam_actions, *op.follow_iam_actions)}
    assert granted == needed


def test_follow_statement_grants_exactly_the_describe_actions():
    """`FollowJobs` holds the read-only Describe/Get call of each operation that can be followed."""
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    [statement] = [s for s in policy["Statement"] if s.get("Sid") == "FollowJobs"]
    assert sorted(statement["Action"]) == sorted(a for op in default_registry() for a in op.follow_iam_actions)


def test_pass_role_is_limited_to_the_lookout_ingestion_roles():
    """iam:PassRole passes only roles named by the documented pattern, and only to Lookout for Equipment."""
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    [statement] = [s for s in policy["Statement"] if "iam:PassRole" in json.dumps(s["Action"])]
    assert statement["Action"] == "iam:PassRole"
    assert statement["Resource"] == LOOKOUT_ROLE_PATTERN
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "lookoutequipment.amazonaws.com"}}
    assert f"`{LOOKOUT_ROLE_PATTERN}`" in (DOCS / "deployment.md").read_text()


def test_aws_calls_are_limited_to_the_deployed_regions():
    """Start and Describe/Get calls carry one aws:RequestedRegion list, which holds the prod overlay's region."""
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    by_sid = {s.get("Sid"): s for s in policy["Statement"]}
    regions = [by_sid[sid]["Condition"]["StringEquals"]["aws:RequestedRegion"] for sid in ("StartJobs", "FollowJobs")]
    assert regions[0] == regions[1]
    env = {e["name"]: e.get("value") for e in worker_container(render("overlays/prod"))["env"]}
    assert env["AWS_REGION"] in regions[0]


def exported_series() -> set[str]:
    """Every series name the worker's /metrics can show."""
    names = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def test_dashboard_uses_only_exported_metrics():
    """Every metric a dashboard query names is one the code exports."""
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for query in queries for name in re.findall(r"\bdispatcher_[a-z_]+", query)}
    assert used, "the dashboard has no queries"
    assert used <= exported_series(), used - exported_series()


def test_alert_rules_use_only_exported_metrics():
    """Every dispatcher metric an alert names is one the code exports (RabbitMQ's own are the broker's)."""
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text())
    queries = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for query in queries for name in re.findall(r"\bdispatcher_[a-z_]+", query)}
    assert used, "no alert reads a dispatcher metric"
    assert used <= exported_series(), used - exported_series()
