"""AWS (Java) patterns checked with Java's `String.matches` semantics in Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import botocore.session
import pytest
from pydantic import Field, TypeAdapter, ValidationError

from dispatcher.aws_regex import (
    AwsPattern,
    UnsupportedJavaRegexError,
    anchored,
    compile_java_pattern,
    java_to_python,
)
from dispatcher.operations import OPERATION_SPECS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from botocore.model import Shape

ARABIC_INDIC_DIGITS = "\u0661\u0662\u0663"
GLUE_NAME_PATTERN = r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*"
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


def _patterns_in(shape: Shape, seen: set[str]) -> Iterator[str]:
    if shape.name in seen:
        return
    seen.add(shape.name)
    if "pattern" in shape.metadata:
        yield shape.metadata["pattern"]
    if shape.type_name == "structure":
        children = list(shape.members.values())
    elif shape.type_name == "list":
        children = [shape.member]
    elif shape.type_name == "map":
        children = [shape.key, shape.value]
    else:
        children = []
    for child in children:
        yield from _patterns_in(child, seen)


def _registered_patterns() -> set[str]:
    session = botocore.session.get_session()
    patterns: set[str] = set()
    for spec in OPERATION_SPECS:
        input_shape = session.get_service_model(spec.service).operation_model(spec.operation).input_shape
        patterns.update(_patterns_in(input_shape, set()))
    return patterns


def _check(pattern: str, value: str) -> None:
    TypeAdapter(Annotated[str, AwsPattern(pattern)]).validate_python(value)


def test_every_registered_pattern_has_cases() -> None:
    """The case table covers exactly the patterns of the registered operations' models."""
    assert _registered_patterns() == set(PATTERN_CASES)


@pytest.mark.parametrize(
    ("pattern", "value"),
    [(pattern, value) for pattern, (accepted, _) in PATTERN_CASES.items() for value in accepted],
)
def test_pattern_accepts_what_aws_accepts(pattern: str, value: str) -> None:
    """A value AWS's pattern matches as a whole passes validation."""
    _check(pattern, value)


@pytest.mark.parametrize(
    ("pattern", "value"),
    [(pattern, value) for pattern, (_, refused) in PATTERN_CASES.items() for value in refused],
)
def test_pattern_refuses_what_aws_refuses(pattern: str, value: str) -> None:
    """A value AWS's pattern does not match as a whole fails with the AWS pattern in the message."""
    with pytest.raises(ValidationError) as info:
        _check(pattern, value)
    (error,) = info.value.errors()
    assert error["type"] == "aws_pattern_mismatch"
    assert pattern in error["msg"]


@pytest.mark.parametrize("terminator", ["\n", "\r", "\x85", "\u2028", "\u2029"])
def test_dot_stops_at_every_java_line_terminator(terminator: str) -> None:
    """Java's `.` matches no line terminator, including the Unicode ones Python's `.` matches."""
    assert compile_java_pattern("a.b").fullmatch(f"a{terminator}b") is None


@pytest.mark.parametrize("character", ["\t", "\x0b", "\x0c", "\u00e9", "\U0001f600"])
def test_dot_matches_other_characters(character: str) -> None:
    """Java's `.` matches any character that is not a line terminator."""
    assert compile_java_pattern("a.b").fullmatch(f"a{character}b")


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (r"a$\n", "a\n", True),
        (r"a$\r\n", "a\r\n", True),
        (r"a$\u2028", "a\u2028", True),
        (r"a\r$\n", "a\r\n", False),
        (r"a$b", "ab", False),
        (r"a$", "a\n", False),
    ],
)
def test_dollar_matches_only_before_a_final_line_terminator(pattern: str, value: str, *, matches: bool) -> None:
    r"""Java's `$` matches at the end or before one final line terminator, never inside `\r\n`."""
    assert (compile_java_pattern(pattern).fullmatch(value) is not None) is matches


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (r"\d+", ARABIC_INDIC_DIGITS, False),
        (r"\d+", "0123456789", True),
        (r"\w+", "\u00e9t\u00e9", False),
        (r"\w+", "az_AZ09", True),
        (r"\s", "\u00a0", False),
        (r"\s+", " \t\n\x0b\f\r", True),
        (r"\S", "\u00a0", True),
        (r"\D", ARABIC_INDIC_DIGITS[0], True),
    ],
)
def test_shorthand_classes_are_ascii_only(pattern: str, value: str, *, matches: bool) -> None:
    r"""Java's `\d`, `\w` and `\s` cover ASCII only, so other digits, letters and spaces differ."""
    assert (compile_java_pattern(pattern).fullmatch(value) is not None) is matches


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (r"\p{ASCII}", "\x00", True),
        (r"\p{ASCII}", "\x7f", True),
        (r"\p{ASCII}", "\x80", False),
        (r"\P{ASCII}", "\u00e9", True),
        (r"\P{ASCII}", "e", False),
        (r"\p{Alpha}", "\u00e9", False),
        (r"[\p{Digit}x]+", "1x2", True),
        (r"\p{Punct}+", "!/:@[`{~", True),
        (r"\p{Space}", "\u00a0", False),
    ],
)
def test_posix_classes_are_ascii_only(pattern: str, value: str, *, matches: bool) -> None:
    r"""Java's `\p{Name}` POSIX classes are US-ASCII sets, inside or outside brackets."""
    assert (compile_java_pattern(pattern).fullmatch(value) is not None) is matches


