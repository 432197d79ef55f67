"""The prod pods' NetworkPolicy: exactly the peers and ports docs/deployment.md, "Network policy", lists."""

from __future__ import annotations

from typing import Any

from tests.unit.kustomize_render import one, render, worker_container

IMDS = {"169.254.169.254/32", "fd00:ec2::254/128"}


def policy() -> dict[str, Any]:
    """Return the spec of the prod render's NetworkPolicy."""
    spec: dict[str, Any] = one(render("overlays/prod"), "NetworkPolicy")["spec"]
    return spec


def ports(rule: dict[str, Any]) -> set[tuple[str, int | str]]:
    """Return a rule's (protocol, port) pairs."""
    return {(p["protocol"], p["port"]) for p in rule["ports"]}


def test_policy_selects_the_worker_pods_both_ways():
    """The policy applies to the Deployment's pods and denies ingress and egress by default."""
    pod_labels = one(render("overlays/prod"), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy()["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy()["policyTypes"]) == ["Egress", "Ingress"]


def test_ingress_is_the_metrics_port_from_the_monitoring_namespace_only():
    """One ingress rule: TCP to the container port serving /metrics, from the namespace named monitoring."""
    [rule] = policy()["ingress"]
    [named] = [p for p in worker_container(render("overlays/prod"))["ports"] if p["name"] == "http"]
    assert named["containerPort"] == 8080
    assert ports(rule) == {("TCP", "http")}
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_egress_allows_exactly_dns_broker_redis_aws_and_pod_identity():
    """Egress: DNS in kube-system, AMQP(S) and Redis ports, HTTPS anywhere but IMDS, the Pod Identity agent."""
    rules = {frozenset(ports(rule)): rule.get("to") for rule in policy()["egress"]}
    kube_system = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
    assert rules == {
        frozenset({("UDP", 53), ("TCP", 53)}): kube_system,
        frozenset({("TCP", 5671), ("TCP", 5672), ("TCP", 6379)}): None,
        frozenset({("TCP", 443)}): [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},
            {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}},
        ],
        frozenset({("TCP", 80)}): [
            {"ipBlock": {"cidr": "169.254.170.23/32"}},
            {"ipBlock": {"cidr": "fd00:ec2::23/128"}},
        ],
    }


def test_instance_metadata_is_reachable_by_no_rule():
    """No egress rule reaches the instance metadata service: every ipBlock that covers it excepts it."""
    for rule in policy()["egress"]:
        if rule.get("to") is None:
            assert not ports(rule) & {("TCP", 80), ("TCP", 443)}, "an any-destination rule opens a metadata port"
            continue
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block and block["cidr"] in {"0.0.0.0/0", "::/0"}:
                assert set(block["except"]) & IMDS, block
