"""Requests in, responses out, in each service's wire protocol, from botocore's models.

json, query, rest-json and rest-xml go through moto's model-driven parsers and
serializers (``moto.core.parse`` / ``moto.core.serialize``); smithy-rpc-v2-cbor (what
current SDKs speak to CloudWatch) is decoded and encoded with ``cbor2``, timestamps as
CBOR tag 1 (epoch seconds), errors as a map with ``__type`` and ``message``.
"""

from __future__ import annotations

import uuid
import warnings
from datetime import UTC, datetime
from typing import Any

import cbor2
from botocore.model import OperationModel, Shape
from moto.core.parse import PROTOCOL_PARSERS
from moto.core.serialize import SerializationContext, get_serializer_class
from werkzeug.datastructures import MultiDict

from mlops.twin.api import ApiError

CBOR = "smithy-rpc-v2-cbor"


def is_cbor(headers: Any, path: str) -> bool:
    return headers.get("smithy-protocol") == "rpc-v2-cbor" or (path.startswith("/service/") and "/operation/" in path)


def protocol_of(op: OperationModel, headers: Any, path: str) -> str:
    """The protocol the request speaks, among those the service offers (CloudWatch: CBOR, json, query)."""
    if is_cbor(headers, path):
        return CBOR
    model = op.service_model
    offered = model.metadata.get("protocols") or [model.protocol]
    content_type = headers.get("Content-Type") or ""
    if "json" in offered and headers.get("X-Amz-Target") and "json" in content_type:
        return "json"
    if "query" in offered and ("x-www-form-urlencoded" in content_type or model.protocol == CBOR):
        return "query"
    return str(model.protocol)


def parse(
    op: OperationModel,
    protocol: str,
    *,
    method: str,
    path: str,
    headers: Any,
    body: bytes,
    values: MultiDict,
    url_params: dict[str, str],
) -> dict[str, Any]:
    if protocol == CBOR:
        decoded = cbor2.loads(body) if body else {}
        return _from_cbor(op.input_shape, decoded) if op.input_shape is not None else {}
    parser = PROTOCOL_PARSERS[protocol](op)
    request = {
        "body": body,
        "headers": headers,
        "method": method,
        "url_params": url_params,
        "url_path": path,
        "values": values,
    }
    return dict(parser.parse(request))  # type: ignore[arg-type]


def serialize(
    op: OperationModel, protocol: str, result: dict[str, Any] | ApiError
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a result or an error."""
    request_id = str(uuid.uuid4())
    if protocol == CBOR:
        return _cbor_response(op, result, request_id)
    serializer = get_serializer_class(op.service_model.service_name, protocol)(
        op, context=SerializationContext(request_id)
    )
    with warnings.catch_warnings():  # moto warns of error codes its models do not list (e.g. NotImplemented)
        warnings.simplefilter("ignore", UserWarning)
        out = serializer.serialize(result)
    body = out["body"]
    data = body.encode() if isinstance(body, str) else bytes(body or b"")
    headers = {k: str(v) for k, v in out["headers"].items()}
    headers.setdefault("x-amzn-RequestId", request_id)
    if protocol == "json" and headers.get("Content-Type") in (None, "text"):
        headers["Content-Type"] = f"application/x-amz-json-{op.service_model.metadata.get('jsonVersion', '1.0')}"
    status = result.status if isinstance(result, ApiError) else _status(op, result, int(out["status_code"]))
    if isinstance(result, ApiError) and protocol in ("json", "rest-json"):
        if not any(k.lower() == "x-amzn-errortype" for k in headers):
            headers["x-amzn-ErrorType"] = result.code
        if "awsQueryCompatible" in op.service_model.metadata:
            headers["x-amzn-query-error"] = _query_error(result)
    return status, headers, data


def _status(op: OperationModel, result: dict[str, Any], default: int) -> int:
    """The status code an output member carries (Lambda Invoke's 202 and 204), else the operation's."""
    shape = op.output_shape
    for name, member in shape.members.items() if shape is not None else []:
        if member.serialization.get("location") == "statusCode" and result.get(name) is not None:
            return int(result[name])
    return default


def _query_error(error: ApiError) -> str:
    """``x-amzn-query-error``: the error code of the service's query protocol, and who is at fault."""
    return f"{error.code};{'Sender' if error.sender_fault else 'Receiver'}"


def _error_type(op: OperationModel, code: str) -> str:
    """The shape id of a modeled error with this code (``ResourceNotFound`` -> ``...#ResourceNotFound``)."""
    model = op.service_model
    namespace = f"com.amazonaws.{model.service_name}"
    names = [s.name for s in model.error_shapes if s.name == code]  # the shape named as the code, if any
    names += [s.name for s in model.error_shapes if s.metadata.get("error", {}).get("code") == code]
    return f"{namespace}#{names[0] if names else code}"


def _cbor_response(
    op: OperationModel, result: dict[str, Any] | ApiError, request_id: str
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor", "x-amzn-RequestId": request_id}
    if isinstance(result, ApiError):
        body = {"__type": _error_type(op, result.code), "message": result.message}
        if "awsQueryCompatible" in op.service_model.metadata:
            headers["x-amzn-query-error"] = _query_error(result)
        return result.status, headers, cbor2.dumps(body)
    shaped = _to_cbor(op.output_shape, result) if op.output_shape is not None else {}
    return 200, headers, cbor2.dumps(shaped, datetime_as_timestamp=True, timezone=UTC)


def _from_cbor(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure":
        return {k: _from_cbor(shape.members[k], v) for k, v in value.items() if k in shape.members}
    if kind == "list":
        return [_from_cbor(shape.member, v) for v in value]
    if kind == "map":
        return {k: _from_cbor(shape.value, v) for k, v in value.items()}
    if kind == "timestamp" and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value


def _to_cbor(shape: Shape, value: Any) -> Any:
    """Only the members of the output shape, no nulls (as AWS leaves them out)."""
    kind = shape.type_name
    if kind == "structure":
        return {k: _to_cbor(shape.members[k], v) for k, v in value.items() if k in shape.members and v is not None}
    if kind == "list":
        return [_to_cbor(shape.member, v) for v in value]
    if kind == "map":
        return {k: _to_cbor(shape.value, v) for k, v in value.items()}
    if kind == "timestamp" and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if kind in ("double", "float") and isinstance(value, int):
        return float(value)
    return value
