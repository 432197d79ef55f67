"""Which regions a job may name: any region of the configured region's AWS partition, or an allow-list.

The partitions come from botocore's own endpoint data: its region list, and its pattern for regions
launched after that botocore was released. A job naming `mars-north-1`, or a region of another
partition than the deployment's credentials belong to, is refused before AWS is called.
"""

from __future__ import annotations

import functools
import re

from botocore.loaders import create_loader


@functools.cache
def _partitions() -> tuple[tuple[str, frozenset[str], re.Pattern[str]], ...]:
    data = create_loader().load_data("endpoints")
    return tuple(
        (partition["partition"], frozenset(partition["regions"]), re.compile(partition["regionRegex"]))
        for partition in data["partitions"]
    )


def partition_of(region: str) -> str | None:
    """The partition (`aws`, `aws-cn`, ...) a region name belongs to, or None for no region at all."""
    for name, regions, _ in _partitions():
        if region in regions:
            return name
    for name, _, pattern in _partitions():
        if pattern.fullmatch(region):
            return name
    return None


def region_refusal(region: str, default_region: str, allowed: tuple[str, ...]) -> str | None:
    """Why a job may not name `region` here, or None when it may.

    `allowed` empty: any region of the default region's partition; else exactly those.
    """
    if allowed:
        if region in allowed:
            return None
        listed = ", ".join(allowed)
        return f"region: {region} is not one this dispatcher may use (allowed: {listed}; DISPATCHER_AWS_REGIONS)"
    partition = partition_of(region)
    if partition is None:
        return f"region: {region} is not an AWS region"
    expected = partition_of(default_region)
    if expected is not None and partition != expected:
        return f"region: {region} is in the {partition} partition; this dispatcher works in {expected}"
    return None
