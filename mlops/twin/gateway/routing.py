"""Which service, operation and caller an HTTP request is, from botocore's service models.

- The service is the SigV4 signing name in the ``Authorization`` header (or the
  ``X-Amz-Credential`` query parameter of a presigned URL); requests without one are S3
  (anonymous or presigned-by-header), as on S3's own endpoint.
- The operation comes from where the protocol puts it: ``X-Amz-Target`` (json), the
  ``/service/<S>/operation/<Op>`` path (smithy-rpc-v2-cbor), the ``Action`` parameter
  (query), or the method + URI template + required query/header members (rest-json and
  rest-xml), matched against every operation of the model, most specific first.
- The caller is the access key id of the signature.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from botocore.model import OperationModel, ServiceModel
from moto.core.utils import get_service_model

# SigV4 signing name -> botocore service name (the ones the twin routes).
SIGNING_NAMES = {
    "s3": "s3",
    "sagemaker": "sagemaker",  # also sagemaker-runtime: told apart by path below
    "states": "stepfunctions",
    "lambda": "lambda",
    "events": "events",
    "monitoring": "cloudwatch",
    "logs": "logs",
    "sns": "sns",
    "application-autoscaling": "application-autoscaling",
    "sts": "sts",
    "kms": "kms",
    "iam": "iam",
    "sqs": "sqs",
}
RUNTIME_PATH = re.compile(r"^/endpoints/[^/]+/(invocations|async-invocations|invocations-response-stream)$")
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/aws4_request")


@cache
def service_model(name: str) -> ServiceModel:
    # moto's subclass of botocore's model: moto's parsers and serializers (wire.py) need its shapes
    return get_service_model(name)


@dataclass(frozen=True)
class Signature:
    access_key: str  # "" when unsigned
    region: str
    signing_name: str


def signature(headers: Any, query: dict[str, list[str]]) -> Signature:
    auth = headers.get("Authorization", "") or ""
    match = CREDENTIAL.search(auth)
    if match is None and "X-Amz-Credential" in query:
        parts = query["X-Amz-Credential"][0].split("/")
        if len(parts) == 5:
            return Signature(parts[0], parts[2], parts[3])
    if match is None:
        return Signature("", "", "")
    return Signature(match[1], match[2], match[3])


def service_for(sig: Signature, path: str) -> str:
    """The botocore service name of a request; "" when the signing name is not one the twin knows."""
    if not sig.signing_name:
        return "s3"
    name = SIGNING_NAMES.get(sig.signing_name, "")
    if name == "sagemaker" and RUNTIME_PATH.match(path):
        return "sagemaker-runtime"
    return name


# -- rest protocols: method + URI template --------------------------------------------
@dataclass(frozen=True)
class _Route:
    operation: str
    method: str
    pattern: re.Pattern[str]
    literal_query: dict[str, str]  # "?uploads" -> {"uploads": ""}; "?list-type=2" -> {"list-type": "2"}
    required_query: tuple[str, ...]  # querystring members the input shape requires
    required_headers: tuple[str, ...]
    specificity: int


@dataclass
class RestRoutes:
    routes: list[_Route] = field(default_factory=list)

    def match(self, method: str, path: str, query: dict[str, list[str]], headers: Any) -> tuple[str, dict[str, str]]:
        """(operation, URI labels) of the most specific route; ("", {}) when none matches."""
        best: tuple[int, str, dict[str, str]] | None = None
        for route in self.routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found is None:
                continue
            if any(k not in query or (v and query[k][0] != v) for k, v in route.literal_query.items()):
                continue
            if any(q not in query for q in route.required_query):
                continue
            if any(headers.get(h) is None for h in route.required_headers):
                continue
            if best is None or route.specificity > best[0]:
                labels = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items() if v is not None}
                best = (route.specificity, route.operation, labels)
        return (best[1], best[2]) if best else ("", {})


def _template_regex(template: str) -> tuple[re.Pattern[str], int]:
    literal = 0
    out = "^"
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece.startswith("{"):
            name = piece[1:-1]
            greedy = name.endswith("+")
            name = name.rstrip("+")
            out += f"(?P<{name}>.+)" if greedy else f"(?P<{name}>[^/]+)"
        else:
            literal += len(piece)
            out += re.escape(piece)
    if out.endswith("/"):
        out = out[:-1] + "/?"
    return re.compile(out + "$"), literal


@cache
def rest_routes(service: str) -> RestRoutes:
    model = service_model(service)
    routes = RestRoutes()
    for name in model.operation_names:
        op = model.operation_model(name)
        uri = op.http.get("requestUri", "/")
        path, _, query_part = uri.partition("?")
        literal_query = {}
        for item in filter(None, query_part.split("&")):
            key, _, value = item.partition("=")
            literal_query[key] = value
        pattern, literal = _template_regex(path)
        required_query, required_headers = [], []
        shape = op.input_shape
        for member in shape.required_members if shape is not None else []:
            location = shape.members[member].serialization.get("location")
            wire = shape.members[member].serialization.get("name", member)
            if location == "querystring":
                required_query.append(wire)
            elif location == "header":
                required_headers.append(wire)
        specificity = 1000 * len(literal_query) + 100 * (len(required_query) + len(required_headers)) + literal
        routes.routes.append(
            _Route(
                name,
                op.http.get("method", "POST"),
                pattern,
                literal_query,
                tuple(required_query),
                tuple(required_headers),
                specificity,
            )
        )
    return routes


def operation_for(
    service: str, method: str, path: str, query: dict[str, list[str]], headers: Any, form: Any
) -> tuple[str, dict[str, str]]:
    """The operation name (and URI labels for rest protocols); "" when the request names none."""
    model = service_model(service)
    protocol = model.protocol
    if path.startswith("/service/") and "/operation/" in path:  # smithy-rpc-v2-cbor, whatever the default
        return path.rsplit("/operation/", 1)[1], {}
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1], {}
    if protocol in ("rest-json", "rest-xml"):
        return rest_routes(service).match(method, path, query, headers)
    action = (query.get("Action") or [None])[0] or (form.get("Action") if form else None)
    return str(action or ""), {}


def operation_model(service: str, operation: str) -> OperationModel | None:
    model = service_model(service)
    return model.operation_model(operation) if operation in model.operation_names else None
