"""Who may act, and CSRF protection of every form.

Reading is open to anyone who reaches the console. Acting (replay, purge, export) needs an
operator: one who typed the token from the console's Secret (a session cookie follows) or sends it
as `Authorization: Bearer`, or one an authenticating proxy names in the configured identity
header. That header is believed only when configured: the console must then be reachable only
through the proxy (the NetworkPolicy of deploy/components/console).

Every POST carries a CSRF token equal to the `console_csrf` cookie (double submit, SameSite=Strict),
and a request whose Origin is another site is refused.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pydantic import SecretStr

SESSION_COOKIE = "console_session"
CSRF_COOKIE = "console_csrf"
CSRF_FIELD = "csrf"
NEW_CSRF = web.RequestKey("new_csrf", str)  # a token made for this request, for the cookie the response sets
SESSION_S = 8 * 3600
TOKEN_OPERATOR = "token holder"  # noqa: S105 - how the page names who typed the token, not a secret


@dataclass
class Access:
    """The console's access rules: its token, its trusted identity header and its sessions."""

    token: SecretStr | None
    identity_header: str | None
    _sessions: dict[str, float] = field(default_factory=dict)  # session id -> expiry (monotonic)

    @property
    def can_log_in(self) -> bool:
        """True when a token is configured (else only the proxy's header makes operators)."""
        return self.token is not None and bool(self.token.get_secret_value())

    def operator(self, request: web.Request) -> str | None:
        """Who the request acts for, or None: read-only."""
        if self.identity_header:
            who = request.headers.get(self.identity_header, "").strip()
            if who:
                return who[:200]
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer ") and self.token_matches(authorization.removeprefix("Bearer ")):
            return TOKEN_OPERATOR
        session = request.cookies.get(SESSION_COOKIE)
        expiry = self._sessions.get(session or "")
        if expiry is not None and expiry > time.monotonic():
            return TOKEN_OPERATOR
        return None

    def token_matches(self, presented: str) -> bool:
        """Compared in constant time; never true without a configured token."""
        if not self.can_log_in:
            return False
        assert self.token is not None
        return hmac.compare_digest(presented.strip().encode(), self.token.get_secret_value().encode())

    def open_session(self, response: web.StreamResponse, *, secure: bool) -> None:
        """Start a session for an operator who typed the token."""
        now = time.monotonic()
        self._sessions = {key: expiry for key, expiry in self._sessions.items() if expiry > now}
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + SESSION_S
        response.set_cookie(
            SESSION_COOKIE, session, httponly=True, samesite="Strict", secure=secure, max_age=SESSION_S, path="/"
        )

    def close_session(self, request: web.Request, response: web.StreamResponse) -> None:
        """End the request's session, if any."""
        self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response.del_cookie(SESSION_COOKIE, path="/")


def csrf_token(request: web.Request) -> str:
    """The request's CSRF token: its cookie's, or a new one the response sets (see `csrf_middleware`)."""
    token = request.cookies.get(CSRF_COOKIE) or request.get(NEW_CSRF)
    if not token:
        token = request[NEW_CSRF] = secrets.token_urlsafe(32)
    return token


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


@web.middleware
async def csrf_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse a POST without the cookie's token or from another origin; set the cookie when new."""
    if request.method == "POST":
        form = await request.post()
        presented = str(form.get(CSRF_FIELD, ""))
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (cookie and hmac.compare_digest(presented.encode(), cookie.encode()) and _same_origin(request)):
            raise web.HTTPForbidden(
                text="refused: the form's CSRF token is missing or wrong; reload the page and try again"
            )
    response = await handler(request)
    fresh = request.get(NEW_CSRF)
    if fresh and not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="Strict", secure=request.secure, path="/")
    return response
