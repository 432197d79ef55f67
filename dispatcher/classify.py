"""What an AWS failure means for the job, decided with botocore's own retry knowledge."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError, HTTPClientError, ParamValidationError
from botocore.exceptions import ConnectionError as NotConnectedError
from botocore.retries.standard import (
    ModeledRetryErrorDetector,
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

from dispatcher.errors import (
    InvalidJob,
    JobError,
    RejectedByAws,
    RetryableAwsError,
    ThrottledByAws,
    UnknownOutcome,
)

if TYPE_CHECKING:
    from botocore.model import OperationModel

_THROTTLED = ThrottledRetryableChecker()
_TRANSIENT = TransientRetryableChecker()
_MODELED = ModeledRetryErrorDetector()
HTTP_TOO_MANY_REQUESTS = 429


def classify_aws_failure(
    exc: BaseException,
    operation_model: OperationModel,
    *,
    has_idempotency_token: bool,
    retry_unknown_outcome: bool,
) -> JobError:
    """Map an exception from an AWS call to the job error the settle stage acts on.

    Anything not listed here is a bug, not an AWS answer, and is left to propagate.
    """
    if isinstance(exc, ClientError):
        return _classify_client_error(exc, operation_model)
    if isinstance(exc, ParamValidationError):
        return InvalidJob("ParamValidationError", f"botocore refused the parameters: {exc}")
    if isinstance(exc, NotConnectedError):
        # The connection was never made, so the request never reached AWS: safe to retry.
        return RetryableAwsError(type(exc).__name__, str(exc))
    if isinstance(exc, HTTPClientError | TimeoutError):
        code = "CallTimeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        message = f"the request may have reached AWS but no answer came back ({exc or 'deadline passed'})"
        if has_idempotency_token or retry_unknown_outcome:
            return RetryableAwsError(code, message)
        return UnknownOutcome(
            code,
            f"{message}; this operation has no idempotency token, so retrying could start a second job "
            "(check AWS, then replay it or drop it; DISPATCHER_RETRY_UNKNOWN_OUTCOME=true retries instead)",
        )
    raise exc


def _classify_client_error(exc: ClientError, operation_model: OperationModel) -> JobError:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "Unknown")
    message = str(error.get("Message") or exc)
    status = meta.get("HTTPStatusCode")
    request_id = meta.get("RequestId")
    context = RetryContext(
        attempt_number=1,
        operation_model=operation_model,
        parsed_response=exc.response,
        http_response=SimpleNamespace(status_code=status),
    )
    details = {"aws_request_id": request_id, "http_status": status}
    modeled = _MODELED.detect_error_type(context)
    if (
        _THROTTLED.is_retryable(context)
        or modeled == ModeledRetryErrorDetector.THROTTLING_ERROR
        or status == HTTP_TOO_MANY_REQUESTS
    ):
        return ThrottledByAws(code, message, retry_after_s=_retry_after(meta), **details)
    if _TRANSIENT.is_retryable(context) or modeled == ModeledRetryErrorDetector.TRANSIENT_ERROR:
        return RetryableAwsError(code, message, **details)
    return RejectedByAws(code, message, **details)


def _retry_after(meta: dict[str, object]) -> float | None:
    headers = meta.get("HTTPHeaders")
    if not isinstance(headers, dict):
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
