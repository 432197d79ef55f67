"""The image is built from pinned inputs and prod deploys it by digest (docs/deployment.md, "Pinned images")."""

from __future__ import annotations

import re

from tests.unit.kustomize_render import DEPLOY, ROOT, render, worker_container

DIGEST = r"@sha256:[0-9a-f]{64}"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_frontend_is_pinned_by_digest():
    """The `# syntax=` line names a frontend version and its digest."""
    first = DOCKERFILE.splitlines()[0]
    assert re.fullmatch(rf"# syntax=docker/dockerfile:\d+\.\d+\.\d+{DIGEST}", first), first


def test_both_stages_start_from_one_image_pinned_by_digest():
    """The build and runtime stages start from the same image, pinned by tag and digest."""
    bases = re.findall(r"^FROM (\S+) AS (\w+)$", DOCKERFILE, flags=re.MULTILINE)
    assert [stage for _, stage in bases] == ["build", "runtime"]
    assert len({image for image, _ in bases}) == 1
    assert re.fullmatch(rf"[\w./-]+:[\w.-]+{DIGEST}", bases[0][0]), bases[0][0]


def test_uv_is_installed_against_wheel_hashes():
    """uv comes from PyPI checked against hashes, pinned to the version CI and the Makefile install."""
    requirements = (DEPLOY / "uv-requirements.txt").read_text()
    assert "--require-hashes -r /tmp/uv-requirements.txt" in DOCKERFILE
    [version] = re.findall(r"^uv==(\S+)", requirements, flags=re.MULTILINE)
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", requirements)) >= 2  # amd64 and arm64
    assert f"uv=={version}" in (ROOT / ".ci" / "run").read_text()
    assert f"uv=={version}" in (ROOT / "Makefile").read_text()
    assert "!deploy/uv-requirements.txt" in (ROOT / ".dockerignore").read_text().splitlines()


def test_bind_mount_targets_are_absolute():
    """Buildah and Podman reject relative bind-mount targets, so every one is absolute."""
    targets = re.findall(r"--mount=type=bind,[^ ]*target=([^, ]+)", DOCKERFILE)
    assert targets
    assert all(t.startswith("/") for t in targets), targets


def test_prod_deploys_the_image_by_digest():
    """The prod overlay's image is its tag and a digest: a re-pushed tag cannot change what runs."""
    image = worker_container(render("overlays/prod"))["image"]
    assert re.fullmatch(rf"[\w.-]+(/[\w.-]+)+:[\w.-]+{DIGEST}", image), image
