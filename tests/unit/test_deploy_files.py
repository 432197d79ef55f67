"""Deploy files agree with the code: IAM actions with the registry, the dashboard with the metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from dispatcher.metrics import REGISTRY
from dispatcher.registry import default_registry

DEPLOY = Path(__file__).parents[2] / "deploy"
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


def test_pass_role_is_limited_to_lookout_for_equipment():
    """iam:PassRole is granted only towards the service that needs it."""
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    [statement] = [s for s in policy["Statement"] if "iam:PassRole" in json.dumps(s["Action"])]
    assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "lookoutequipment.amazonaws.com"


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
