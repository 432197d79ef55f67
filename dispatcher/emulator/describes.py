"""Answering one Describe/Get call: faults, validation, the job's status of now, one call log entry.

A Describe call meets the faults a start call meets, in the same order, keyed by its own routing
key (`m2.GetBatchJobExecution`); it changes nothing, so a dropped call loses only its answer,
whichever its `drop_phase`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from dispatcher.emulator.calls import CallInProgress
from dispatcher.emulator.describe_responses import DescribedJob, describe_output
from dispatcher.emulator.faults import DropPhase
from dispatcher.emulator.jobs import CallOutcome
from dispatcher.emulator.protocol import AwsError
from dispatcher.emulator.shapes import shape_problems

if TYPE_CHECKING:
    from aiohttp import web

    from dispatcher.emulator.catalog import CompanionOperation
    from dispatcher.emulator.faults import CallPlan
    from dispatcher.emulator.state import EmulatorState
    from dispatcher.emulator.tracking import TrackedJob

NOT_FOUND_CODE = "ResourceNotFoundException"


async def answer_describe(
    state: EmulatorState,
    operation: CompanionOperation,
    request: web.Request,
) -> web.StreamResponse:
    """Answer one Describe call of `operation` as AWS would, with the faults in force, and log it."""
    call = CallInProgress(state, operation, request, request_id=str(uuid4()))
    plan = await call.meet_faults()
    if plan.drop_phase is DropPhase.BEFORE_START:
        return call.drop()
    try:
        job, output = await _describe(call, operation, plan)
    except AwsError as error:
        return call.fail(error)
    if plan.drop_phase is DropPhase.AFTER_START:
        return call.drop(job.job_id)
    return call.answer(output, CallOutcome.DESCRIBED, job.job_id)


async def _describe(
    call: CallInProgress,
    operation: CompanionOperation,
    plan: CallPlan,
) -> tuple[TrackedJob, dict[str, Any]]:
    """The job the call names and the answer about it; raises `AwsError`."""
    input_shape = operation.model.input_shape
    params = await call.read_valid_params(
        plan,
        lambda params: [] if input_shape is None else shape_problems(input_shape, params),
    )
    followed = call.state.followed
    job = followed.find(operation, params)
    if job is None:
        names = ", ".join(f"{member} {params.get(member)!r}" for member, _ in operation.companion.parameters)
        raise AwsError(code=NOT_FOUND_CODE, message=f"No job found with {names}.")
    moment = followed.moment(job, time.time())
    companion = operation.companion
    described = DescribedJob(
        start_params=job.params,
        start_output=job.output,
        moment=moment,
        outcome=companion.terminal.get(moment.status),
        warning=moment.status in companion.warnings,
        request=params,
        context=call.context(),
    )
    return job, describe_output(operation, described)
