r"""AWS `pattern` traits, checked the way AWS checks them.

AWS validates a pattern with Java's `String.matches`: the whole value must match, `.` stops at line
terminators, and `\d`, `\w`, `\s` and the POSIX classes are ASCII-only. pydantic's `pattern=` runs
Rust's `regex` with search semantics, so QuickSight's `[\s\S]*[{\[].*[}\]]\s*` would accept a
pretty-printed payload that AWS rejects. `java_to_python` translates the Java syntax used in
botocore's models into Python `re` syntax, refusing what it cannot translate exactly, and
`AwsPattern` applies the result with `re.fullmatch`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Never

from pydantic_core import PydanticCustomError, core_schema

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

# Java's `.` matches anything but these line terminators.
_JAVA_DOT = r"[^\n\r\u0085\u2028\u2029]"
# Java's `$` (no MULTILINE): the end of input, or before a line terminator that ends the input
# (but never between the `\r` and `\n` of a final `\r\n`).
_JAVA_DOLLAR = r"(?:(?=(?:\r\n|[\r\u0085\u2028\u2029])?\Z)|(?<!\r)(?=\n\Z))"
_OUTSIDE_CLASS = {".": _JAVA_DOT, "$": _JAVA_DOLLAR}
# Java's POSIX classes (`\p{Name}`) are US-ASCII only, as character-class contents.
_POSIX_CLASSES = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": r"\x00-\x7F",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": r"!-/:-@\[-`{-~",
    "Graph": "!-~",
    "Print": " -~",
    "Blank": r" \t",
    "Cntrl": r"\x00-\x1F\x7F",
    "XDigit": "0-9a-fA-F",
    "Space": r" \t\n\x0B\f\r",
}
# Escapes whose meaning is the same in Python once compiled with `re.ASCII`.
_SAME_ESCAPES = frozenset("dDwWsStnrfa")
# Escapes that stand for a set of characters (so a `-` after one inside `[...]` is literal).
_SET_ESCAPES = frozenset("dDwWsSpP")
# Group openings that mean the same in both dialects (Python 3.11 has atomic groups).
_SAME_GROUPS = ("(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>")
_HIGH_SURROGATES = range(0xD800, 0xDC00)
_LOW_SURROGATES = range(0xDC00, 0xE000)
_FIRST_ASTRAL_CODE_POINT = 0x10000
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


class UnsupportedJavaRegexError(ValueError):
    """Raised when an AWS pattern uses Java syntax that has no exact Python `re` equivalent."""

    def __init__(self, java_pattern: str, construct: str, position: int | None = None) -> None:
        """Name the construct and where it is, so whoever adds an operation knows what to extend."""
        where = "" if position is None else f" at position {position}"
        super().__init__(
            f"AWS pattern {java_pattern!r} uses {construct}{where}, which has no exact translation "
            "to Python's re yet (see dispatcher.aws_regex.java_to_python)",
        )
        self.java_pattern = java_pattern


def java_to_python(java_pattern: str) -> str:
    """Translate a Java regex into Python `re` syntax with the same meaning under `re.ASCII`."""
    return _Translator(java_pattern).translate()


@functools.cache
def compile_java_pattern(java_pattern: str) -> re.Pattern[str]:
    """Compile a Java regex once; use it with `fullmatch` to get `String.matches` semantics."""
    try:
        return re.compile(java_to_python(java_pattern), re.ASCII)
    except re.error as error:
        construct = f"syntax Python's re rejects ({error.msg})"
        raise UnsupportedJavaRegexError(java_pattern, construct) from error


class _Translator:
    """One left-to-right pass over a Java pattern, tracking whether it is inside `[...]`."""

    def __init__(self, java_pattern: str) -> None:
        self.source = java_pattern
        self.position = 0
        self.in_class = False
        self.after_set_escape = False

    def translate(self) -> str:
        parts: list[str] = []
        while self.position < len(self.source):
            parts.append(self._in_class_token() if self.in_class else self._token())
        if self.in_class:
            self._refuse("an unclosed '['")
        return "".join(parts)

    def _token(self) -> str:
        rest = self.source[self.position :]
        if rest.startswith("\\"):
            return self._escape()
        if rest.startswith("(?"):
            return self._group_opening(rest)
        if rest.startswith("["):
            return self._class_opening(rest)
        self.position += 1
        return _OUTSIDE_CLASS.get(rest[0], rest[0])

    def _class_opening(self, rest: str) -> str:
        opening = "[^" if rest.startswith("[^") else "["
        self.position += len(opening)
        self.in_class = True
        self.after_set_escape = False
        return opening

    def _in_class_token(self) -> str:
        rest = self.source[self.position :]
        char = rest[0]
        after_set_escape, self.after_set_escape = self.after_set_escape, False
        if char == "\\":
            self.after_set_escape = rest[1:2] in _SET_ESCAPES
            return self._escape()
        if char == "[":
            self._refuse("a nested character class")
        if rest.startswith("&&"):
            self._refuse("a character-class intersection '&&'")
        self.position += 1
        if char == "]":
            self.in_class = False
        if char == "-" and after_set_escape:
            return r"\-"  # Java reads `[\w-_]` as three items; Python calls it a bad range.
        return char

    def _group_opening(self, rest: str) -> str:
        for opening in _SAME_GROUPS:
            if rest.startswith(opening):
                self.position += len(opening)
                return opening
        named = re.match(r"\(\?<([A-Za-z][A-Za-z0-9]*)>", rest)
        if not named:
            self._refuse(f"the group or flag syntax {rest[:4]!r}")
        self.position += named.end()
        return f"(?P<{named.group(1)}>"

    def _escape(self) -> str:
        rest = self.source[self.position :]
        char = rest[1:2]
        if char == "u":
            return self._unicode_escape()
        if char in {"p", "P"}:
            return self._posix_class(rest)
        hex_escape = re.match(r"\\x[0-9a-fA-F]{2}", rest)
        if hex_escape:
            self.position += hex_escape.end()
            return hex_escape.group()
        if not char or (char.isascii() and char.isalnum() and char not in _SAME_ESCAPES | {"e"}):
            self._refuse(f"the escape {rest[:2]!r}")
        self.position += 2
        if char == "e":
            return r"\x1B"
        return "\\" + char if char in _SAME_ESCAPES else re.escape(char)

    def _unicode_escape(self) -> str:
        r"""`\uXXXX`, joining a surrogate pair (Java's spelling of a code point above U+FFFF)."""
        first = _UNICODE_ESCAPE.match(self.source, self.position)
        if not first:
            self._refuse("a malformed '\\u' escape")
        self.position = first.end()
        code_point = int(first.group(1), 16)
        second = _UNICODE_ESCAPE.match(self.source, self.position)
        if second and code_point in _HIGH_SURROGATES:
            low = int(second.group(1), 16)
            if low in _LOW_SURROGATES:
                self.position = second.end()
                offset = ((code_point - _HIGH_SURROGATES.start) << 10) + low - _LOW_SURROGATES.start
                code_point = _FIRST_ASTRAL_CODE_POINT + offset
        if code_point >= _FIRST_ASTRAL_CODE_POINT:
            return f"\\U{code_point:08X}"
        return f"\\u{code_point:04X}"

    def _posix_class(self, rest: str) -> str:
        named = re.match(r"\\([pP])\{(\w*)\}", rest)
        if not named:
            self._refuse(f"the escape {rest[:2]!r} without a {{Name}}")
        ranges = _POSIX_CLASSES.get(named.group(2))
        if ranges is None:
            self._refuse(f"the character property {named.group()!r}")
        negated = named.group(1) == "P"
        if negated and self.in_class:
            self._refuse("a negated property inside a character class")
        self.position += named.end()
        if self.in_class:
            return ranges
        return f"[^{ranges}]" if negated else f"[{ranges}]"

    def _refuse(self, construct: str) -> Never:
        raise UnsupportedJavaRegexError(self.source, construct, self.position)


@dataclass(frozen=True, slots=True)
class AwsPattern:
    r"""A string must fully match this AWS (Java) pattern: `Annotated[str, AwsPattern(r"\d+")]`.

    The JSON Schema gets the AWS pattern itself, anchored, since JSON Schema patterns search.
    """

    java_pattern: str

    def __post_init__(self) -> None:
        """Translate and compile now, so a pattern that cannot be translated fails at import."""
        compile_java_pattern(self.java_pattern)

    def __get_pydantic_core_schema__(
        self,
        source_type: Any,  # noqa: ANN401 - pydantic's hook signature
        handler: GetCoreSchemaHandler,
    ) -> core_schema.CoreSchema:
        """Check the pattern after the string's own type and length checks."""
        compiled = compile_java_pattern(self.java_pattern)

        def check(value: str) -> str:
            if compiled.fullmatch(value) is None:
                raise PydanticCustomError(
                    "aws_pattern_mismatch",
                    "String should match the AWS pattern {pattern}",
                    {"pattern": self.java_pattern},
                )
            return value

        return core_schema.no_info_after_validator_function(check, handler(source_type))

    def __get_pydantic_json_schema__(
        self,
        schema: core_schema.CoreSchema,
        handler: GetJsonSchemaHandler,
    ) -> JsonSchemaValue:
        """Publish the AWS pattern, anchored at both ends so that search means full match."""
        json_schema = handler(schema)
        json_schema["pattern"] = anchored(self.java_pattern)
        return json_schema


def anchored(java_pattern: str) -> str:
    """Wrap the pattern in `^(?:...)$` unless it already is one anchored alternative."""
    ends_with_anchor = java_pattern.endswith("$") and not java_pattern.endswith("\\$")
    if java_pattern.startswith("^") and ends_with_anchor and "|" not in java_pattern:
        return java_pattern
    return f"^(?:{java_pattern})$"
