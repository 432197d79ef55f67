"""`dispatcher capacity`: the replicas, prefetch and pod resources a configuration needs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from dispatcher.capacity import (
    BASELINE_MIB,
    CORE_SHARE_PER_POD,
    CPU_REQUEST_FLOOR,
    CPU_S_PER_CALL,
    DECODE_PEAK_PER_BODY_BYTE,
    HELD_PER_BODY_BYTE,
    HOLD_S,
    MIN_REPLICAS,
    recommend,
)
from dispatcher.cli_app import _settings, app

HELP = f"""Print the KEDA bounds, prefetch, pod requests and expected_replicas a configuration needs.

With the shared limiter (Redis) the fleet calls AWS at the sum of the rate limits whatever its
size, so replicas follow from that call rate's CPU, not from the backlog:

\b
calls/s  = sum of start rates + sum of Describe/Get rates (every operation and enabled region)
cores    = calls/s x {CPU_S_PER_CALL * 1000:g} ms (worker CPU per job with Redis, docs/benchmarks.md)
replicas = min {MIN_REPLICAS}, max max({MIN_REPLICAS}, ceil(cores / {CORE_SHARE_PER_POD:g}) + 1)
expected_replicas = max replicas
prefetch = max over operations of max(burst, ceil(rate x {HOLD_S:g} s)): concurrency, follow_concurrency
cpu      = max({CPU_REQUEST_FLOOR * 1000:g}m, cores / {MIN_REPLICAS}) requested, no limit
memory   = {BASELINE_MIB} MiB + (messages x {HELD_PER_BODY_BYTE} + {DECODE_PEAK_PER_BODY_BYTE}) x max_message_bytes
messages = concurrency x (operations + 1) + follow_concurrency x followed operations
(memory request = limit)

docs/deployment.md ("Autoscaling with KEDA", "Memory") explains each figure.
"""


@app.command(help=HELP)
def capacity(
    config: Annotated[
        Path | None,
        typer.Option(help="Settings file (YAML, JSON or TOML) to size; default: DISPATCHER_* and DISPATCHER_CONFIG."),
    ] = None,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Print the sizing of a configuration (HELP has the formula)."""
    from dispatcher.registry import default_registry  # noqa: PLC0415
    from dispatcher.settings import read_config_file  # noqa: PLC0415

    settings = _settings(**read_config_file(config)) if config else _settings()
    figures = recommend(settings, default_registry())
    if as_json:
        sys.stdout.write(orjson.dumps(figures.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title=f"Capacity for {config or 'the environment'}", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("where it goes")
    rows = [
        ("AWS calls/s (starts + polls)", f"{figures.start_calls_per_s:g} + {figures.follow_calls_per_s:g}", ""),
        ("CPU cores at that rate", f"{figures.cores:g}", ""),
        ("replicas", f"{figures.min_replicas} to {figures.max_replicas}", "ScaledObject min/maxReplicaCount"),
        ("expected_replicas", str(figures.expected_replicas), "config"),
        ("concurrency", str(figures.concurrency), "config (prefetch per operation queue)"),
        ("follow_concurrency", str(figures.follow_concurrency), "config (prefetch per follow queue)"),
        ("messages in flight", str(figures.messages_in_flight), ""),
        ("cpu request", figures.cpu_request, "Deployment resources (no CPU limit)"),
        ("memory request / limit", f"{figures.memory_request} / {figures.memory_limit}", "Deployment resources"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)
