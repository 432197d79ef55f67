"""Answering one AWS call: faults, then validation, then the job, and one call log entry.

The order follows what a caller of AWS meets: added latency, then throttling or a connection
dropped before the job starts, then parameter validation, then an injected service error, then
the job itself (new, replayed by its idempotency token, or a token conflict), and last a
connection dropped after the job started.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from aiohttp import web
from pydantic import ValidationError

from dispatcher.emulator.faults import DropPhase
from dispatcher.emulator.jobs import Call, CallOutcome, IdempotencyConflictError, StartedJob, redact
from dispatcher.emulator.protocol import AwsError, error_response, output_response, read_params
from dispatcher.emulator.responses import CallContext, new_job

if TYPE_CHECKING:
    from dispatcher.emulator.catalog import EmulatedOperation
    from dispatcher.emulator.faults import CallPlan
    from dispatcher.emulator.state import EmulatorState

DEFAULT_REGION = "us-east-1"
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([^/,]+)/")
_DROPPED_STATUS = 444
"""Only aiohttp's access log sees this: the socket is closed before anything is written."""


async def answer_call(
    state: EmulatorState,
    operation: EmulatedOperation,
    request: web.Request,
) -> web.StreamResponse:
    """Answer one call of `operation` as AWS would, with the faults in force, and log it."""
    call = _CallInProgress(state, operation, request, request_id=str(uuid4()))
    plan = state.plan(operation.routing_key, time.monotonic())
    if plan.delay_s > 0:
        await asyncio.sleep(plan.delay_s)
    if plan.drop_phase is DropPhase.BEFORE_START:
        return call.drop()
    try:
        job, is_new = await call.start_job(plan)
    except AwsError as error:
        return call.fail(error)
    if plan.drop_phase is DropPhase.AFTER_START:
        return call.drop(job, is_new=is_new)
    return call.succeed(job, is_new=is_new)


def field_errors(error: ValidationError) -> list[tuple[str, str]]:
    """`(path, problem)` for every failing field, e.g. `("batchJobIdentifier.fileName", ...)`."""
    return [
        (".".join(str(part) for part in detail["loc"]), detail["msg"])
        for detail in error.errors(include_url=False, include_input=False)
    ]


@dataclass(slots=True)
class _CallInProgress:
    """One call between its arrival and its log entry."""

    state: EmulatorState
    operation: EmulatedOperation
    request: web.Request
    request_id: str
    params: dict[str, Any] | None = None
    """The parameters once read; `None` before, or when the body could not be read."""
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the request arrived: rate measurements use this, not the time of the answer."""

    async def start_job(self, plan: CallPlan) -> tuple[StartedJob, bool]:
        """Start the job, or find the one its idempotency token started; raises `AwsError`."""
        operation = self.operation
        if plan.throttled:
            raise AwsError(code="ThrottlingException", message="Rate exceeded.", retry_after_s=plan.retry_after_s)
        self.params = params = await read_params(self.request, operation)
        _validate(operation, params)
        if plan.error_code is not None:
            raise AwsError(code=plan.error_code, message="The emulator injected this error.")
        match = _CREDENTIAL_SCOPE.search(self.request.headers.get("Authorization", ""))
        context = CallContext(
            region=match.group(1) if match else DEFAULT_REGION,
            request_id=self.request_id,
            now=datetime.now(UTC),
        )
        try:
            return self.state.jobs.start(
                operation.routing_key,
                params,
                self._idempotency_token(),
                lambda: new_job(operation, params, context),
            )
        except IdempotencyConflictError as exc:
            raise AwsError(code="ConflictException", message=str(exc)) from exc

    def succeed(self, job: StartedJob, *, is_new: bool) -> web.StreamResponse:
        """Answer the job's output."""
        response = output_response(self.operation, job.output, self.request_id)
        outcome = CallOutcome.STARTED if is_new else CallOutcome.REPLAYED
        self._log(outcome, job_id=job.job_id, new_job=is_new, http_status=response.status)
        return response

    def fail(self, error: AwsError) -> web.StreamResponse:
        """Answer an AWS error."""
        response = error_response(self.operation, error, self.request_id)
        self._log(CallOutcome.ERROR, error_code=error.code, http_status=response.status)
        return response

    def drop(self, job: StartedJob | None = None, *, is_new: bool = False) -> web.StreamResponse:
        """Close the socket without an answer; aiohttp then gives up writing the returned response."""
        self._log(CallOutcome.DROPPED, job_id=job.job_id if job else None, new_job=is_new)
        if self.request.transport is not None:
            self.request.transport.close()
        return web.Response(status=_DROPPED_STATUS)

    def _idempotency_token(self) -> str | None:
        member = self.operation.idempotency_token_member
        if member is None or self.params is None:
            return None
        token = self.params.get(member)
        return token if isinstance(token, str) else None

    def _log(
        self,
        outcome: CallOutcome,
        *,
        job_id: str | None = None,
        new_job: bool = False,
        error_code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.state.calls.record(
            Call(
                time=datetime.now(UTC),
                received_at=self.received_at,
                routing_key=self.operation.routing_key,
                request_id=self.request_id,
                params=None if self.params is None else redact(self.params, self.operation.sensitive_paths),
                idempotency_token=self._idempotency_token(),
                outcome=outcome,
                job_id=job_id,
                new_job=new_job,
                error_code=error_code,
                http_status=http_status,
            ),
        )


def _validate(operation: EmulatedOperation, params: dict[str, Any]) -> None:
    """Refuse parameters AWS refuses, naming every failing field.

    The generated model is botocore's, except that an idempotency token is optional (botocore
    fills it); AWS itself requires what the model marks required, so the emulator does too.
    """
    input_shape = operation.model.input_shape
    required = input_shape.required_members if input_shape is not None else []
    problems = [(name, "Field required") for name in required if params.get(name) is None]
    try:
        operation.params_model.model_validate(params)
    except ValidationError as exc:
        problems += [problem for problem in field_errors(exc) if problem not in problems]
    if problems:
        count = len(problems)
        details = "; ".join(f"Value at '{path}' failed to satisfy constraint: {problem}" for path, problem in problems)
        message = f"{count} validation error{'s' if count != 1 else ''} detected: {details}"
        raise AwsError(code=operation.validation_error_code, message=message, field_errors=problems)
