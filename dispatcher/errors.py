"""Why a job failed: one root exception whose fields become the dead-letter headers."""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """The `x-dispatcher-category` of a dead letter (contract section 4)."""

    MALFORMED = "malformed"
    INVALID = "invalid"
    REJECTED = "rejected"
    EXHAUSTED = "exhausted"
    UNKNOWN_OUTCOME = "unknown-outcome"
    EXPIRED = "expired"
    UNROUTABLE = "unroutable"
    DELIVERY_LIMIT = "delivery-limit"


class JobError(Exception):
    """Raised when a job cannot be started; carries what the dead letter and result need."""

    category: Category = Category.REJECTED
    retryable = False

    def __init__(
        self,
        code: str,
        message: str,
        *,
        aws_request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.aws_request_id = aws_request_id
        self.http_status = http_status

    def as_dict(self) -> dict[str, object]:
        """The `error` member of a result message."""
        return {
            "category": str(self.category),
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }


class MalformedJob(JobError):
    """Raised when the body is not one UTF-8 JSON object within the size limit."""

    category = Category.MALFORMED


class InvalidJob(JobError):
    """Raised when the job fails the envelope or parameter schema."""

    category = Category.INVALID


class UnroutableJob(JobError):
    """Raised when no registered operation matches the routing key or the body."""

    category = Category.UNROUTABLE


class ExpiredJob(JobError):
    """Raised when `not_after` has passed before the job could be started."""

    category = Category.EXPIRED


class RejectedByAws(JobError):
    """Raised when AWS answered with an error that retrying cannot fix."""

    category = Category.REJECTED


class RetryableAwsError(JobError):
    """Raised when AWS (or the network to it) failed in a way that a later attempt may not."""

    category = Category.EXHAUSTED
    retryable = True


class ThrottledByAws(RetryableAwsError):
    """Raised when AWS asked us to slow down; retried without spending the job's budget."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        aws_request_id: str | None = None,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(code, message, aws_request_id=aws_request_id, http_status=http_status)
        self.retry_after_s = retry_after_s


class UnknownOutcome(JobError):
    """Raised when AWS may have started a job that has no idempotency token to protect a retry."""

    category = Category.UNKNOWN_OUTCOME


class DuplicateJobId(JobError):
    """Raised when a job_id comes back with other parameters: a publisher error, never started."""

    category = Category.REJECTED
