r"""AWS `pattern` traits, checked the way AWS checks them, in time linear in the value's length.

AWS validates a pattern with Java's `String.matches`: the whole value must match, `.` stops at line
terminators, and `\d`, `\w`, `\s` and the POSIX classes are ASCII-only. pydantic's `pattern=` runs
Rust's `regex` with search semantics, so QuickSight's `[\s\S]*[{\[].*[}\]]\s*` would accept a
pretty-printed payload that AWS rejects. A backtracking engine (Python's `re`, Java's own) takes
quadratic time on that pattern, and the payload may be megabytes long: one message would stall the
event loop for minutes. So `java_to_re2` translates the Java syntax used in botocore's models into
RE2 syntax with the same meaning, refusing what it cannot translate exactly, and `AwsPattern` runs
the result on RE2, whose automata take linear time whatever the pattern and the value.

Every character set (`.`, `\s`, `\p{Punct}`, `[^:]`, ...) is spelled out as explicit code point
ranges, so no RE2 default (its `\s` lacks `\x0B`) can differ from Java's. Java's `$` matches at the
end or before a final line terminator; `matches()` then requires the end, so a `$` that nothing in
the pattern can follow means the end of input, `\z`, and a `$` anything could follow is refused.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Never

import re2
from pydantic_core import PydanticCustomError, core_schema

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

# A set of code points as sorted, disjoint, non-adjacent inclusive ranges.
_Ranges = tuple[tuple[int, int], ...]

_MAX_CODE_POINT = 0x10FFFF
_HIGH_SURROGATES = range(0xD800, 0xDC00)
_LOW_SURROGATES = range(0xDC00, 0xE000)
_FIRST_ASTRAL_CODE_POINT = 0x10000
# RE2 refuses a repetition count above 1000; longer ones are split into several repetitions.
_RE2_MAX_REPEAT = 1000
# Java's own definitions (java.util.regex.Pattern, without UNICODE_CHARACTER_CLASS), in Java syntax.
_DOT = r"[^\n\r\u0085\u2028\u2029]"
_SHORTHANDS = {"d": "[0-9]", "w": "[a-zA-Z_0-9]", "s": r"[ \t\n\x0B\f\r]"}
_POSIX_CLASSES = {
    "Lower": "[a-z]",
    "Upper": "[A-Z]",
    "ASCII": r"[\x00-\x7F]",
    "Alpha": "[a-zA-Z]",
    "Digit": "[0-9]",
    "Alnum": "[a-zA-Z0-9]",
    "Punct": r"[!-/:-@\[-`{-~]",
    "Graph": "[!-~]",
    "Print": "[ -~]",
    "Blank": r"[ \t]",
    "Cntrl": r"[\x00-\x1F\x7F]",
    "XDigit": "[0-9a-fA-F]",
    "Space": r"[ \t\n\x0B\f\r]",
}
_CONTROL_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "f": 0x0C, "a": 0x07, "e": 0x1B}
_HEX_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_PROPERTY = re.compile(r"\\([pP])\{(\w*)\}")
_COUNTED = re.compile(r"\{([0-9]+)(?:(,)([0-9]*))?\}")
_NAMED_GROUP = re.compile(r"\(\?<[a-zA-Z][a-zA-Z0-9]*>")
_QUANTIFIER_STARTS = frozenset("*+?{")
_SHORT_QUANTIFIERS: dict[str, tuple[int, int | None]] = {"*": (0, None), "+": (1, None), "?": (0, 1)}
_SHORT_QUANTIFIER_TEXTS = {bounds: text for text, bounds in _SHORT_QUANTIFIERS.items()}
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refusal is an exception, not a line on stderr


class UnsupportedJavaRegexError(ValueError):
    """Raised when an AWS pattern uses Java syntax that has no exact RE2 equivalent."""

    def __init__(self, java_pattern: str, construct: str, position: int | None = None) -> None:
        """Name the construct and where it is, so whoever adds an operation knows what to extend."""
        where = "" if position is None else f" at position {position}"
        super().__init__(
            f"AWS pattern {java_pattern!r} uses {construct}{where}, which has no exact translation "
            "to RE2 yet (see dispatcher.aws_regex.java_to_re2)",
        )
        self.java_pattern = java_pattern


def java_to_re2(java_pattern: str) -> str:
    """Translate a Java regex into RE2 syntax that full-matches exactly the strings Java's `matches` does."""
    return _Translator(java_pattern).translate()


