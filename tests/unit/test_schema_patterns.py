"""`ecma_pattern`: each AWS pattern, published for JSON Schema, accepts exactly what the worker's RE2 check does."""

from __future__ import annotations

import ast
import functools
import re

import pytest
import regress
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.aws_regex import compile_java_pattern
from dispatcher.schema import END_OF_INPUT, ecma_pattern
from tools.generate_params import GENERATED_MODULE


@functools.cache
def _generated_java_patterns() -> list[str]:
    """Every `AwsPattern(...)` literal of the committed models."""
    tree = ast.parse(GENERATED_MODULE.read_text())
    return sorted(
        {
            node.args[0].value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AwsPattern"
        }
    )


JAVA_PATTERNS = [
    *_generated_java_patterns(),
    r"\p{ASCII}{1,256}",
    r"^\S+$",
    r"a.b",
    r"[^:]+",
    r"\w+\d\s",
    r"\p{Punct}\P{Alpha}",
    r"(^$)|(x+/$)",
    r"[\uD83D\uDE00-\uD83D\uDE4F]+",
]
ALPHABET = [
    *"aZz09-_./:@{}[]()*+?^$|\\ ,'\"xX",
    *"\t\n\r\x0b\x0c\x00\x1f\x7f\x85\xa0\xff\u0100\u2028\u2029\u3000\ufeff\uffff",
    "\U0001f600",
    "\U0001f650",
    "\U0010ffff",
]


def _worker(java: str, value: str) -> bool:
    return compile_java_pattern(java).fullmatch(value) is not None


@pytest.mark.parametrize("java", JAVA_PATTERNS)
@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet=st.sampled_from(ALPHABET), max_size=20))
def test_published_pattern_decides_as_the_worker(java: str, value: str) -> None:
    """ECMA-262 (`regress`, `u` flag) and Python's `re` searching the published pattern agree with Java's full match."""
    published = ecma_pattern(java)
    expected = _worker(java, value)
    assert (regress.Regex(published, "u").find(value) is not None) == expected, (published, value)
    assert (re.search(published, value) is not None) == expected, (published, value)


@pytest.mark.parametrize(
    ("java", "value", "expected"),
    [
        (r"^\S{1,80}$", "app\n", False),
        (r"^\S{1,80}$", "app\xa0x", True),
        (r"\p{ASCII}{1,256}", "token-1", True),
        (r"\p{ASCII}{1,256}", "tok\xe9n", False),
        (r"a.b", "a\x85b", False),
        (r"a.b", "a\xa0b", True),
        (r"[^:]+", "\U0001f600", True),
    ],
)
def test_known_differences_between_java_and_ecma_are_bridged(java: str, value: str, expected: bool) -> None:
    """Java's ASCII classes, its `.`, its full match and code points above U+FFFF, case by case."""
    published = ecma_pattern(java)
    assert _worker(java, value) == expected
    assert (regress.Regex(published, "u").find(value) is not None) == expected
    assert (re.search(published, value) is not None) == expected


def test_published_patterns_are_anchored_and_spelled_out() -> None:
    r"""Start and very end anchored; no `\p`, `\s`, `\d` or `\w` but the end anchor's own `[\s\S]`."""
    for java in JAVA_PATTERNS:
        published = ecma_pattern(java)
        assert published.startswith("^")
        assert published.endswith(END_OF_INPUT)
        assert not re.search(r"\\[pPdDwW]|\\[sS](?!\\[sS]\])", published.replace(END_OF_INPUT, "")), published
