"""The one place a settled delivery is told: one log line and its metrics, from one outcome map.

Every delivery of a job ends in exactly one `job_settled` line (`outcome`: succeeded,
dead_lettered, retry_scheduled, requeued) and every poll of a followed job in one `poll_settled`
line (poll_scheduled at debug, follow_finished, requeued); the metrics move next to it, and only
for what the settlement actually published.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from dispatcher import metrics
from dispatcher.outcome import DeadLetter, Finished, PollLater, Requeue, RetryLater, Succeeded
from dispatcher.results import FAILED

if TYPE_CHECKING:
    from dispatcher.outcome import Outcome
    from dispatcher.settle import Settlement

log = structlog.get_logger("dispatcher.worker")


def account(outcome: Outcome, settlement: Settlement, label: str, duration_ms: float) -> None:
    """Log the delivery's one line and move its metrics; `label` is the queue's operation label."""
    if settlement.ack_lost:
        metrics.ACKS_LOST.labels(label).inc()
    name, fields = _outcome_fields(outcome)
    if settlement.requeued is not None:
        name, fields = "requeued", {"reason": settlement.requeued}
    elif settlement.published:
        _count(outcome, label)
    event = "poll_settled" if isinstance(outcome, PollLater | Finished) else "job_settled"
    failed_to_settle = settlement.ack_lost or (settlement.requeued is not None and not isinstance(outcome, Requeue))
    if failed_to_settle:
        level = log.warning
    elif name == "poll_scheduled":
        level = log.debug
    else:
        level = log.info
    level(event, outcome=name, **fields, acked=settlement.acked, duration_ms=duration_ms)


def _outcome_fields(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    """The outcome's name in the log and what the line says about it."""
    if isinstance(outcome, Succeeded):
        result = outcome.result
        return "succeeded", {
            "attempts": result.attempts,
            "aws_request_id": result.aws_request_id,
            "deduplicated": result.deduplicated,
            "following": result.following,
        }
    if isinstance(outcome, DeadLetter):
        error = outcome.error
        return "dead_lettered", {
            "category": str(error.category),
            "error_code": error.code,
            "error": error.message,
            "attempts": outcome.attempts,
            "aws_request_id": error.aws_request_id,
        }
    if isinstance(outcome, RetryLater):
        return "retry_scheduled", {
            "delay_s": outcome.delay_s,
            "error_code": outcome.error.code,
            "attempts": outcome.state.attempts,
        }
    if isinstance(outcome, PollLater):
        return "poll_scheduled", {"delay_s": outcome.delay_s, "polls": outcome.state.polls}
    if isinstance(outcome, Finished):
        completion = outcome.completion
        return "follow_finished", {
            "job_outcome": completion.job_outcome,
            "job_status": completion.job_status,
            "polls": completion.polls,
        }
    return "requeued", {"reason": outcome.reason}


def _count(outcome: Outcome, label: str) -> None:
    """The metrics of what the settlement published."""
    if isinstance(outcome, Succeeded):
        metrics.JOBS.labels(label, outcome.result.outcome).inc()
        if outcome.follow is not None:
            metrics.FOLLOWS_STARTED.labels(label).inc()
    elif isinstance(outcome, DeadLetter):
        if outcome.result is not None:
            metrics.JOBS.labels(label, FAILED).inc()
        metrics.DEAD_LETTERS.labels(label, str(outcome.error.category)).inc()
    elif isinstance(outcome, RetryLater):
        metrics.RETRIES.labels(label).inc()
    elif isinstance(outcome, Finished):
        completion = outcome.completion
        job_outcome = completion.job_outcome or ""
        routing_key = outcome.state.routing_key
        metrics.FOLLOWS_ENDED.labels(routing_key, job_outcome).inc()
        metrics.FOLLOW_DURATION_SECONDS.labels(routing_key, job_outcome).observe(
            (completion.finished_at - completion.started_at).total_seconds()
        )
