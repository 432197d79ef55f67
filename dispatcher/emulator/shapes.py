"""Checking parameters against botocore's input shape directly, for calls without a generated model.

The start operations have parameter models generated from botocore's shapes; the Describe calls
take a few identifiers, which are checked here against the same traits AWS checks: types, lengths,
ranges, enums and patterns (matched in full, as Java's `String.matches` does), and unknown members.
Required members are checked by the caller, for every operation alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatcher.aws_regex import compile_java_pattern

if TYPE_CHECKING:
    from botocore.model import Shape

_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "long": int,
    "float": (int, float),
    "double": (int, float),
    "structure": dict,
    "map": dict,
    "list": list,
}


def shape_problems(shape: Shape, value: Any, path: str = "") -> list[tuple[str, str]]:  # noqa: ANN401 - any JSON value
    """`(path, problem)` for every part of `value` that `shape` refuses (none for a valid value)."""
    expected = _JSON_TYPES.get(shape.type_name)
    if expected is not None and (
        not isinstance(value, expected) or (shape.type_name != "boolean" and isinstance(value, bool))
    ):
        return [(path, f"Value should be of type {shape.type_name}")]
    if shape.type_name == "structure":
        return _structure_problems(shape, value, path)
    if shape.type_name == "list":
        problems = _size_problems(shape, len(value), path, "items")
        for index, item in enumerate(value):
            problems += shape_problems(shape.member, item, f"{path}.{index}")
        return problems
    if shape.type_name == "map":
        problems = _size_problems(shape, len(value), path, "entries")
        for key, item in value.items():
            problems += shape_problems(shape.key, key, f"{path}.{key}")
            problems += shape_problems(shape.value, item, f"{path}.{key}")
        return problems
    if shape.type_name == "string":
        return _string_problems(shape, value, path)
    if shape.type_name in {"integer", "long", "float", "double"}:
        return _size_problems(shape, value, path, "")
    return []


def _structure_problems(shape: Shape, value: dict[str, Any], path: str) -> list[tuple[str, str]]:
    problems = [(_join(path, name), "Unknown member") for name in value if name not in shape.members]
    for name, member in shape.members.items():
        if value.get(name) is not None:
            problems += shape_problems(member, value[name], _join(path, name))
    return problems


def _string_problems(shape: Shape, value: str, path: str) -> list[tuple[str, str]]:
    problems = _size_problems(shape, len(value), path, "characters")
    if shape.enum and value not in shape.enum:
        problems.append((path, f"Value should be one of {', '.join(shape.enum)}"))
    pattern = shape.metadata.get("pattern")
    if pattern is not None and compile_java_pattern(pattern).fullmatch(value) is None:
        problems.append((path, f"String should match the AWS pattern {pattern}"))
    return problems


def _size_problems(shape: Shape, size: float, path: str, unit: str) -> list[tuple[str, str]]:
    """`min` and `max` of the shape: a length in `unit`, or the value itself when `unit` is empty."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    what = f"have at least {low} {unit}" if unit else f"be at least {low}"
    if low is not None and size < low:
        return [(path, f"Value should {what}".rstrip())]
    what = f"have at most {high} {unit}" if unit else f"be at most {high}"
    if high is not None and size > high:
        return [(path, f"Value should {what}".rstrip())]
    return []


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
