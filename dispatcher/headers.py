"""Every `x-dispatcher-*` header name, in one place: contract section 4 and the dispatcher's own state.

The dead-letter stamp (section 4) is what operators filter and replay by; retry state, the
safe-copy note and the follow marker are the dispatcher's own. All but the replay count are signed
(`dispatcher.stamps`).
"""

from __future__ import annotations

PREFIX = "x-dispatcher-"

# The dead-letter stamp (contract section 4).
CATEGORY = "x-dispatcher-category"
ERROR_CODE = "x-dispatcher-error-code"
ERROR_MESSAGE = "x-dispatcher-error-message"
ATTEMPTS = "x-dispatcher-attempts"
DEAD_LETTERED_AT = "x-dispatcher-dead-lettered-at"
ORIGINAL_ROUTING_KEY = "x-dispatcher-original-routing-key"
AWS_REQUEST_ID = "x-dispatcher-aws-request-id"
HTTP_STATUS = "x-dispatcher-http-status"
REPLAYS = "x-dispatcher-replays"  # counted up by each replay; informational, so not signed

# The dispatcher's own state.
RETRIES = "x-dispatcher-retries"
ERROR_CODES = "x-dispatcher-error-codes"
SAFE_COPY = "x-dispatcher-safe-copy"
FOLLOW = "x-dispatcher-follow"
SIGNATURE = "x-dispatcher-signature"
