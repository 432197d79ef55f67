"""The output: one table per benchmark, printed with rich and written as Markdown and JSON."""

from __future__ import annotations

import math
import platform
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bench.config import BenchConfig

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)

console = Console()
if not console.is_terminal:
    console = Console(width=160)


@dataclass
class Section:
    """One benchmark's table, a note under it, and the raw figures for the JSON file."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, *cells: object) -> None:
        """Append a row, padded to the columns; numbers are formatted for reading."""
        row = [fmt(cell) for cell in cells]
        self.rows.append(row + [""] * (len(self.columns) - len(row)))

    def print(self) -> None:
        """Print the table and its notes now (each benchmark prints as soon as it ends)."""
        table = Table(title=self.title, title_justify="left")
        for column in self.columns:
            table.add_column(column)
        for row in self.rows:
            table.add_row(*row)
        console.print(table)
        for note in self.notes:
            console.print(f"  {note}", highlight=False)

    def markdown(self) -> str:
        """The section as a Markdown heading, table and notes."""
        lines = [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def fmt(value: object) -> str:
    """Readable numbers: thousands separated, one or two decimals, `inf` spelled out."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return str(value)


def verdict(ok: bool) -> str:  # noqa: FBT001 - reads as verdict(x <= y)
    """PASS or MISS, for the target column."""
    return "PASS" if ok else "MISS"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os  # noqa: PLC0415

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def display_path(path: Path) -> str:
    """A path relative to the working directory when it is under it (no machine paths in the results)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return path.name


def redact(text: str) -> str:
    """Mask the password of any URL in `text` (a `--redis-url` may carry one)."""
    return _URL_PASSWORD.sub(r"\g<scheme>***@", text)


def write(sections: list[Section], config: BenchConfig, command: str, duration_s: float) -> tuple[Path, Path]:
    """Write `bench.md` and `bench.json` (and timestamped copies) to the results folder."""
    out = config.out_dir
    command = redact(command)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    header = [
        "# Benchmark results",
        "",
        f"Command: `{command}`",
        "",
        (
            f"Measured {info['measured_at']} on {info['cpus']} CPUs, Python {info['python']}, "
            f"{info['platform']}; the whole run took {duration_s:.0f} s."
        ),
        "",
    ]
    markdown = "\n".join(header) + "\n" + "\n".join(section.markdown() for section in sections)
    document = {
        "command": command,
        "machine": info,
        "duration_s": duration_s,
        "config": {key: _config_value(value) for key, value in asdict(config).items()},
        "sections": [asdict(section) for section in sections],
    }
    stamp = info["measured_at"].replace(":", "").replace("+0000", "Z")
    md_path, json_path = out / "bench.md", out / "bench.json"
    for path, text in ((md_path, markdown.encode()), (json_path, orjson.dumps(document, option=orjson.OPT_INDENT_2))):
        path.write_bytes(text)
        (out / f"{path.stem}-{stamp}{path.suffix}").write_bytes(text)
    return md_path, json_path


def _config_value(value: object) -> object:
    if isinstance(value, Path):
        return display_path(value)
    return redact(value) if isinstance(value, str) else value
