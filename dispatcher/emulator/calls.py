"""Answering one AWS call: faults, then validation, then the job, and one call log entry.

The order follows what a caller of AWS meets: added latency, then throttling or a connection
dropped before the job starts, then parameter validation, then an injected service error, then
the job itself (new, replayed by its idempotency token, or a token conflict), and last a
connection dropped after the job started. `CallInProgress` is shared with the Describe calls.
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
    from collections.abc import Callable

    from dispatcher.emulator.catalog import EmulatedOperation, ModeledOperation
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
    """Answer one call of a start `operation` as AWS would, with the faults in force, and log it."""
    call = CallInProgress(state, operation, request, request_id=str(uuid4()))
    plan = await call.meet_faults()
    if plan.drop_phase is DropPhase.BEFORE_START:
        return call.drop()
    context = call.context()
    try:
        job, is_new = await _start_job(call, operation, plan, context)
    except AwsError as error:
        return call.fail(error)
    if is_new:
        state.followed.start(operation, job, context.now.timestamp(), state.rng)
    if plan.drop_phase is DropPhase.AFTER_START:
        return call.drop(job.job_id, new_job=is_new)
    outcome = CallOutcome.STARTED if is_new else CallOutcome.REPLAYED
    return call.answer(job.output, outcome, job.job_id, new_job=is_new)


async def _start_job(
    call: CallInProgress,
    operation: EmulatedOperation,
    plan: CallPlan,
    context: CallContext,
) -> tuple[StartedJob, bool]:
    """Start the job, or find the one its idempotency token started; raises `AwsError`."""
    params = await call.read_valid_params(plan, lambda params: _model_problems(operation, params))
    try:
        return call.state.jobs.start(
            operation.routing_key,
            params,
            call.idempotency_token(),
            lambda: new_job(operation, params, context),
        )
    except IdempotencyConflictError as exc:
        raise AwsError(code="ConflictException", message=str(exc)) from exc


def field_errors(error: ValidationError) -> list[tuple[str, str]]:
    """`(path, problem)` for every failing field, e.g. `("batchJobIdentifier.fileName", ...)`."""
    return [
        (".".join(str(part) for part in detail["loc"]), detail["msg"])
        for detail in error.errors(include_url=False, include_input=False)
    ]


@dataclass(slots=True)
class CallInProgress:
    """One call of a start or Describe operation between its arrival and its log entry."""

    state: EmulatorState
    operation: ModeledOperation
    request: web.Request
    request_id: str
    params: dict[str, Any] | None = None
    """The parameters once read; `None` before, or when the body could not be read."""
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the request arrived: rate measurements use this, not the time of the answer."""

    async def meet_faults(self) -> CallPlan:
        """The faults' decision for this call, after waiting out its added latency."""
        plan = self.state.plan(self.operation.routing_key, time.monotonic())
        if plan.delay_s > 0:
            await asyncio.sleep(plan.delay_s)
        return plan

    async def read_valid_params(
        self,
        plan: CallPlan,
        problems_of: Callable[[dict[str, Any]], list[tuple[str, str]]],
    ) -> dict[str, Any]:
        """The parameters, once throttling, validation and an injected error let them through.

        `problems_of` names the fields beyond the members botocore requires that AWS would refuse;
        raises `AwsError`.
        """
        operation = self.operation
        if plan.throttled:
            raise AwsError(code="ThrottlingException", message="Rate exceeded.", retry_after_s=plan.retry_after_s)
        self.params = params = await read_params(self.request, operation)
        input_shape = operation.model.input_shape
        required = input_shape.required_members if input_shape is not None else []
        problems = [(name, "Field required") for name in required if params.get(name) is None]
        problems += [problem for problem in problems_of(params) if problem not in problems]
        if problems:
            count = len(problems)
            details = "; ".join(
                f"Value at '{path}' failed to satisfy constraint: {problem}" for path, problem in problems
            )
            message = f"{count} validation error{'s' if count != 1 else ''} detected: {details}"
            raise AwsError(code=operation.validation_error_code, message=message, field_errors=problems)
        if plan.error_code is not None:
            raise AwsError(code=plan.error_code, message="The emulator injected this error.")
        return params

    def context(self) -> CallContext:
        """The region the caller signed for, the request id and the time, for the answer's values."""
        match = _CREDENTIAL_SCOPE.search(self.request.headers.get("Authorization", ""))
        return CallContext(
            region=match.group(1) if match else DEFAULT_REGION,
            request_id=self.request_id,
            now=datetime.now(UTC),
        )

    def answer(
        self,
        output: dict[str, Any],
        outcome: CallOutcome,
        job_id: str,
        *,
        new_job: bool = False,
    ) -> web.StreamResponse:
        """Answer `output` about the job `job_id`."""
        response = output_response(self.operation, output, self.request_id)
        self._log(outcome, job_id=job_id, new_job=new_job, http_status=response.status)
        return response

    def fail(self, error: AwsError) -> web.StreamResponse:
        """Answer an AWS error."""
        response = error_response(self.operation, error, self.request_id)
        self._log(CallOutcome.ERROR, error_code=error.code, http_status=response.status)
        return response

    def drop(self, job_id: str | None = None, *, new_job: bool = False) -> web.StreamResponse:
        """Close the socket without an answer; aiohttp then gives up writing the returned response."""
        self._log(CallOutcome.DROPPED, job_id=job_id, new_job=new_job)
        if self.request.transport is not None:
            self.request.transport.close()
        return web.Response(status=_DROPPED_STATUS)

    def idempotency_token(self) -> str | None:
        """The call's idempotency token, if its operation has one and it was sent."""
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
                idempotency_token=self.idempotency_token(),
                outcome=outcome,
                job_id=job_id,
                new_job=new_job,
                error_code=error_code,
                http_status=http_status,
            ),
        )


def _model_problems(operation: EmulatedOperation, params: dict[str, Any]) -> list[tuple[str, str]]:
    """What the generated parameter model refuses.

    The generated model is botocore's, except that an idempotency token is optional (botocore
    fills it); AWS itself requires what the model marks required, and `read_valid_params` checks that.
    """
    try:
        operation.params_model.model_validate(params)
    except ValidationError as exc:
        return field_errors(exc)
    return []
