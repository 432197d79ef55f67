"""The wire: reading a request and writing an answer the way botocore expects for each protocol.

rest-json takes members from the path, the query string, headers and a JSON body, and answers
errors with `x-amzn-ErrorType`; the JSON protocol takes everything from the body of `POST /`
(`X-Amz-Target` names the operation) and answers errors with `__type`. Every member is placed and
named by botocore's shapes, so this module knows no operation by name.
"""

from __future__ import annotations

import base64
import re
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from dispatcher.emulator.responses import placeholder

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from botocore.model import Shape, StructureShape

    from dispatcher.emulator.catalog import ModeledOperation

REQUEST_ID_HEADER = "x-amzn-RequestId"
_GREEDY_LABEL = re.compile(r"\{(\w+)\+\}")
_LABEL = re.compile(r"\{(\w+)\}")
_MEMBER_LOCATIONS = ("uri", "querystring", "header")


class AwsError(Exception):
    """Raised while answering a call to answer it with this AWS error instead of a job."""

    def __init__(
        self,
        *,
        code: str,
        message: str,
        retry_after_s: int = 1,
        field_errors: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Keep what the error body needs: `field_errors` are `(path, problem)` pairs."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.field_errors = tuple(field_errors)


def route_path(operation: ModeledOperation) -> str:
    """The aiohttp route of a rest-json operation, from botocore's `requestUri`."""
    path = operation.model.http["requestUri"].split("?", 1)[0]
    # aiohttp's plain `{name}` refuses `{` and `}`; AWS takes any character but `/` in a label
    # (botocore percent-encodes the rest), so the parameter model, not the route, judges the value.
    return _GREEDY_LABEL.sub(r"{\1:.+}", _LABEL.sub(r"{\1:[^/]+}", path))


def json_target(operation: ModeledOperation) -> str:
    """The `X-Amz-Target` header naming a JSON-protocol operation."""
    prefix: str = operation.model.service_model.metadata["targetPrefix"]
    return f"{prefix}.{operation.model.name}"


async def read_params(request: web.Request, operation: ModeledOperation) -> dict[str, Any]:
    """The call's parameters by member name, as the caller passed them to botocore."""
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise AwsError(code="SerializationException", message=f"The request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise AwsError(code="SerializationException", message="The request body must be a JSON object.")
    input_shape = operation.model.input_shape
    params: dict[str, Any] = _decode(input_shape, body) if input_shape is not None else {}
    if operation.protocol == "rest-json":
        params.update(_params_outside_body(request, input_shape))
    return params


def output_response(
    operation: ModeledOperation,
    output: Mapping[str, Any],
    request_id: str,
) -> web.Response:
    """A successful answer carrying `output` (member name -> value) where the model puts it."""
    status: int = operation.model.http.get("responseCode", 200)
    headers = {REQUEST_ID_HEADER: request_id}
    body: dict[str, Any] = {}
    shape = operation.model.output_shape
    for name, value in output.items():
        if value is None:
            continue
        member = shape.members[name]
        location = member.serialization.get("location")
        if location == "statusCode":
            status = value
        elif location == "header":
            headers[member.serialization["name"]] = _header_value(member, value)
        else:
            body[member.serialization.get("name", name)] = _encode(member, value)
    return _json_response(operation, status, headers, body)


def error_response(operation: ModeledOperation, error: AwsError, request_id: str) -> web.Response:
    """An error answer botocore parses into the modeled exception class of `error.code`."""
    headers = {REQUEST_ID_HEADER: request_id}
    body: dict[str, Any] = {}
    shape = operation.error_shape(error.code)
    if shape is None:
        body["message"] = error.message
    else:
        for name, value in _error_members(shape, error, request_id).items():
            member = shape.members[name]
            if member.serialization.get("location") == "header":
                headers[member.serialization["name"]] = _header_value(member, value)
            else:
                body[member.serialization.get("name", name)] = _encode(member, value)
    if operation.protocol == "json":
        body["__type"] = error.code
    else:
        headers["x-amzn-ErrorType"] = error.code
    return _json_response(operation, operation.error_status(error.code), headers, body)


def _json_response(
    operation: ModeledOperation,
    status: int,
    headers: dict[str, str],
    body: dict[str, Any],
) -> web.Response:
    if operation.protocol == "json":
        version = operation.model.service_model.metadata.get("jsonVersion", "1.0")
        content_type = f"application/x-amz-json-{version}"
    else:
        content_type = "application/json"
    return web.Response(status=status, headers=headers, body=orjson.dumps(body), content_type=content_type)


def _error_members(shape: StructureShape, error: AwsError, request_id: str) -> dict[str, Any]:
    """The error's members: its message, the request id and retry hint, field errors, fillers."""
    members: dict[str, Any] = {}
    for name, member in shape.members.items():
        if name.lower() == "message":
            members[name] = error.message
        elif name == "RequestId":
            members[name] = request_id
        elif member.serialization.get("name") == "Retry-After":
            members[name] = error.retry_after_s
        elif name == "fieldList" and error.field_errors:
            members[name] = [{"name": path, "message": problem} for path, problem in error.field_errors]
        elif name == "reason" and error.field_errors:
            members[name] = _field_validation_reason(member)
        elif name in shape.required_members:
            members[name] = placeholder(member)
    return {name: value for name, value in members.items() if value is not None}


def _field_validation_reason(member: Shape) -> str | None:
    """The model's spelling of "a field failed validation", e.g. `fieldValidationFailed`."""
    wanted = "fieldvalidationfailed"
    for value in member.enum:
        if value.replace("_", "").lower() == wanted:
            return str(value)
    return None


def _params_outside_body(request: web.Request, input_shape: StructureShape) -> dict[str, Any]:
    """rest-json members bound to the path, the query string or a header."""
    params: dict[str, Any] = {}
    for name, member in input_shape.members.items():
        location = member.serialization.get("location")
        if location not in _MEMBER_LOCATIONS:
            continue
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            params[name] = _from_text(member, request.match_info[wire_name])
        elif location == "querystring" and member.type_name == "list":
            values = request.query.getall(wire_name, [])
            if values:
                params[name] = [_from_text(member.member, value) for value in values]
        else:
            source = request.query if location == "querystring" else request.headers
            if wire_name in source:
                params[name] = _from_text(member, source[wire_name])
    return params


def _from_text(shape: Shape, text: str) -> Any:  # noqa: ANN401 - any JSON scalar
    """A path, query or header value as the JSON type the shape declares; as text if it is not one."""
    converters: dict[str, Callable[[str], Any]] = {"integer": int, "long": int, "float": float, "double": float}
    if shape.type_name == "boolean" and text in {"true", "false"}:
        return text == "true"
    try:
        return converters.get(shape.type_name, str)(text)
    except ValueError:
        return text  # the parameter model refuses it with the member's name


def _decode(shape: Shape, value: Any) -> Any:  # noqa: ANN401 - any JSON value
    """A JSON body value with wire names (`locationName`) turned back into member names."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = {member.serialization.get("name", name): (name, member) for name, member in shape.members.items()}
        decoded: dict[str, Any] = {}
        for key, item in value.items():
            if key in members:
                name, member = members[key]
                decoded[name] = _decode(member, item)
            else:  # kept, so that validation refuses it by its name
                decoded[key] = item
        return decoded
    if shape.type_name == "list" and isinstance(value, list):
        return [_decode(shape.member, item) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: _decode(shape.value, item) for key, item in value.items()}
    return value


def _encode(shape: Shape, value: Any) -> Any:  # noqa: ANN401 - any output value
    """An output value in its JSON form: wire names, timestamps in the model's format, base64."""
    if shape.type_name == "structure":
        return {
            member.serialization.get("name", name): _encode(member, value[name])
            for name, member in shape.members.items()
            if value.get(name) is not None
        }
    if shape.type_name == "list":
        return [_encode(shape.member, item) for item in value]
    if shape.type_name == "map":
        return {key: _encode(shape.value, item) for key, item in value.items()}
    if shape.type_name == "timestamp":
        return _timestamp(value, shape.serialization.get("timestampFormat", "unixTimestamp"))
    if shape.type_name == "blob":
        return base64.b64encode(value).decode("ascii")
    return value


def _header_value(shape: Shape, value: Any) -> str:  # noqa: ANN401 - any output value
    if shape.type_name == "timestamp":
        return str(_timestamp(value, shape.serialization.get("timestampFormat", "rfc822")))
    if shape.type_name == "boolean":
        return "true" if value else "false"
    return str(value)


def _timestamp(value: datetime, timestamp_format: str) -> str | float:
    if timestamp_format == "iso8601":
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if timestamp_format == "rfc822":
        return format_datetime(value, usegmt=True)
    return value.timestamp()
