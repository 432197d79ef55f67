"""The base classes of the generated parameter models, and what generation records per operation."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from pydantic.config import JsonDict

# A JSON message carries a timestamp as an RFC 3339 string (or epoch seconds), which strict
# validation would refuse; botocore accepts the resulting `datetime`.
AwsTimestamp = Annotated[datetime, Field(strict=False)]


class AwsShape(BaseModel):
    """A structure of an AWS request: AWS's member names, no unknown members, no type coercion."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        # Members renamed in Python (a keyword, or a BaseModel attribute) keep AWS's name outside.
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


def _exactly_one_member_schema(schema: JsonDict) -> None:
    """Exactly one member present and not null: a null member counts as not set, as in validation."""
    members = schema.get("properties")
    assert isinstance(members, dict)
    schema["oneOf"] = [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in members]


class AwsUnion(AwsShape):
    """A structure with the `union` trait: exactly one of its members must be set."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_member_schema)

    @model_validator(mode="after")
    def _exactly_one_member_set(self) -> Self:
        aws_names = {name: field.alias or name for name, field in type(self).model_fields.items()}
        set_members = [aws_names[name] for name in aws_names if getattr(self, name) is not None]
        if len(set_members) != 1:
            raise PydanticCustomError(
                "aws_union",
                "Exactly one of {members} must be set, got {got}",
                {"members": ", ".join(aws_names.values()), "got": ", ".join(set_members) or "none"},
            )
        return self


class GeneratedOperation(NamedTuple):
    """What generation derived from botocore's model for one operation.

    `sensitive_paths` are dotted member paths (`*` for any list item or map value) whose values
    must never be logged or echoed.
    """

    params_model: type[AwsShape]
    idempotency_token_member: str | None
    sensitive_paths: tuple[str, ...]
