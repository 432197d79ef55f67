r"""Every AWS pattern of every registered operation is checked in time linear in the value's length.

A backtracking engine spent 0.5 s on 8,000 `{` against QuickSight's `[\s\S]*[{\[].*[}\]]\s*` and
94 s on 100,000, where the model allows 7,000,000 characters. Each check below must stay within a
cost per character at every size from 1,000 characters up to the longest value the member takes
(or a message can carry), on inputs built to make a backtracking engine try every way of splitting
them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from dispatcher.aws_regex import compile_java_pattern
from dispatcher.params_generated import QuickSightStartAutomationJobParams
from tests.unit.pattern_support import PATTERN_CASES, registered_patterns

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

INPUT_PAYLOAD = r"[\s\S]*[{\[].*[}\]]\s*"
# RE2 takes 2-10 ns a character here, UTF-8 encoding included; backtracking took 60,000 at 8,000.
NS_PER_CHARACTER = 50
NS_OVERHEAD = 2_000_000
ONE_MILLION = 1_000_000
# InputPayload at a million characters, through its generated model, in a fraction of 100 ms.
INPUT_PAYLOAD_MILLION_NS = 50_000_000
RUNS = ("{", "[", " ", "}", "]", "\n", "\r", "\t", "a", "0", "-", "_", ":", "/", ".", "\u00e9", "\u2028", "\U0001f600")


def _sizes(longest: int) -> list[int]:
    """1,000 characters, then eight times as many each step, then the longest value allowed."""
    sizes = []
    size = 1000
    while size < longest:
        sizes.append(size)
        size *= 8
    return [*sizes, longest]


def _run(char: str, length: int) -> str:
    return char * length


def _repeated(example: str, length: int) -> str:
    return (example * (length // len(example) + 1))[:length]


def _repeated_with_a_wrong_end(example: str, length: int) -> str:
    return _repeated(example, length - 1) + "\x00"


def _stretched(example: str, length: int) -> str:
    """The example with its middle character repeated to make up the length."""
    middle = len(example) // 2
    filler = example[middle] * max(length - len(example) + 1, 0)
    return (example[:middle] + filler + example[middle + 1 :])[:length]


def _stretched_without_its_end(example: str, length: int) -> str:
    return _stretched(example, length + 1)[:-1]


def _adversaries(java_pattern: str) -> Iterator[tuple[str, Callable[[int], str]]]:
    """(name, value of a given length): runs of one character, and accepted values stretched."""
    for char in RUNS:
        yield f"a run of {char!r}", functools.partial(_run, char)
    for example in filter(None, PATTERN_CASES[java_pattern][0]):
        yield f"{example!r} repeated", functools.partial(_repeated, example)
        yield f"{example!r} repeated, the last character wrong", functools.partial(_repeated_with_a_wrong_end, example)
        yield f"{example!r} with its middle character repeated", functools.partial(_stretched, example)
        yield (
            f"{example!r} stretched, missing its last character",
            functools.partial(_stretched_without_its_end, example),
        )


def _best_ns(check: Callable[[str], object], value: str) -> int:
    """The least CPU time this thread spent in three runs: what other processes do does not count."""
    times = []
    for _ in range(3):
        start = time.thread_time_ns()
        check(value)
        times.append(time.thread_time_ns() - start)
    return min(times)


@pytest.mark.parametrize("java_pattern", sorted(registered_patterns()))
def test_check_costs_at_most_a_few_nanoseconds_a_character(java_pattern: str) -> None:
    """At every size up to the longest value, each adversarial input is checked within the bound."""
    fullmatch = compile_java_pattern(java_pattern).fullmatch
    slow = []
    for name, build in _adversaries(java_pattern):
        for size in _sizes(registered_patterns()[java_pattern]):
            value = build(size)
            elapsed = _best_ns(fullmatch, value)
            if elapsed > NS_OVERHEAD + NS_PER_CHARACTER * len(value):
                slow.append(f"{name} at {len(value):,} characters: {elapsed / 1e6:.1f} ms")
                break  # larger sizes would only take longer
    assert not slow, "\n".join(slow)


def _validate_input_payload(value: str) -> None:
    automation_id = "0123abcd-abcd-0000-ffff-0123456789ab"
    params = {"AwsAccountId": "123456789012", "AutomationGroupId": automation_id, "AutomationId": automation_id}
    with contextlib.suppress(ValidationError):
        QuickSightStartAutomationJobParams.model_validate({**params, "InputPayload": value})


def test_input_payload_of_a_million_characters_is_checked_at_once() -> None:
    """QuickSight's InputPayload, a million characters of each adversarial input, through its model."""
    slow = []
    for name, build in _adversaries(INPUT_PAYLOAD):
        elapsed = _best_ns(_validate_input_payload, build(ONE_MILLION))
        if elapsed > INPUT_PAYLOAD_MILLION_NS:
            slow.append(f"{name}: {elapsed / 1e6:.1f} ms")
    assert not slow, "\n".join(slow)
