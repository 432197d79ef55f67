r"""The parameter models the worker and the emulator validate with: botocore's, plus the contract.

`params_generated.py` is botocore's service model of each operation, which is what the live service
accepts. This module is the one hand-written layer on top of it. The worker validates a job with
`PARAMS_MODELS[(service, operation)].params_model.model_validate(params)` and passes
`model.model_dump(by_alias=True, exclude_none=True)` to the aiobotocore client as keyword arguments.

Contract rules layered on here:

* QuickSight `InputPayload` may be given as a JSON object or array; it is serialised compactly into
  the string the API wants before its length and pattern are checked (the pattern's `.` refuses the
  line breaks of pretty-printed JSON, and also U+0085, U+2028 and U+2029, which JSON may leave raw
  inside strings, so those are escaped). A string is checked as given. Its numbers reach AWS exactly
  as the body wrote them (`123456789012345678901234567890`, `0.1000000000000000055511151231257827`,
  `1e400`): orjson, which parses bodies, would turn them into doubles, so a body with such a payload
  is read again by `with_exact_json_payload`.

Generation itself makes every `idempotencyToken` member optional (Lookout for Equipment
`ClientToken` is `required` in the model), because botocore fills an absent token; the envelope
fills it instead, with a token derived from the job id, so that a redelivery reuses it.

The API reference pages the project was specified from, read against botocore 1.43's models. No page
states a constraint the model lacks, so nothing from the pages is layered on; where they disagree,
the model wins:

* QuickSight StartAutomationJob: every constraint agrees. Only the model marks `InputPayload`
  `sensitive`; the page calls it "a JSON string" (the contract widens that, above).
* Lookout for Equipment StartDataIngestionJob: the page says `ClientToken` is "Required: Yes" and,
  in the same breath, that the service generates one when it is not set; the model has it required
  with the `idempotencyToken` trait. The page gives `S3InputConfiguration` no constraints; the
  model requires it and `Bucket` (3-63 chars, `^[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9]$`) and limits
  `Prefix` (0-1024 chars, `(^$)|([\u0009\u000A\u000D\u0020-\u00FF]{1,1023}/$)`, which allows tab,
  LF and CR) and `KeyPattern` (1-2048 chars).
* DataZone StartDataSourceRun: the page anchors the identifier patterns (`^dzd[-_]...$`), the model
  does not; under AWS's full-match semantics they are the same. The page describes `clientToken`
  as an idempotency identifier; the model gives it the `idempotencyToken` trait, so botocore fills it.
* M2 StartBatchJob: the page's `batchJobIdentifier` union has two members, the model's four (also
  `restartBatchJobIdentifier` and `s3BatchJobIdentifier`, itself holding the union `identifier`).
  The page omits `authSecretsManagerArn` (20-2048 chars) and every constraint: `applicationId`
  `^\S{1,80}$`; `jobParams` at most 500 entries, keys `^[A-Za-z][A-Za-z0-9]{1,31}$` (so 2-32
  chars, although the key's length range says 1-32), values at most 1024 chars. The model's own
  descriptions of `JobStepRestartMarker.skip` and `.stepCheckpoint` are swapped (`skip` is the
  boolean, `stepCheckpoint` the integer).
* Clean Rooms StartProtectedJob: the page shows `jobParameters` with `analysisTemplateArn` only and
  no constraints; the model requires `analysisTemplateArn` (at most 200 chars and an ARN pattern)
  and adds the `sensitive` map `parameters` (names 1-100 chars `[0-9a-zA-Z_]+`, values at most
  1000 chars). The page omits `computeConfiguration` (a union: `worker` with `type`
  `CR.1X`|`CR.4X`, `number` 4-1024 and the union `properties` holding a `spark` map of at most 50
  entries) and `jobComputePayerAccountId` (12 chars, `\d+`), and gives `membershipIdentifier` no
  constraint where the model wants a 36-char lower-case UUID. Both have `type` `PYSPARK` only and
  only `member` in the `outputConfiguration` union (the page's `s3` is in the response).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import JsonValue, field_validator
from pydantic_core import PydanticCustomError

from dispatcher import params_generated as generated
from dispatcher.params_generated import GENERATED_OPERATIONS

if TYPE_CHECKING:
    from dispatcher.params_types import GeneratedOperation

_JSON_PAYLOAD = "InputPayload"
_JsonPayload = generated.QuickSightSensitiveIOPayload | dict[str, JsonValue] | list[JsonValue]
# Line terminators for Java that JSON does not require escaping.
_ESCAPE_JAVA_LINE_TERMINATORS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class QuickSightStartAutomationJobParams(generated.QuickSightStartAutomationJobParams):
    """Starts a QuickSight automation job; `InputPayload` may be a JSON string, object or array."""

    @field_validator("InputPayload", mode="before", json_schema_input_type=_JsonPayload | None)
    @classmethod
    def _serialise_json_payload(cls, payload: object) -> object:
        """Serialise an object or array compactly, since AWS's pattern refuses line breaks."""
        if not isinstance(payload, dict | list):
            return payload
        try:
            return orjson.dumps(payload).decode().translate(_ESCAPE_JAVA_LINE_TERMINATORS)
        except orjson.JSONEncodeError as exc:
            raise PydanticCustomError(
                "json_payload_unserialisable",
                "InputPayload cannot be serialised as JSON: {reason}",
                {"reason": str(exc)},
            ) from None


def has_json_payload(document: dict[str, Any]) -> bool:
    """Whether a parsed body's `InputPayload` is an object or array, whose numbers orjson may have rounded."""
    params = document.get("params")
    return isinstance(params, dict) and isinstance(params.get(_JSON_PAYLOAD), dict | list)


def with_exact_json_payload(text: str) -> dict[str, Any] | None:
    """The body parsed as orjson would, but with `InputPayload`'s numbers as `orjson.Fragment`s of their text.

    The standard library's parser hands over each number's text, and orjson writes a `Fragment`
    back unchanged, so the payload is serialised with its numbers as written (what orjson cannot
    write, a lone surrogate or nesting beyond its limit, the payload's validator refuses). Everything
    else goes through orjson once more, so it is exactly what the fast path reads, and orjson's
    refusals (lone surrogates, numbers beyond a double) still hold there. None when the body has no
    object or array payload, or cannot be read so (not JSON, or nested deeper than Python recurses).
    """
    try:
        document = json.loads(text, parse_int=orjson.Fragment, parse_float=orjson.Fragment, parse_constant=_refuse)
        if not isinstance(document, dict) or not has_json_payload(document):
            return None
        payload = document["params"][_JSON_PAYLOAD]
        rest = orjson.loads(orjson.dumps({**document, "params": {**document["params"], _JSON_PAYLOAD: None}}))
    except (ValueError, TypeError, RecursionError):
        return None
    rest["params"][_JSON_PAYLOAD] = payload
    return rest  # type: ignore[no-any-return]


def _refuse(constant: str) -> None:
    """`NaN` and `Infinity` are not JSON; the standard library would accept them."""
    raise ValueError(constant)


_QUICKSIGHT_JOB = ("quicksight", "StartAutomationJob")

PARAMS_MODELS: dict[tuple[str, str], GeneratedOperation] = {
    **GENERATED_OPERATIONS,
    _QUICKSIGHT_JOB: GENERATED_OPERATIONS[_QUICKSIGHT_JOB]._replace(
        params_model=QuickSightStartAutomationJobParams,
    ),
}
