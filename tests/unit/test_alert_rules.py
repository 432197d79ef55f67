"""The alerts: one source, each tested with promtool on synthetic series, each with a runbook."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.write_alert_rules import SOURCE, TARGET, render

HERE = Path(__file__).parent
PROMTOOL_TESTS = HERE / "alert_rules_test.yaml"
OPERATORS = HERE.parents[1] / "docs" / "operators.md"


def alert_rules() -> list[dict[str, Any]]:
    """Return the alerting rules of the PrometheusRule."""
    spec = yaml.safe_load(SOURCE.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule]


def promtool() -> str:
    """Return promtool's path; CI must have it (.ci/run installs it), elsewhere its absence skips."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (Debian package `prometheus`, see .ci/run)")
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    return found


def test_promtool_rule_tests_pass(tmp_path: Path):
    """`promtool test rules` passes every case of alert_rules_test.yaml against the PrometheusRule's spec."""
    tool = promtool()
    (tmp_path / "rules.yaml").write_text(render(SOURCE.read_text()))
    shutil.copy(PROMTOOL_TESTS, tmp_path / PROMTOOL_TESTS.name)
    run = subprocess.run(
        [tool, "test", "rules", PROMTOOL_TESTS.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_tested_firing_and_silent():
    """Each alert has a promtool case where it fires and one where it must not."""
    cases = [case for test in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in alert_rules():
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == rule["alert"]]
        assert [] in expected, f"{rule['alert']}: no case where it stays silent"
        assert any(expected), f"{rule['alert']}: no case where it fires"


def test_plain_rules_file_is_the_prometheusrule_spec():
    """deploy/prometheus-rules.yaml is written from the PrometheusRule (`make alert-rules`) and equals its spec."""
    plain = TARGET.read_text()
    assert plain == render(SOURCE.read_text()), "deploy/prometheus-rules.yaml is stale: run `make alert-rules`"
    assert yaml.safe_load(plain) == yaml.safe_load(SOURCE.read_text())["spec"]


def test_every_alert_links_its_runbook_in_operators_md():
    """Each alert's runbook_url points at a heading of the same name under "Runbooks" in docs/operators.md."""
    _, found, after = OPERATORS.read_text().partition("\n## Runbooks\n")
    assert found, "docs/operators.md has no Runbooks section"
    section = after.split("\n## ", 1)[0]
    headings = set(re.findall(r"^### (\w+)$", section, flags=re.MULTILINE))
    alerts = {rule["alert"] for rule in alert_rules()}
    assert headings == alerts
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"/docs/operators.md#{rule['alert'].lower()}"), url


def test_alerts_have_a_severity_and_summary():
    """Each alert carries the labels and annotations a route and a page need."""
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