@functools.cache
def compile_java_pattern(java_pattern: str) -> re2._Regexp[str]:
    """Compile a Java regex once; use it with `fullmatch` to get `String.matches` semantics."""
    translated = java_to_re2(java_pattern)
    try:
        return re2.compile(translated, _RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode() if isinstance(error.args[0], bytes) else error
        raise UnsupportedJavaRegexError(java_pattern, f"what RE2 rejects once translated ({reason})") from error


@dataclass(frozen=True, slots=True)
class _Piece:
    """Translated text, and what the rest of the pattern may do with it."""

    text: str
    quantifiable: bool = True
    ends_at_dollar: bool = False  # a `$` in it is followed by nothing so far


class _Translator:
    """Recursive descent over a Java pattern: alternation, sequence, quantified atom."""

    def __init__(self, java_pattern: str) -> None:
        self.source = java_pattern
        self.position = 0

    def translate(self) -> str:
        piece = self._alternation()
        if self.position < len(self.source):
            self._refuse("an unmatched ')'")
        return piece.text

    def _peek(self, length: int = 1) -> str:
        return self.source[self.position : self.position + length]

    def _alternation(self) -> _Piece:
        branches = [self._sequence()]
        while self._peek() == "|":
            self.position += 1
            branches.append(self._sequence())
        return _Piece("|".join(b.text for b in branches), ends_at_dollar=any(b.ends_at_dollar for b in branches))

    def _sequence(self) -> _Piece:
        texts: list[str] = []
        ends_at_dollar = False
        while self._peek() not in {"", "|", ")"}:
            if ends_at_dollar:
                self._refuse("'$' followed by more pattern (Java's '$' then also matches before a final line break)")
            piece = self._quantified(self._atom())
            texts.append(piece.text)
            ends_at_dollar = piece.ends_at_dollar
        return _Piece("".join(texts), ends_at_dollar=ends_at_dollar)

    def _atom(self) -> _Piece:
        char = self._peek()
        if char in _QUANTIFIER_STARTS:
            self._refuse(f"a quantifier {char!r} with nothing to repeat")
        if char == "(":
            return self._group()
        if char == "[":
            return _Piece(self._spelled_set(self.bracketed_class()))
        if char == "\\":
            escaped = self._escape()
            return _Piece(self._spelled_set(escaped if isinstance(escaped, tuple) else ((escaped, escaped),)))
        self.position += len(char)
        if char == ".":
            return _Piece(self._spelled_set(_parse_set(_DOT)))
        if char == "^":
            return _Piece("^", quantifiable=False)  # without MULTILINE: the start of input, in both
        if char == "$":
            return _Piece(r"\z", quantifiable=False, ends_at_dollar=True)
        return _Piece(self._spelled_set(((ord(char), ord(char)),)))

    def _group(self) -> _Piece:
        """Every group becomes non-capturing: only whether the value matches is used."""
        named = _NAMED_GROUP.match(self.source, self.position)
        if named:
            self.position = named.end()
        elif self._peek(3) == "(?:":
            self.position += 3
        elif self._peek(2) == "(?":
            self._refuse(f"the group or flag syntax {self._peek(4)!r}")
        else:
            self.position += 1
        inner = self._alternation()
        if self._peek() != ")":
            self._refuse("an unclosed '('")
        self.position += 1
        return _Piece(f"(?:{inner.text})", ends_at_dollar=inner.ends_at_dollar)

    def _quantified(self, atom: _Piece) -> _Piece:
        """Apply a following quantifier; laziness is dropped, as it changes which match, not whether."""
        start = self.position
        bounds = self._quantifier()
        if bounds is None:
            return atom
        if not atom.quantifiable or atom.ends_at_dollar:
            self._refuse("a quantifier on '^' or '$'", start)
        if self._peek() == "+":
            self._refuse("a possessive quantifier")
        if self._peek() == "?":
            self.position += 1
        return _Piece(_repeated(atom.text, *bounds))

    def _quantifier(self) -> tuple[int, int | None] | None:
        char = self._peek()
        if char in _SHORT_QUANTIFIERS:
            self.position += 1
            return _SHORT_QUANTIFIERS[char]
        if char != "{":
            return None
        counted = _COUNTED.match(self.source, self.position)
        if not counted:
            self._refuse("a '{' that is not a repetition count")
        low, comma, high = counted.groups()
        if not comma:
            high = low
        if high and int(high) < int(low):
            self._refuse("a repetition range whose maximum is below its minimum")
        self.position = counted.end()
        return int(low), int(high) if high else None

    def bracketed_class(self) -> _Ranges:
        """A `[...]` class, to the set of code points Java's matcher accepts for it."""
        self.position += 1
        negated = self._peek() == "^"
        if negated:
            self.position += 1
        if self._peek() == "]":
            self._refuse("a ']' first in a character class")
        items: list[tuple[int, int]] = []
        while self._peek() != "]":
            items.extend(self._class_item())
        self.position += 1
        ranges = _union(items)
        return _complement(ranges) if negated else ranges

    def _class_item(self) -> _Ranges:
        """One character, one range `a-z` (Java's: a `-` before `]` is literal), or one escaped set."""
        first = self._class_char()
        if isinstance(first, tuple):
            return first
        if self._peek() != "-" or self._peek(2)[1:] in {"]", ""}:
            return ((first, first),)
        self.position += 1
        last = self._class_char()
        if isinstance(last, tuple) or last < first:
            self._refuse("a character range that is not from one character to a later one")
        return ((first, last),)

    def _class_char(self) -> int | _Ranges:
        char = self._peek()
        if char == "\\":
            return self._escape()
        if char in {"", "["}:
            self._refuse("a nested character class" if char else "an unclosed '['")
        if self._peek(2) == "&&":
            self._refuse("a character-class intersection '&&'")
        self.position += 1
        return ord(char)

    def _escape(self) -> int | _Ranges:
        r"""A backslash escape: one code point, or a set for `\d`, `\p{Name}` and the like."""
        char = self.source[self.position + 1 : self.position + 2]
        if char == "u":
            return self._unicode_escape()
        if char in {"p", "P"}:
            return self._posix_class()
        hex_escape = _HEX_ESCAPE.match(self.source, self.position)
        if hex_escape:
            self.position = hex_escape.end()
            return int(hex_escape.group(1), 16)
        if char.lower() in _SHORTHANDS:
            self.position += 2
            ranges = _parse_set(_SHORTHANDS[char.lower()])
            return _complement(ranges) if char.isupper() else ranges
        if char in _CONTROL_ESCAPES:
            self.position += 2
            return _CONTROL_ESCAPES[char]
        if not char or (char.isascii() and char.isalnum()):
            self._refuse(f"the escape {self._peek(2)!r}")
        self.position += 2
        return ord(char)

    def _unicode_escape(self) -> int:
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
        return code_point

    def _posix_class(self) -> _Ranges:
        named = _PROPERTY.match(self.source, self.position)
        if not named:
            self._refuse(f"the escape {self._peek(2)!r} without a {{Name}}")
        definition = _POSIX_CLASSES.get(named.group(2))
        if definition is None:
            self._refuse(f"the character property {named.group()!r}")
        self.position = named.end()
        ranges = _parse_set(definition)
        return _complement(ranges) if named.group(1) == "P" else ranges

    def _spelled_set(self, ranges: _Ranges) -> str:
        """Spell a set as one RE2 character or a class of explicit ranges.

        Surrogates stay in: Java matches code points, never half of a pair, so a surrogate in a
        pattern matches only a lone one, which no value has (`AwsPattern` refuses those).
        """
        if not ranges:
            self._refuse("a character class that matches nothing")
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return _spelled(ranges[0][0])
        spelled = (_spelled(low) if low == high else f"{_spelled(low)}-{_spelled(high)}" for low, high in ranges)
        return f"[{''.join(spelled)}]"

    def _refuse(self, construct: str, position: int | None = None) -> Never:
        raise UnsupportedJavaRegexError(self.source, construct, self.position if position is None else position)


@functools.cache
def _parse_set(java_class: str) -> _Ranges:
    """One of this module's own class definitions, parsed by the translator it serves."""
    return _Translator(java_class).bracketed_class()


def _union(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(ranges: _Ranges) -> _Ranges:
    """The code points not in `ranges`, as Java's negation."""
    gaps: list[tuple[int, int]] = []
    start = 0
    for low, high in ranges:
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE_POINT:
        gaps.append((start, _MAX_CODE_POINT))
    return tuple(gaps)


def _spelled(code_point: int) -> str:
    """ASCII letters and digits as themselves, punctuation escaped, anything else by number."""
    char = chr(code_point)
    if char.isascii() and char.isalnum():
        return char
    if char.isascii() and char.isprintable() and char != " ":
        return "\\" + char
    return f"\\x{{{code_point:X}}}"


def _repeated(atom: str, low: int, high: int | None) -> str:
    """`atom{low,high}`, split as `X{1000}X{0,23}` where a count exceeds RE2's limit: the same strings."""
    if (low, high) in _SHORT_QUANTIFIER_TEXTS:
        return atom + _SHORT_QUANTIFIER_TEXTS[low, high]
    if max(low, high or 0) <= _RE2_MAX_REPEAT:
        maximum = "" if high is None else str(high)
        return f"{atom}{{{low}}}" if low == high else f"{atom}{{{low},{maximum}}}"
    parts = [f"{atom}{{{count}}}" for count in _chunks(low)]
    if high is None:
        parts.append(f"{atom}*")
    else:
        parts.extend(f"{atom}{{0,{count}}}" for count in _chunks(high - low))
    return "".join(parts)


def _chunks(count: int) -> list[int]:
    """Counts of at most RE2's limit that add up to `count`."""
    whole, rest = divmod(count, _RE2_MAX_REPEAT)
    return [_RE2_MAX_REPEAT] * whole + ([rest] if rest else [])


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
            try:
                matched = compiled.fullmatch(value) is not None
            except UnicodeEncodeError:  # RE2 reads UTF-8; no JSON message can carry a lone surrogate either
                raise PydanticCustomError(
                    "string_lone_surrogate", "String should not contain a lone surrogate"
                ) from None
            if not matched:
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
