"""The control API of job lifecycles: the settings in force, the jobs and their statuses.

Same conventions as the faults API: JSON in and out, a refused request answers 400 (404 for an
unknown job or operation where a path names one) with `{"error": ...}` and changes nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from dispatcher.emulator.calls import field_errors
from dispatcher.emulator.control import CONTROL_PREFIX, json_response
from dispatcher.emulator.followed import LifecycleConfigError, UnknownJobError
from dispatcher.emulator.lifecycle import LifecycleSettings, lifecycle_json, parse_lifecycle

if TYPE_CHECKING:
    from collections.abc import Callable

    from dispatcher.emulator.followed import FollowedJobs
    from dispatcher.emulator.state import EmulatorState


class ForcedStatus(BaseModel):
    """The body of `PUT /_emulator/jobs/{routing_key}/{job_id}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: str


def job_control_routes(state: EmulatorState) -> list[web.RouteDef]:
    """The lifecycle and job routes, bound to `state`."""
    api = _JobControlApi(state.followed)
    return [
        web.get(f"{CONTROL_PREFIX}/lifecycle", api.get_lifecycle),
        web.put(f"{CONTROL_PREFIX}/lifecycle", api.replace_lifecycle),
        web.put(f"{CONTROL_PREFIX}/lifecycle/{{routing_key}}", api.set_operation_lifecycle),
        web.delete(f"{CONTROL_PREFIX}/lifecycle/{{routing_key}}", api.clear_operation_lifecycle),
        web.get(f"{CONTROL_PREFIX}/jobs", api.get_jobs),
        web.put(f"{CONTROL_PREFIX}/jobs/{{routing_key}}/{{job_id}}", api.force_status),
    ]


class _JobControlApi:
    """The handlers, sharing the emulator's followed jobs."""

    def __init__(self, followed: FollowedJobs) -> None:
        self._followed = followed

    async def get_lifecycle(self, _request: web.Request) -> web.Response:
        """`GET /_emulator/lifecycle`: the settings in force, `default` first."""
        return json_response(lifecycle_json(self._followed.settings))

    async def replace_lifecycle(self, request: web.Request) -> web.Response:
        """`PUT /_emulator/lifecycle`: replace all settings; `{}` puts back the built-in default."""
        return await self._apply(request, lambda raw: self._followed.replace_settings(parse_lifecycle(raw)))

    async def set_operation_lifecycle(self, request: web.Request) -> web.Response:
        """`PUT /_emulator/lifecycle/{routing_key}`: replace one operation's (or the `default`) settings."""
        key = request.match_info["routing_key"]
        return await self._apply(
            request,
            lambda raw: self._followed.set_settings(key, LifecycleSettings.model_validate(raw)),
        )

    async def clear_operation_lifecycle(self, request: web.Request) -> web.Response:
        """`DELETE /_emulator/lifecycle/{routing_key}`: the operation follows `default` again."""
        try:
            self._followed.clear_settings(request.match_info["routing_key"])
        except LifecycleConfigError as exc:
            return json_response({"error": str(exc)}, status=404)
        return json_response(lifecycle_json(self._followed.settings))

    async def get_jobs(self, request: web.Request) -> web.Response:
        """`GET /_emulator/jobs[?routing_key=...]`: the remembered jobs, oldest first, with their status now."""
        jobs = self._followed.to_json(time.time(), request.query.get("routing_key"))
        return json_response({"jobs": jobs})

    async def force_status(self, request: web.Request) -> web.Response:
        """`PUT /_emulator/jobs/{routing_key}/{job_id}`: hold a job in a status of the model from now on."""
        try:
            body = ForcedStatus.model_validate(orjson.loads(await request.read()))
            job = self._followed.force(
                request.match_info["routing_key"], request.match_info["job_id"], body.status, time.time()
            )
        except UnknownJobError as exc:
            return json_response({"error": str(exc)}, status=404)
        except (orjson.JSONDecodeError, ValidationError, LifecycleConfigError) as exc:
            return json_response({"error": _refusal(exc, "invalid status")}, status=400)
        return json_response(self._followed.job_json(job, time.time()))

    async def _apply(self, request: web.Request, change: Callable[[Any], None]) -> web.Response:
        """Read a JSON body, apply `change` to it, answer the settings now in force or why not."""
        try:
            change(orjson.loads(await request.read()))
        except (orjson.JSONDecodeError, ValidationError, LifecycleConfigError) as exc:
            return json_response({"error": _refusal(exc, "invalid lifecycle settings")}, status=400)
        return json_response(lifecycle_json(self._followed.settings))


def _refusal(exc: Exception, what: str) -> str:
    """One sentence saying why a control request was refused; `what` names a refused body."""
    if isinstance(exc, orjson.JSONDecodeError):
        return f"the body is not JSON: {exc}"
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{path or 'body'}: {problem}" for path, problem in field_errors(exc))
        return f"{what}: {problems}"
    return str(exc)
