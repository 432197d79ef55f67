"""Write `deploy/prometheus-rules.yaml`, the plain rules file, from the PrometheusRule that holds the alerts.

`deploy/components/monitoring/prometheusrule.yaml` is the one source of the rules; the plain file is
its `spec` moved two columns left, comments and all, for a Prometheus without the Operator
(`rule_files:`). `uv run python tools/write_alert_rules.py` (`make alert-rules`) writes it; `--check`
exits 1 with a diff when the committed file is stale. Tests call `render` directly.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE = REPO_ROOT / "deploy" / "components" / "monitoring" / "prometheusrule.yaml"
TARGET = REPO_ROOT / "deploy" / "prometheus-rules.yaml"
HEADER = """\
# Prometheus alerting rules of the dispatcher, as a plain rules file (load it with `rule_files:`).
# Written by `make alert-rules` from the `spec` of deploy/components/monitoring/prometheusrule.yaml,
# the PrometheusRule that is their one source: edit that file, then run it (a test fails otherwise).
# What each alert reads and needs: the comments there, and docs/deployment.md, "Alerts".
"""
INDENT = "  "


def render(source: str) -> str:
    """Return the plain rules file for a PrometheusRule's text: its `spec:` block, dedented."""
    lines = source.splitlines(keepends=True)
    start = lines.index("spec:\n") + 1
    body = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(INDENT):
            msg = f"{SOURCE.name}: `spec:` must be the last top-level key, found {line.strip()!r} after it"
            raise ValueError(msg)
        body.append(line.removeprefix(INDENT))
    return HEADER + "".join(body)


def main() -> int:
    """Write the plain rules file, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff when the file is stale")
    args = parser.parse_args()
    wanted = render(SOURCE.read_text(encoding="utf-8"))
    if not args.check:
        TARGET.write_text(wanted, encoding="utf-8")
        return 0
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
    if current == wanted:
        return 0
    old, new = current.splitlines(keepends=True), wanted.splitlines(keepends=True)
    sys.stdout.writelines(difflib.unified_diff(old, new, str(TARGET), "wanted"))
    print(f"{TARGET.relative_to(REPO_ROOT)} is stale: run `make alert-rules`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
