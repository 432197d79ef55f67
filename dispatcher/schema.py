r"""JSON Schema of the job and result messages, generated from the models the worker uses.

The parameter schemas say what the worker says, under any JSON Schema validator:

* AWS patterns are Java regular expressions applied to the whole value; JSON Schema's are ECMA-262
  and search. Each is translated (`ecma_pattern`) into an ECMA-262 pattern with the same meaning:
  anchored at the start with `^` and at the very end with `(?![\s\S])` (ECMA's `$` is the end, but
  Python's `re`, which some validators use, also matches `$` before a final line break), every
  character set spelled out as code point ranges (ECMA's `\s` and `\S` are Unicode, Java's ASCII;
  `.` is Java's, excluding line terminators), nothing only one engine knows (`\p{ASCII}`). Characters
  above U+FFFF are written as themselves, so the pattern means the same with or without the `u` flag
  in engines that read code points, and in Python's `re`.
* A map whose keys have a pattern gets it as `propertyNames` (pydantic's `patternProperties` lets
  any other key through), its values as `additionalProperties`.
* A union (`AwsUnion`) is "exactly one member set and not null" (`params_types`).
* The job is one of the registered (service, operation) pairs, each with its own `params`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from dispatcher.aws_regex import UnsupportedJavaRegexError, _Piece, _Translator, anchored
from dispatcher.envelope import JobMessage
from dispatcher.errors import Category
from dispatcher.operations import JobOutcome
from dispatcher.results import FINISHED, PROGRESS

if TYPE_CHECKING:
    from dispatcher.aws_regex import _Ranges
    from dispatcher.registry import Registry

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
END_OF_INPUT = r"(?![\s\S])"
"""ECMA-262 and Python `re` agree on this; on `$` they do not (Python's matches before a final `\n`)."""
_SYNTAX_CHARACTERS = frozenset("^$\\.*+?()[]{}|/")
_LAST_ASCII = 0x7F
_LAST_BMP = 0xFFFF
_HIGH_SURROGATES = range(0xD800, 0xDC00)
_LOW_SURROGATES = range(0xDC00, 0xE000)


def ecma_pattern(java_pattern: str) -> str:
    """An ECMA-262 pattern that finds a match exactly in the strings Java's `matches` accepts."""
    translated = _EcmaTranslator(java_pattern).translate()
    if anchored(java_pattern) == java_pattern:  # one alternative, `^` to `$`: already anchored
        return translated
    return f"^(?:{translated}){END_OF_INPUT}"


def java_pattern_of(published: str) -> str:
    """The Java pattern behind `AwsPattern`'s JSON Schema `pattern` (see `aws_regex.anchored`).

    `anchored` returns an anchored single alternative as it is and wraps anything else in
    `^(?:...)$`; unwrapping may give either, and both full-match the same strings.
    """
    if published.startswith("^(?:") and published.endswith(")$"):
        return published[4:-2]
    return published


class _EcmaTranslator(_Translator):
    """`aws_regex`'s parser, spelling its output in ECMA-262 instead of RE2."""

    def _atom(self) -> _Piece:
        piece = super()._atom()
        if piece.text == r"\z":  # the translation of a `$` at the end of input
            return _Piece(END_OF_INPUT, quantifiable=False, ends_at_dollar=True)
        return piece

    def _spelled_set(self, ranges: _Ranges) -> str:
        if not ranges:
            self._refuse("a character class that matches nothing")
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return _ecma_char(ranges[0][0], in_class=False)
        parts = []
        for index, (low, high) in enumerate(ranges):
            first = _ecma_char(low, in_class=True)
            parts.append(first if low == high else f"{first}-{_ecma_char(high, in_class=True)}")
            # With the `u` flag, a high and a low surrogate escape side by side read as one code point.
            if high in _HIGH_SURROGATES and index + 1 < len(ranges) and ranges[index + 1][0] in _LOW_SURROGATES:
                raise UnsupportedJavaRegexError(self.source, "a set ending a range on a high surrogate")
        return f"[{''.join(parts)}]"


def _ecma_char(code_point: int, *, in_class: bool) -> str:
    """Letters, digits and harmless punctuation as themselves, syntax escaped, the rest by number."""
    char = chr(code_point)
    if char in _SYNTAX_CHARACTERS or (in_class and char == "-"):
        return "\\" + char
    if code_point < _LAST_ASCII and char.isprintable():
        return char
    if code_point <= _LAST_BMP:
        return f"\\u{code_point:04X}"
    return char  # one code point in engines that read code points; no escape for it works in all


def params_schema(params_model: type[Any]) -> dict[str, Any]:
    """One operation's parameter schema, with its patterns, maps and unions as the worker reads them."""
    schema = TypeAdapter(params_model).json_schema(ref_template="#/$defs/{model}")
    return _published(schema)  # type: ignore[no-any-return]


def _end_anchored(node: Any) -> Any:  # noqa: ANN401 - any JSON value
    """The envelope's own patterns (Rust `regex`, whose `$` is the end) with an end Python's `re` agrees on."""
    if isinstance(node, list):
        return [_end_anchored(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _end_anchored(value) for key, value in node.items()}
    pattern = node.get("pattern")
    if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
        result["pattern"] = pattern[:-1] + END_OF_INPUT
    return result


def _published(node: Any) -> Any:  # noqa: ANN401 - any JSON value
    if isinstance(node, list):
        return [_published(item) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in {"properties", "$defs"}:
            result[key] = {name: _published(sub) for name, sub in value.items()}
        elif key == "pattern" and isinstance(value, str):
            result[key] = ecma_pattern(java_pattern_of(value))
        elif key == "patternProperties":
            ((key_pattern, value_schema),) = value.items()  # pydantic writes one: the key type's
            names = result.setdefault("propertyNames", {})
            names["pattern"] = ecma_pattern(java_pattern_of(key_pattern))
            result["additionalProperties"] = _published(value_schema)
        elif key == "propertyNames":
            result.setdefault("propertyNames", {}).update(_published(value))
        else:
            result[key] = _published(value)
    return result


def job_schema(registry: Registry) -> dict[str, Any]:
    """The job message, with `params` tied to each operation's own parameter schema."""
    schema = _end_anchored(JobMessage.model_json_schema())
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    branches = []
    for operation in registry:
        params = params_schema(operation.params_model)
        defs.update(params.pop("$defs", {}))
        name = operation.params_model.__name__
        defs[name] = params
        branches.append(
            {
                "title": operation.routing_key,
                "properties": {
                    "service": {"const": operation.service},
                    "operation": {"const": operation.name},
                    "params": {"$ref": f"#/$defs/{name}"},
                },
            }
        )
    schema["properties"]["service"]["enum"] = sorted(registry.services)
    schema["properties"]["operation"]["enum"] = sorted({op.name for op in registry})
    schema["oneOf"] = branches  # the pairs the worker serves, not any service with any operation
    schema["description"] = (
        "A start-job message for the dispatcher. `job_id` may instead be given as the AMQP message_id."
    )
    return {"$schema": SCHEMA_DIALECT, "$id": "urn:job-dispatcher:job:v1", **schema}


def result_schema() -> dict[str, Any]:
    """The result message (contract section 3)."""
    error = {
        "type": "object",
        "required": ["category", "code", "message", "retryable"],
        "properties": {
            "category": {"enum": [str(c) for c in Category]},
            "code": {"type": "string"},
            "message": {"type": "string"},
            "retryable": {"type": "boolean"},
        },
        "additionalProperties": False,
    }
    timestamp = {"type": "string", "format": "date-time"}
    nullable_text = {"type": ["string", "null"]}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "urn:job-dispatcher:result:v1",
        "title": "Result",
        "description": "The outcome of a job, published to dispatcher.results and to reply_to.",
        "type": "object",
        "required": ["job_id", "service", "operation", "outcome", "metadata", "attempts", "started_at", "finished_at"],
        "properties": {
            "job_id": nullable_text,
            "service": nullable_text,
            "operation": nullable_text,
            "outcome": {"enum": ["succeeded", "failed"]},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "attempts": {"type": "integer", "minimum": 0},
            "started_at": timestamp,
            "finished_at": timestamp,
            "response": {"type": "object", "description": "On success: the AWS response without ResponseMetadata."},
            "error": error,
            "aws_request_id": {"type": "string"},
            "deduplicated": {
                "type": "boolean",
                "description": "True when AWS had already started this job and the result was published again.",
            },
            "traceparent": {"type": "string"},
            "following": {
                "type": "boolean",
                "description": "True when the job is followed: a completion result (`<service>.<Operation>.finished`) "
                "comes when AWS reports its end.",
            },
        },
        "additionalProperties": False,
    }


def completion_schema() -> dict[str, Any]:
    """The completion and progress messages of a followed job (contract section 8), as `Completion` writes them."""
    timestamp = {"type": "string", "format": "date-time"}
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "urn:job-dispatcher:completion:v1",
        "title": "Completion",
        "description": (
            "The end (phase `finished`) or a status change (phase `progress`) of a followed job, published to "
            "dispatcher.results with routing key `<service>.<Operation>.<phase>` and to reply_to."
        ),
        "type": "object",
        "required": [
            "job_id",
            "service",
            "operation",
            "metadata",
            "phase",
            "job_status",
            "describe",
            "aws_job",
            "polls",
            "started_at",
            "finished_at",
        ],
        "properties": {
            "job_id": {"type": "string"},
            "service": {"type": "string"},
            "operation": {"type": "string", "description": "The start operation, as in the job."},
            "metadata": strings,
            "phase": {"enum": [FINISHED, PROGRESS]},
            "job_status": {
                "type": ["string", "null"],
                "description": "AWS's own last status, verbatim; null when no Describe call was answered.",
            },
            "describe": {
                "type": ["object", "null"],
                "description": "The last Describe/Get response without ResponseMetadata, timestamps as RFC 3339; "
                "null when no Describe call was answered.",
            },
            "aws_job": {**strings, "description": "The identifiers the Describe/Get call used."},
            "polls": {"type": "integer", "minimum": 0, "description": "Describe/Get calls made for the job."},
            "started_at": {**timestamp, "description": "When AWS accepted the job."},
            "finished_at": {**timestamp, "description": "When the terminal status (or the status change) was seen."},
            "job_outcome": {
                "enum": [str(outcome) for outcome in JobOutcome],
                "description": "How the job ended; only in phase `finished`.",
            },
            "warning": {
                "type": "string",
                "description": "AWS reported a success with a warning (M2 `Succeeded With Warning`, DataZone "
                "`PARTIALLY_SUCCEEDED`): read `describe`.",
            },
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "additionalProperties": False,
                "description": "Why the follow ended `unknown`: the last Describe/Get error.",
            },
            "traceparent": {"type": "string"},
        },
        "additionalProperties": False,
        "allOf": [
            _when({"phase": {"const": FINISHED}}, then={"required": ["job_outcome"]}),
            _when(
                {"phase": {"const": PROGRESS}},
                then={"not": {"anyOf": [{"required": [name]} for name in ("job_outcome", "warning", "error")]}},
            ),
            _when(
                {"job_outcome": {"const": str(JobOutcome.UNKNOWN)}},
                then={"required": ["error"]},
                otherwise={"not": {"required": ["error"]}},
            ),
            _when(
                {"job_outcome": {"const": str(JobOutcome.SUCCEEDED)}},
                otherwise={"not": {"required": ["warning"]}},
            ),
        ],
    }


def _when(
    properties: dict[str, Any], *, then: dict[str, Any] | None = None, otherwise: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`if` the named properties are present and match `properties`, `then`, else `otherwise`."""
    condition: dict[str, Any] = {"if": {"required": list(properties), "properties": properties}}
    if then is not None:
        condition["then"] = then
    if otherwise is not None:
        condition["else"] = otherwise
    return condition
