"""Leaving out what botocore's models mark `sensitive`: in AWS responses and in error paths.

AWS marks a member `sensitive` (on its shape or on the member reference; botocore merges both into
`shape.metadata`) when its value must never be logged or echoed: Clean Rooms
`jobParameters.parameters` (in the request and in the response's `protectedJob`), QuickSight
`InputPayload`. The dispatcher keeps AWS responses (results, the start ledger) and describes invalid
parameters (dead-letter headers, results, logs), so both leave such values out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from botocore.model import Shape

REDACTED = "***"
"""What a sensitive value of a response becomes, whatever its type (a string, a map, a list)."""
REDACTED_KEY = "<redacted key>"
REDACTED_VALUE = "<redacted value>"
"""Said in an error path in place of what lies below a sensitive member."""


@dataclass(eq=False, slots=True)
class _Node:
    """Where a value's sensitive parts are: by structure member, or in every list item or map value."""

    sensitive: bool = False
    members: dict[str, _Node] = field(default_factory=dict)
    each: _Node | None = None

    def apply(self, value: Any) -> Any:  # noqa: ANN401 - any parsed AWS value
        if self.sensitive:
            return REDACTED
        if isinstance(value, dict):
            if self.each is not None:
                return {key: self.each.apply(item) for key, item in value.items()}
            return {key: node.apply(item) if (node := self.members.get(key)) else item for key, item in value.items()}
        if isinstance(value, list) and self.each is not None:
            return [self.each.apply(item) for item in value]
        return value


_SENSITIVE = _Node(sensitive=True)


class ResponseRedactor:
    """Replaces every sensitive value of one operation's output with `REDACTED`.

    Built once per operation from its output shape (see `for_shape`), so a call only walks the
    branches of the response that can hold a sensitive value.
    """

    def __init__(self, root: _Node) -> None:
        self._root = root

    @classmethod
    def for_shape(cls, shape: Shape | None) -> ResponseRedactor | None:
        """The redactor of an output shape, or None when nothing in it is sensitive (no walk at all)."""
        if shape is None:
            return None
        children = _shape_graph(shape)
        live = _holding_sensitive(children)
        if shape.name not in live:
            return None
        return cls(_plan(shape, children, live, {}))

    def redact(self, response: dict[str, Any]) -> dict[str, Any]:
        """A copy of `response` with its sensitive values replaced; the parts without any are shared."""
        redacted: dict[str, Any] = self._root.apply(response)
        return redacted


def _is_sensitive(shape: Shape) -> bool:
    """A sensitive value, or a map whose keys are: either way the whole value is left out."""
    if shape.metadata.get("sensitive"):
        return True
    return shape.type_name == "map" and bool(shape.key.metadata.get("sensitive"))


def _edges(shape: Shape) -> list[tuple[str | None, Shape]]:
    """(member name, or None for a list item or map value; its shape) of a container shape."""
    if shape.type_name == "structure":
        return list(shape.members.items())
    if shape.type_name == "list":
        return [(None, shape.member)]
    if shape.type_name == "map":
        return [(None, shape.value)]
    return []


def _shape_graph(root: Shape) -> dict[str, list[tuple[str | None, Shape]]]:
    """Every shape reachable from `root` through values that are not sensitive, with its edges."""
    graph: dict[str, list[tuple[str | None, Shape]]] = {}
    pending = [root]
    while pending:
        shape = pending.pop()
        if shape.name in graph:
            continue
        graph[shape.name] = edges = _edges(shape)
        pending.extend(child for _, child in edges if not _is_sensitive(child))
    return graph


def _holding_sensitive(graph: dict[str, list[tuple[str | None, Shape]]]) -> set[str]:
    """The shapes from which a sensitive value can be reached; recursive shapes settle by fixed point."""
    live = {name for name, edges in graph.items() if any(_is_sensitive(child) for _, child in edges)}
    grown = True
    while grown:
        grown = False
        for name, edges in graph.items():
            if name not in live and any(child.name in live for _, child in edges):
                live.add(name)
                grown = True
    return live


def _plan(
    shape: Shape, graph: dict[str, list[tuple[str | None, Shape]]], live: set[str], built: dict[str, _Node]
) -> _Node:
    """The walk of a live shape; `built` shares one node per shape, so a recursive shape is a cycle."""
    if shape.name in built:
        return built[shape.name]
    node = built[shape.name] = _Node()
    for name, child in graph[shape.name]:
        if _is_sensitive(child):
            target = _SENSITIVE
        elif child.name in live:
            target = _plan(child, graph, live, built)
        else:
            continue
        if name is None:
            node.each = target
        else:
            node.members[name] = target
    return node


def redact_loc(loc: tuple[str | int, ...], sensitive_paths: Iterable[str]) -> tuple[tuple[str | int, ...], str | None]:
    """An error location cut at the sensitive member it passes through, and what stands for the rest.

    `sensitive_paths` are the operation's dotted request paths (`*` for any list item or map
    value). Below a sensitive member every map key and value is data, so none of it is named:
    `("jobParameters", "parameters", "secretName", "[key]")` becomes
    `(("jobParameters", "parameters"), "<redacted key>")`.
    """
    for path in sensitive_paths:
        parts = path.split(".")
        depth = len(parts)
        if len(loc) > depth and all(part in ("*", at) for part, at in zip(parts, loc, strict=False)):
            return loc[:depth], REDACTED_KEY if loc[-1] == "[key]" else REDACTED_VALUE
    return loc, None


def redact_paths(params: dict[str, Any], sensitive_paths: Iterable[str], mark: str = REDACTED) -> dict[str, Any]:
    """A copy of a job's `params` with the values at `sensitive_paths` (dotted, `*` for any item) as `mark`."""
    redacted: dict[str, Any] = params
    for path in sensitive_paths:
        redacted = _redact_path(redacted, path.split("."), mark)
    return redacted


def _redact_path(value: Any, parts: list[str], mark: str) -> Any:  # noqa: ANN401 - any JSON value
    if not parts:
        return mark
    head, rest = parts[0], parts[1:]
    if head == "*" and isinstance(value, list):
        return [_redact_path(item, rest, mark) for item in value]
    if head == "*" and isinstance(value, dict):
        return {key: _redact_path(item, rest, mark) for key, item in value.items()}
    if isinstance(value, dict) and head in value:
        return {**value, head: _redact_path(value[head], rest, mark)}
    return value
