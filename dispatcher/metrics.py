"""Prometheus metrics: every name the dashboard and alerts may use is defined here."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# No `_created` series: a timestamp per counter and histogram child that no panel or alert reads.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()

JOBS = Counter(
    "dispatcher_jobs", "Jobs settled, by operation and outcome.", ["operation", "outcome"], registry=REGISTRY
)
AWS_CALL_SECONDS = Histogram(
    "dispatcher_aws_call_duration_seconds",
    "Latency of AWS calls, by operation and HTTP status (or `error` when none came back).",
    ["operation", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RETRIES = Counter("dispatcher_retries", "Jobs sent to a retry queue.", ["operation"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "dispatcher_dead_letters", "Jobs dead-lettered, by category.", ["operation", "category"], registry=REGISTRY
)
IN_FLIGHT = Gauge("dispatcher_jobs_in_flight", "Jobs being processed now.", ["operation"], registry=REGISTRY)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "dispatcher_rate_limit_wait_seconds",
    "Time a call waited for a rate-limit token.",
    ["operation"],
    buckets=(0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RATE_LIMIT_CALLS_PER_SECOND = Gauge(
    "dispatcher_rate_limit_calls_per_second",
    "Calls per second the limiter allows now (below the configured rate after AWS throttling).",
    ["operation", "region"],
    registry=REGISTRY,
)
# Set for every operation and enabled region when the worker is built: the dashboard's variables
# read it, so they list the operations before the first job.
RATE_LIMIT_CONFIGURED_CALLS_PER_SECOND = Gauge(
    "dispatcher_rate_limit_configured_calls_per_second",
    "Calls per second configured for an operation (or Describe/Get call) and region.",
    ["operation", "region"],
    registry=REGISTRY,
)
THROTTLES = Counter("dispatcher_throttles", "Calls AWS throttled.", ["operation"], registry=REGISTRY)
BROKER_RECONNECTS = Counter("dispatcher_broker_reconnects", "Broker connections re-established.", registry=REGISTRY)
CONSUMERS_ATTACHED = Gauge("dispatcher_consumers_attached", "Queue consumers attached now.", registry=REGISTRY)
ACKS_LOST = Counter(
    "dispatcher_acks_lost",
    "Settlements whose channel was gone; the broker redelivers those jobs.",
    ["operation"],
    registry=REGISTRY,
)
RATE_LIMIT_SHARED = Gauge(
    "dispatcher_rate_limit_shared",
    "1 when rate limits are shared through Redis, 0 when they are per process.",
    registry=REGISTRY,
)
RESULTS_QUEUE_BOUNDED = Gauge(
    "dispatcher_results_queue_bounded",
    "1 when the results queue was declared with the dispatcher's length bound, 0 when it predates it "
    "(a policy must bound it: docs/deployment.md).",
    registry=REGISTRY,
)
RESULTS_QUEUE_MESSAGES = Gauge(
    "dispatcher_results_queue_messages",
    "Ready messages in the results queue when the worker last declared it (at start and reconnect).",
    registry=REGISTRY,
)
FOLLOWS_STARTED = Counter(
    "dispatcher_follows_started", "Follow chains begun for started jobs.", ["operation"], registry=REGISTRY
)
FOLLOW_POLLS = Counter(
    "dispatcher_follow_polls",
    "Polls of followed jobs, by Describe/Get call and outcome (running, ended, throttled, transient, "
    "refused, deferred: no token within follow_max_poll_wait_s).",
    ["operation", "outcome"],
    registry=REGISTRY,
)
FOLLOWS_ENDED = Counter(
    "dispatcher_follows_ended",
    "Completion results published, by operation and job outcome (timed-out and unknown included).",
    ["operation", "job_outcome"],
    registry=REGISTRY,
)
FOLLOW_DURATION_SECONDS = Histogram(
    "dispatcher_follow_duration_seconds",
    "From AWS accepting a followed job to its completion result, by operation and job outcome.",
    ["operation", "job_outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 7 * 24 * 3600),
    registry=REGISTRY,
)
