"""A URL's password never shows in a log line or an error, however unusual its characters."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from dispatcher.logs import mask_urls, url_password

# Each piece is distinctive, so a fragment of the password left anywhere is found.
PIECES = ("Kq7", "Zx9", "Wm4", "Pt6", "Rb2", "Hs5", "Ln8", "Vc3")
SPECIALS = "#/?@:% "
EVERY_SPECIAL = "".join(piece + special for piece, special in zip(PIECES, SPECIALS, strict=False)) + PIECES[-1]
PASSWORDS = [f"Kq7{special}Zx9" for special in SPECIALS] + [EVERY_SPECIAL, "Kq7%40Zx9", "Kq7@@Zx9/?#"]


def leaked(text: str, password: str) -> list[str]:
    """The pieces of `password` (split at its special characters) found in `text`."""
    return [piece for piece in re.split(r"[#/?@:% ]+", password) if piece and piece in text]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "{url}",
        'connecting to <Connection: "{url}" at 0x7f>',
        '{{"amqp_url": "{url}", "attempt": 2}}',
        "AMQPConnectionError: cannot reach {url} (refused)",
    ],
)
def test_everything_between_user_and_the_last_at_is_masked(password, template):
    """Wherever the URL sits in a line, the host, port and path stay and no piece of the password does."""
    url = f"amqp://dispatcher:{password}@rabbit.example:5672/jobs"
    masked = mask_urls(template.format(url=url))
    assert masked == template.format(url="amqp://dispatcher:***@rabbit.example:5672/jobs")
    assert leaked(masked, password) == []


@pytest.mark.parametrize("password", PASSWORDS)
def test_url_password_is_what_is_masked(password):
    """The CLI checks the same span the logs mask."""
    assert url_password(f"amqps://user:{password}@host/") == password


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:Kq7#Zx9@redis:6379/0", "redis://:***@redis:6379/0"),
        ("AMQP://Guest:Kq7@Host", "AMQP://Guest:***@Host"),
        ("http://127.0.0.1:4566 answered", "http://127.0.0.1:4566 answered"),
        ("amqp://guest@localhost/", "amqp://guest@localhost/"),
        ("no url, mail a@b.c", "no url, mail a@b.c"),
        ("amqp://u:Kq7@h/v\nnext line: x@y", "amqp://u:***@h/v\nnext line: x@y"),
    ],
)
def test_other_urls_and_text(text, expected):
    """An empty user, any case, no password, no URL, an `@` on another line."""
    assert mask_urls(text) == expected


def test_two_urls_on_a_line_lose_both_passwords():
    """Masking too much (the middle of the line) beats leaving a password."""
    masked = mask_urls("amqp://u:Kq7@rabbit/ and redis://:Zx9@redis/0")
    assert "Kq7" not in masked
    assert "Zx9" not in masked
    assert masked.startswith("amqp://u:***@")


def test_a_traceback_is_masked_line_by_line():
    """An `@` on a later line of a traceback does not stretch the mask over the lines between."""
    url = f"amqp://u:{EVERY_SPECIAL}@rabbit:5672/"
    text = f'Traceback (most recent call last):\n  File "x.py", line 1\nConnectionError: {url}\nby user@host\n'
    masked = mask_urls(text)
    assert leaked(masked, EVERY_SPECIAL) == []
    assert 'File "x.py", line 1\n' in masked
    assert masked.endswith("by user@host\n")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_configured_logging_masks_values_exceptions_and_stdlib_lines(log_format):
    """structlog values (nested ones too), formatted exceptions and standard-library lines are masked.

    Run in a child process: logging is configured once per process.
    """
    url = f"amqp://u:{EVERY_SPECIAL}@rabbit:5672/"
    script = textwrap.dedent(
        f"""
        import logging, structlog
        from dispatcher.logs import configure_logging
        configure_logging({log_format!r}, "debug")
        log = structlog.get_logger("test")
        url = {url!r}
        log.info("connecting", url=url, nested={{"urls": [url]}})
        try:
            raise ConnectionError(f"cannot reach {{url}}")
        except ConnectionError:
            log.exception("broker_unavailable")
        logging.getLogger("aiormq").warning("connection %s lost", url)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    output = run.stdout + run.stderr
    assert "broker_unavailable" in output
    assert "cannot reach" in output, "the exception was not logged, so this proves nothing"
    assert "connection amqp://u:***@rabbit:5672/ lost" in output
    assert leaked(output, EVERY_SPECIAL) == []
