"""The control API under `/_emulator/`: set faults, read the call log, reset, check health.

No AWS operation path starts with `/_emulator/`, so these routes share the port with the AWS
routes. Every answer is JSON; a refused request answers 400 (or 404) with `{"error": ...}`. The
lifecycle settings and the jobs have their own routes (`control_jobs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from dispatcher.emulator.calls import field_errors
from dispatcher.emulator.faults import FaultSettings, parse_faults
from dispatcher.emulator.state import FaultConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from dispatcher.emulator.state import EmulatorState

CONTROL_PREFIX = "/_emulator"


def control_routes(state: EmulatorState) -> list[web.RouteDef]:
    """The control API's routes, bound to `state`."""
    api = _ControlApi(state)
    return [
        web.get(f"{CONTROL_PREFIX}/health", api.health),
        web.get(f"{CONTROL_PREFIX}/faults", api.get_faults),
        web.put(f"{CONTROL_PREFIX}/faults", api.replace_faults),
        web.put(f"{CONTROL_PREFIX}/faults/{{routing_key}}", api.set_operation_faults),
        web.delete(f"{CONTROL_PREFIX}/faults/{{routing_key}}", api.clear_operation_faults),
        web.get(f"{CONTROL_PREFIX}/calls", api.get_calls),
        web.post(f"{CONTROL_PREFIX}/reset", api.reset),
    ]


def json_response(data: Any, status: int = 200) -> web.Response:  # noqa: ANN401 - any JSON-ready value
    """A control API answer."""
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _faults_json(faults: Mapping[str, FaultSettings]) -> dict[str, Any]:
    return {key: settings.model_dump(mode="json", exclude_defaults=True) for key, settings in faults.items()}


class _ControlApi:
    """The handlers, sharing one `EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    async def health(self, _request: web.Request) -> web.Response:
        """`GET /_emulator/health`: ready, and the routing keys served (start and Describe calls)."""
        state = self._state
        return json_response(
            {
                "status": "ok",
                "operations": list(state.operations),
                "describe_operations": list(state.followed.companions),
            },
        )

    async def get_faults(self, _request: web.Request) -> web.Response:
        """`GET /_emulator/faults`: the faults in force, by routing key."""
        return json_response(_faults_json(self._state.faults))

    async def replace_faults(self, request: web.Request) -> web.Response:
        """`PUT /_emulator/faults`: replace all faults; `{}` clears them."""
        return await self._apply(request, lambda raw: self._state.replace_faults(parse_faults(raw)))

    async def set_operation_faults(self, request: web.Request) -> web.Response:
        """`PUT /_emulator/faults/{routing_key}`: replace one operation's faults."""
        routing_key = request.match_info["routing_key"]
        return await self._apply(
            request,
            lambda raw: self._state.set_operation_faults(routing_key, FaultSettings.model_validate(raw)),
        )

    async def clear_operation_faults(self, request: web.Request) -> web.Response:
        """`DELETE /_emulator/faults/{routing_key}`: one operation answers without faults again."""
        try:
            self._state.clear_operation_faults(request.match_info["routing_key"])
        except FaultConfigError as exc:
            return json_response({"error": str(exc)}, status=404)
        return json_response(_faults_json(self._state.faults))

    async def get_calls(self, request: web.Request) -> web.Response:
        """`GET /_emulator/calls[?routing_key=...]`: the call log, oldest first."""
        calls = self._state.calls.to_json(request.query.get("routing_key"))
        return json_response({"total": self._state.calls.total, "calls": calls})

    async def reset(self, _request: web.Request) -> web.Response:
        """`POST /_emulator/reset`: forget jobs and calls, restore the start-up faults and lifecycle."""
        self._state.reset()
        return json_response(_faults_json(self._state.faults))

    async def _apply(self, request: web.Request, change: Callable[[Any], None]) -> web.Response:
        """Read a JSON body, apply `change` to it, answer the faults now in force or why not."""
        try:
            change(orjson.loads(await request.read()))
        except orjson.JSONDecodeError as exc:
            return json_response({"error": f"the body is not JSON: {exc}"}, status=400)
        except ValidationError as exc:
            problems = "; ".join(f"{path}: {problem}" for path, problem in field_errors(exc))
            return json_response({"error": f"invalid faults: {problems}"}, status=400)
        except FaultConfigError as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response(_faults_json(self._state.faults))
