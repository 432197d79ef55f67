"""What the pages show of filters and letters: parsing the CLI's filters from a form, a letter made safe to show."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from dispatcher.dead_letters import UNVERIFIED, LetterFilter, json_ready, parse_duration
from dispatcher.errors import Category
from dispatcher.redact import REDACTED_VALUE, redact_paths

if TYPE_CHECKING:
    from collections.abc import Mapping

    from multidict import MultiMapping

    from dispatcher.dead_letters import StoredLetter
    from dispatcher.registry import Registry

CATEGORIES = (*(str(category) for category in Category), UNVERIFIED)
TEXT_FIELDS = ("service", "operation", "error_code", "job_id", "older_than", "newer_than")


class FilterError(ValueError):
    """Raised for a filter that cannot be read (an age that is not a duration)."""


@dataclass(frozen=True, slots=True)
class FilterForm:
    """The filter as typed in the form: the same filters as `dispatcher dlq list`."""

    values: dict[str, str]
    categories: tuple[str, ...]

    @classmethod
    def read(cls, query: MultiMapping[Any]) -> FilterForm:
        """From a query string or a posted form; unknown categories are left out."""
        values = {name: str(query.get(name, "")).strip() for name in TEXT_FIELDS}
        categories = tuple(c for c in (str(v) for v in query.getall("category", [])) if c in CATEGORIES)
        return cls({name: value for name, value in values.items() if value}, categories)

    def letter_filter(self, selected: tuple[str, ...] = ()) -> LetterFilter:
        """The library's filter; `selected` job ids narrow it to a selection."""
        job_ids = frozenset(_items(self.values.get("job_id")))
        if selected:
            job_ids = frozenset(selected) & job_ids if job_ids else frozenset(selected)
        return LetterFilter(
            services=frozenset(_items(self.values.get("service"))),
            operations=frozenset(_items(self.values.get("operation"))),
            categories=frozenset(self.categories),
            error_codes=frozenset(_items(self.values.get("error_code"))),
            job_ids=job_ids,
            older_than_s=_duration("older than", self.values.get("older_than")),
            newer_than_s=_duration("newer than", self.values.get("newer_than")),
        )

    @property
    def query(self) -> str:
        """The filter as a query string, for links that keep it."""
        pairs = [*self.values.items(), *(("category", category) for category in self.categories)]
        return urlencode(pairs)

    @property
    def text(self) -> str:
        """The filter in one line, as `dlq` options, for logs and headings."""
        parts = [f"--{name.replace('_', '-')} {value}" for name, value in self.values.items()]
        parts += [f"--category {category}" for category in self.categories]
        return " ".join(parts) or "(every dead letter)"


def _items(text: str | None) -> list[str]:
    """A field's values: several may be given, separated by commas, as a repeated CLI option."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _duration(label: str, text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise FilterError(f"{label}: {exc}") from None


def redacted_body(letter: StoredLetter, registry: Registry) -> tuple[str, str]:
    """(how it is shown, the text): JSON pretty-printed with sensitive params redacted, other text, or base64."""
    try:
        text = letter.body.decode("utf-8")
    except UnicodeDecodeError:
        encoded = base64.b64encode(letter.body).decode()
        return f"{len(letter.body)} bytes, not UTF-8: base64", encoded
    try:
        document = orjson.loads(letter.body)
    except orjson.JSONDecodeError:
        return "text", text
    operation = registry.get(letter.original_routing_key)
    if isinstance(document, dict) and isinstance(document.get("params"), dict) and operation is not None:
        document = {**document, "params": redact_paths(document["params"], operation.sensitive_paths, REDACTED_VALUE)}
    return "JSON", orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def shown_values(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Headers or properties as (name, text) pairs: bytes as text, the rest as JSON."""
    ready = json_ready(dict(values))
    return [(name, value if isinstance(value, str) else orjson.dumps(value).decode()) for name, value in ready.items()]
