"""What each overlay must and must not carry from the base."""

from __future__ import annotations

import yaml

from tests.unit.kustomize_render import one, render

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def test_base_role_arn_is_a_placeholder_the_dev_overlay_drops():
    """The dev render names no IAM role: neither the base's placeholder ARN nor any IRSA annotation."""
    placeholder = one(render("base"), "ServiceAccount")["metadata"]["annotations"][ROLE_ANNOTATION]
    dev = render("overlays/dev")
    assert ROLE_ANNOTATION not in one(dev, "ServiceAccount")["metadata"].get("annotations", {})
    assert placeholder not in yaml.safe_dump_all(dev)


def test_prod_overlay_sets_its_own_role():
    """The prod render's service account names a role of its own, not the base's placeholder."""
    placeholder = one(render("base"), "ServiceAccount")["metadata"]["annotations"][ROLE_ANNOTATION]
    role = one(render("overlays/prod"), "ServiceAccount")["metadata"]["annotations"][ROLE_ANNOTATION]
    assert role.startswith("arn:aws:iam::")
    assert role != placeholder
