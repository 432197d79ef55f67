"""The AWS patterns of the registered operations, shared by the pattern tests."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import botocore.session

from dispatcher.operations import OPERATION_SPECS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from botocore.model import Shape

ARABIC_INDIC_DIGITS = "\u0661\u0662\u0663"
CLEANROOMS_TEMPLATE_ARN = "arn:aws:cleanrooms:us-east-1:123456789012:membership/m-1/analysistemplate/t_1"

# Every pattern in the input shapes of the registered operations: values AWS accepts, values it refuses.
PATTERN_CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    r"^[0-9]{12}$": (
        ("123456789012",),
        ("12345678901", "123456789012\n", "1234567890123"),
    ),
    r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}": (
        ("0123abcd-ABCD-0000-ffff-0123456789ab",),
        (
            "0123abcd-ABCD-0000-ffff-0123456789abc",
            "0123abcg-abcd-0000-ffff-0123456789ab",
            "x0123abcd-ABCD-0000-ffff-0123456789ab",
        ),
    ),
    r"[\s\S]*[{\[].*[}\]]\s*": (
        ('{"a":1}', "[1,2]", '{"a":1}\n', 'header\n{"a":1}'),
        ('{\n  "a": 1\n}', '"just a string"', '{"a":"x\u2028y"}', "{}x"),
    ),
    r"^[0-9a-zA-Z_-]{1,200}$": (
        ("pump_telemetry-2",),
        ("pump telemetry", "pump\n", ""),
    ),
    r"^[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9]$": (
        ("my.bucket-1", "abc"),
        ("My-Bucket", "-bucket", "bucket-", "ab"),
    ),
    r"(^$)|([\u0009\u000A\u000D\u0020-\u00FF]{1,1023}/$)": (
        ("", "input/data/", "tab\there/", "line\nbreak/", "\u00fcber/"),
        ("input/data", "\u20ac/", "\n", "/\n"),
    ),
    r"arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+": (
        ("arn:aws:iam::123456789012:role/LookoutIngest", "arn:aws-cn:iam::123456789012:role/r"),
        ("arn:aws:iam::123456789012:role/", "arn:aws:iam::123456789012:role/a\nb", "xarn:aws:iam::123456789012:role/r"),
    ),
    r"\p{ASCII}{1,256}": (
        ("token-1 ~\t",),
        ("t\u00f6ken", ""),
    ),
    r"dzd[-_][a-zA-Z0-9_-]{1,36}": (
        ("dzd_abc123", "dzd-1"),
        ("dzd_", "xdzd_abc", "dzd_abc!"),
    ),
    r"[a-zA-Z0-9_-]{1,36}": (
        ("ds-1_A", "a" * 36),
        ("a" * 37, "ds 1", "ds\n"),
    ),
    r"^\S{1,80}$": (
        ("app-1", "app\u00a0id", "\u00fcnicode"),
        ("app id", "app\n", "a" * 81),
    ),
    r"^[A-Za-z][A-Za-z0-9]{1,31}$": (
        ("Param1", "P" * 32),
        ("P", "1abc", "a_b", "P" * 33),
    ),
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}": (
        ("0123abcd-0000-4000-8000-0123456789ab",),
        ("0123ABCD-0000-4000-8000-0123456789AB", "0123abcd00004000800001234567890ab"),
    ),
    r"arn:aws[-a-z]*:cleanrooms:[\w]{2}-[\w]{4,9}-[\d]:[\d]{12}:membership/[\d\w-]+/analysistemplate/[\d\w-]+": (
        (
            CLEANROOMS_TEMPLATE_ARN,
            "arn:aws-cn:cleanrooms:cn-north-1:123456789012:membership/m/analysistemplate/t",
        ),
        (
            CLEANROOMS_TEMPLATE_ARN.replace("east-1", f"east-{ARABIC_INDIC_DIGITS[0]}"),
            CLEANROOMS_TEMPLATE_ARN.replace("t_1", "t\u00e9"),
            CLEANROOMS_TEMPLATE_ARN.replace("123456789012", "12345678901"),
        ),
    ),
    r"[0-9a-zA-Z_]+": (
        ("param_1",),
        ("param-1", ""),
    ),
    r"\d+": (
        ("123456789012",),
        (ARABIC_INDIC_DIGITS * 4, "12345678901a", ""),
    ),
}


# The longest string a message can carry where a deployment raises max_message_bytes (1 MiB by
# default) for QuickSight's 7,000,000-character InputPayload: patterns must stay fast up to there.
MAX_MESSAGE_CHARS: int = 8 * 1024 * 1024


def _string_shapes(shape: Shape, seen: set[str]) -> Iterator[Shape]:
    if shape.name in seen:
        return
    seen.add(shape.name)
    if "pattern" in shape.metadata:
        yield shape
    if shape.type_name == "structure":
        children = list(shape.members.values())
    elif shape.type_name == "list":
        children = [shape.member]
    elif shape.type_name == "map":
        children = [shape.key, shape.value]
    else:
        children = []
    for child in children:
        yield from _string_shapes(child, seen)


@functools.cache
def registered_patterns() -> dict[str, int]:
    """Every pattern in the registered operations' input shapes, to the longest value it can be given.

    That is the largest `max` of the shapes using it, or the message size limit if one has none.
    """
    session = botocore.session.get_session()
    longest: dict[str, int] = {}
    for spec in OPERATION_SPECS:
        input_shape = session.get_service_model(spec.service).operation_model(spec.operation).input_shape
        for shape in _string_shapes(input_shape, set()):
            pattern = shape.metadata["pattern"]
            limit = min(shape.metadata.get("max", MAX_MESSAGE_CHARS), MAX_MESSAGE_CHARS)
            longest[pattern] = max(longest.get(pattern, 0), limit)
    return longest
