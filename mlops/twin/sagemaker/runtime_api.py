"""The SageMaker runtime API (InvokeEndpoint), mounted on the twin's one URL.

``POST /endpoints/{name}/invocations``, signed for ``sagemaker``: what boto3's
``sagemaker-runtime`` client and the AWS CLI send when ``AWS_ENDPOINT_URL`` points at
the twin. Errors use the rest-json shape the client parses into ``ModelError`` /
``ValidationError``. A payload over the 6 MB limit is refused before it is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from mlops.twin.sagemaker.serving import EndpointRuntime, InvokeError

MAX_PAYLOAD = 6 * 1024 * 1024  # InvokeEndpoint's payload limit
HEADER = "HTTP_X_AMZN_SAGEMAKER_"


class RuntimeApi:
    def __init__(self, runtime: EndpointRuntime) -> None:
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        parts = environ.get("PATH_INFO", "").strip("/").split("/")
        if environ.get("REQUEST_METHOD") != "POST" or len(parts) != 3 or parts[2] != "invocations":
            return _error(start_response, InvokeError(404, "UnknownOperationException", "unknown runtime operation"))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_PAYLOAD:
            error = InvokeError(413, "ValidationError", f"Request payload is {length} bytes; the limit is 6 MB.")
            return _error(start_response, error, close=True)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            out, out_type, variant = self.runtime.invoke(
                unquote(parts[1]),
                body,
                environ.get("CONTENT_TYPE") or "application/octet-stream",
                environ.get("HTTP_ACCEPT") or "application/json",
                target_variant=environ.get(HEADER + "TARGET_VARIANT"),
                inference_id=environ.get(HEADER + "INFERENCE_ID"),
            )
        except InvokeError as exc:
            return _error(start_response, exc)
        start_response(
            "200 OK",
            [
                ("Content-Type", out_type),
                ("Content-Length", str(len(out))),
                ("x-Amzn-Invoked-Production-Variant", variant),
            ],
        )
        return [out]


def _error(start_response: Callable[..., Any], exc: InvokeError, *, close: bool = False) -> list[bytes]:
    body = json.dumps({"message": exc.message, **exc.extra}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("x-amzn-ErrorType", f"{exc.error_type}:"),
    ]
    if close:  # the unread body is still on the socket
        headers.append(("Connection", "close"))
    start_response(f"{exc.status} Error", headers)
    return [body]
