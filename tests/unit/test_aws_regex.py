"""AWS (Java) patterns checked with Java's `String.matches` semantics on RE2."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from dispatcher.aws_regex import (
    AwsPattern,
    UnsupportedJavaRegexError,
    anchored,
    compile_java_pattern,
    java_to_re2,
)
from tests.unit.pattern_support import ARABIC_INDIC_DIGITS, PATTERN_CASES, registered_patterns

GLUE_NAME_PATTERN = r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*"


def _check(pattern: str, value: str) -> None:
    TypeAdapter(Annotated[str, AwsPattern(pattern)]).validate_python(value)


def test_every_registered_pattern_has_cases() -> None:
    """The case table covers exactly the patterns of the registered operations' models."""
    assert set(registered_patterns()) == set(PATTERN_CASES)


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
        (r"a$", "a", True),
        (r"a$", "a\n", False),
        (r"a$", "a\r\n", False),
        (r"a$", "a\u2028", False),
        (r"(^$)|(a/$)", "", True),
        (r"(^$)|(a/$)", "\n", False),
        (r"(^$)|(a/$)", "a/\r", False),
        (r"(a$|b)", "a", True),
    ],
)
def test_final_dollar_is_the_end_of_input(pattern: str, value: str, *, matches: bool) -> None:
    r"""Java's `$` also matches before a final line terminator, but `matches()` then needs the end."""
    assert (compile_java_pattern(pattern).fullmatch(value) is not None) is matches


def test_final_dollar_becomes_end_of_text() -> None:
    r"""A `$` that only the end of the pattern follows is RE2's `\z`."""
    assert java_to_re2(r"^[0-9]{12}$") == r"^[0-9]{12}\z"


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
    assert java_to_re2(r"\uD83D\uDE00") == r"\x{1F600}"
    assert compile_java_pattern(r"\uD83D\uDE00").fullmatch("\U0001f600")


@pytest.mark.parametrize(
    ("value", "matches"),
    [("nightly-etl", True), ("job \U0001f600", True), ("tab\tok", True), ("line\nbreak", False), ("nul\x00", False)],
)
def test_glue_name_pattern_ranges_over_supplementary_planes(value: str, *, matches: bool) -> None:
    """Glue's name pattern, spelled with surrogate pairs, admits astral characters and no line breaks."""
    assert (compile_java_pattern(GLUE_NAME_PATTERN).fullmatch(value) is not None) is matches


def test_dash_after_a_class_escape_is_literal() -> None:
    r"""Java reads `[\w-_]` as `\w`, `-` and `_`, not as a range."""
    pattern = compile_java_pattern(r"[\w-_]+")
    assert pattern.fullmatch("a-b_c")
    assert pattern.fullmatch("a+b") is None


def test_named_group_is_translated() -> None:
    """Java's `(?<name>...)` is a group like any other: only whether the value matches is used."""
    pattern = compile_java_pattern(r"(?<year>\d{4})-\d{2}")
    assert pattern.fullmatch("2024-05")
    assert pattern.fullmatch("24-05") is None


def test_negated_property_inside_a_class() -> None:
    r"""`[\P{ASCII}x]` is every non-ASCII character and `x`."""
    pattern = compile_java_pattern(r"[\P{ASCII}x]+")
    assert pattern.fullmatch("x\u00e9\U0001f600")
    assert pattern.fullmatch("xy") is None


@pytest.mark.parametrize(
    ("pattern", "length", "matches"),
    [
        (r"x{1,1023}", 1023, True),
        (r"x{1,1023}", 1024, False),
        (r"x{1,1023}", 0, False),
        (r"x{2001,}", 2000, False),
        (r"x{2001,}", 5000, True),
        (r"(xy){1500}", 1500, True),
        (r"(xy){1500}", 1499, False),
    ],
)
def test_counts_above_re2s_limit_are_split(pattern: str, length: int, *, matches: bool) -> None:
    """RE2 refuses counts over 1000; the split repetition still counts exactly."""
    unit = "xy" if "xy" in pattern else "x"
    assert (compile_java_pattern(pattern).fullmatch(unit * length) is not None) is matches


def test_lazy_quantifier_matches_like_a_greedy_one() -> None:
    """Laziness picks a different match, never a different answer to whether one exists."""
    assert compile_java_pattern(r"a+?b*?").fullmatch("aabb")


@pytest.mark.parametrize(
    "pattern",
    [
        r"\p{L}+",
        r"\bword",
        r"(?i)abc",
        r"(?s).*",
        r"[a[b]]",
        r"[a-z&&[^aeiou]]",
        r"(a)\1",
        r"a{2}{3}",
        r"[abc",
        r"(a",
        r"a)",
        r"*a",
        r"a{,3}",
        r"a*+",
        r"(?=a)a",
        r"(?!a).",
        r"(?<=a)b",
        r"(?>a)",
        r"a$b",
        r"a$\n",
        r"(a$)b",
        r"(a$)*",
        r"a$*",
        r"^+",
        r"[]a]",
        r"[z-a]",
        r"\x{41}",
        r"[^\x00-\uFFFF\uD800\uDC00-\uDBFF\uDFFF]",
        r".{1,65535}",
    ],
)
def test_untranslatable_pattern_is_refused(pattern: str) -> None:
    """Java syntax without an exact RE2 equivalent is an error that names the AWS pattern."""
    with pytest.raises(UnsupportedJavaRegexError) as info:
        compile_java_pattern(pattern)
    assert repr(pattern) in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (r"[\u0020-\uFFFF]+", "a\u00e9\u20ac\uffff", True),
        (r"[\u0020-\uFFFF]+", "\U0001f600", False),
        (r"[\uD800-\uDBFF][\uDC00-\uDFFF]", "\U0001f600", False),
        (r"\uD83D.", "\U0001f600", False),
    ],
)
def test_surrogates_in_a_pattern_never_match_half_a_pair(pattern: str, value: str, *, matches: bool) -> None:
    """Java matches code points, so a range over the surrogates admits no character above U+FFFF."""
    assert (compile_java_pattern(pattern).fullmatch(value) is not None) is matches


def test_value_with_a_lone_surrogate_is_refused() -> None:
    """RE2 reads UTF-8, which has no lone surrogates; nor can a JSON message carry one."""
    with pytest.raises(ValidationError) as info:
        _check(r"[\s\S]*", "a\ud800")
    assert [error["type"] for error in info.value.errors()] == ["string_lone_surrogate"]


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