def test_surrogate_pair_escapes_become_one_code_point() -> None:
    r"""A Java `\uD83D\uDE00` pair is the single code point U+1F600."""
    assert java_to_python(r"\uD83D\uDE00") == r"\U0001F600"
    assert compile_java_pattern(r"\uD83D\uDE00").fullmatch("\U0001f600")


@pytest.mark.parametrize(
    ("value", "matches"),
    [("nightly-etl", True), ("job \U0001f600", True), ("tab\tok", True), ("line\nbreak", False), ("nul\x00", False)],
)
def test_glue_name_pattern_ranges_over_supplementary_planes(value: str, *, matches: bool) -> None:
    """Glue's name pattern, spelled with surrogate pairs, admits astral characters and no line breaks."""
    assert (compile_java_pattern(GLUE_NAME_PATTERN).fullmatch(value) is not None) is matches


def test_dash_after_a_class_escape_is_literal() -> None:
    r"""Java reads `[\w-_]` as `\w`, `-` and `_`, where Python would see a bad range."""
    pattern = compile_java_pattern(r"[\w-_]+")
    assert pattern.fullmatch("a-b_c")
    assert pattern.fullmatch("a+b") is None


def test_named_group_is_translated() -> None:
    """Java's `(?<name>...)` becomes Python's `(?P<name>...)`."""
    match = compile_java_pattern(r"(?<year>\d{4})-\d{2}").fullmatch("2024-05")
    assert match
    assert match.group("year") == "2024"


@pytest.mark.parametrize(
    "pattern",
    [
        r"\p{L}+",
        r"\bword",
        r"(?i)abc",
        r"(?s).*",
        r"[a[b]]",
        r"[a-z&&[^aeiou]]",
        r"[\P{ASCII}]",
        r"(a)\1",
        r"a{2}{3}",
        r"[abc",
    ],
)
def test_untranslatable_pattern_is_refused(pattern: str) -> None:
    """Java syntax without an exact Python equivalent is an error that names the AWS pattern."""
    with pytest.raises(UnsupportedJavaRegexError) as info:
        compile_java_pattern(pattern)
    assert repr(pattern) in str(info.value)


def test_annotation_with_untranslatable_pattern_fails_when_built() -> None:
    """`AwsPattern` compiles on construction, so a bad pattern fails at import, not per message."""
    with pytest.raises(UnsupportedJavaRegexError):
        AwsPattern(r"\p{L}+")


def test_pattern_is_compiled_once() -> None:
    """Compiling the same AWS pattern twice returns the cached compiled pattern."""
    assert compile_java_pattern(r"\d{12}") is compile_java_pattern(r"\d{12}")


def test_length_is_checked_before_the_pattern() -> None:
    """A value that is too long fails on its length alone, before the pattern runs over it."""
    adapter = TypeAdapter(Annotated[str, Field(max_length=3), AwsPattern(r"\d+")])
    with pytest.raises(ValidationError) as info:
        adapter.validate_python("abcd")
    assert [error["type"] for error in info.value.errors()] == ["string_too_long"]


@pytest.mark.parametrize(
    ("java_pattern", "json_schema_pattern"),
    [
        (r"\d+", r"^(?:\d+)$"),
        (r"^[0-9]{12}$", r"^[0-9]{12}$"),
        (r"(^$)|([a-z]{1,3}/$)", r"^(?:(^$)|([a-z]{1,3}/$))$"),
        (r"^a|b$", r"^(?:^a|b$)$"),
        (r"^cost\$", r"^(?:^cost\$)$"),
    ],
)
def test_json_schema_gets_the_aws_pattern_anchored(java_pattern: str, json_schema_pattern: str) -> None:
    """JSON Schema's `pattern` searches, so the AWS pattern is published anchored at both ends."""
    assert anchored(java_pattern) == json_schema_pattern
    schema = TypeAdapter(Annotated[str, AwsPattern(java_pattern)]).json_schema()
    assert schema == {"type": "string", "pattern": json_schema_pattern}
