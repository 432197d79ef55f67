"""The dispatcher's own headers, signed: only state a worker wrote is ever acted on.

RabbitMQ lets a publisher set any header, `x-dispatcher-*` included. Retry state (`retries`,
`attempts`, error codes) and dead-letter stamps (category, error, original routing key) therefore
carry `x-dispatcher-signature`, an HMAC-SHA256 over every `x-dispatcher-*` header of the message
(but the replay count, which is informational), the body and the `message_id`, under a key only
the deployment holds. A worker reads unsigned or forged retry state as a first delivery; the DLQ
tools show an unsigned stamp as `unverified` and never filter, replay or route by it.

The key is `DISPATCHER_STATE_SECRET`, or, when that is not set, one derived from the broker URL
the workers use: publishers who connect with credentials of their own cannot derive it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import orjson

from dispatcher import headers as names

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dispatcher.settings import Settings

_UNSIGNED = frozenset({names.REPLAYS, names.SIGNATURE})
_DERIVATION_LABEL = b"job-dispatcher/state-key/v1\x00"


class Stamper:
    """Signs the dispatcher's headers on what it publishes and verifies them on what it reads."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> Stamper:
        """The deployment's key: the state secret, else one derived from the workers' broker URL."""
        if settings.state_secret is not None:
            return cls(settings.state_secret.get_secret_value().encode())
        return cls(hashlib.sha256(_DERIVATION_LABEL + settings.amqp_url.get_secret_value().encode()).digest())

    def sign(self, headers: dict[str, Any], body: bytes, message_id: str | None) -> dict[str, Any]:
        """`headers` with the signature over their `x-dispatcher-*` members added."""
        headers[names.SIGNATURE] = self._signature(headers, body, message_id)
        return headers

    def verified(self, headers: Mapping[str, Any] | None, body: bytes, message_id: str | None) -> bool:
        """True when the message's `x-dispatcher-*` headers are exactly what a worker signed."""
        signature = (headers or {}).get(names.SIGNATURE)
        if isinstance(signature, bytes):
            signature = signature.decode("ascii", "replace")
        if not isinstance(signature, str) or headers is None:
            return False
        return hmac.compare_digest(signature, self._signature(headers, body, message_id))

    def _signature(self, headers: Mapping[str, Any], body: bytes, message_id: str | None) -> str:
        signed = sorted(
            (name, value if isinstance(value, int | str) else repr(value))
            for name, value in headers.items()
            if name.startswith(names.PREFIX) and name not in _UNSIGNED
        )
        payload = orjson.dumps([signed, hashlib.sha256(body).hexdigest(), message_id or ""])
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()


def without_dispatcher_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers minus the dispatcher's own, except the replay count, which a job keeps for good."""
    return {
        name: value
        for name, value in (headers or {}).items()
        if not name.startswith(names.PREFIX) or name == names.REPLAYS
    }
