"""The SageMaker runtime API on 127.0.0.1: ``POST /endpoints/{name}/invocations`` and ``/ping``.

boto3's ``sagemaker-runtime`` client talks to it with ``endpoint_url`` (or
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``). Errors use the rest-json shape the client
parses into ``ModelError`` / ``ValidationError`` exceptions.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from mlops.twin.sagemaker.serving import EndpointRuntime, InvokeError

MAX_PAYLOAD = 6 * 1024 * 1024  # InvokeEndpoint's payload limit


def _handler_class(runtime: EndpointRuntime) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its connections
        # headers and body leave in separate writes: with Nagle on, the body would wait for
        # the client's delayed ACK (about 40 ms on Linux) on every response
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, exc: InvokeError) -> None:
            body = json.dumps({"message": exc.message, **exc.extra}).encode()
            self._send(exc.status, body, "application/json", {"x-amzn-ErrorType": f"{exc.error_type}:"})

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._send(200, b"", "text/plain")
            else:
                self._send(404, b'{"message": "not found"}', "application/json")

        def do_POST(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
                self._send(404, b'{"message": "unknown path"}', "application/json")
                return
            if length > MAX_PAYLOAD:
                self._error(
                    InvokeError(413, "ValidationError", f"Request payload is {length} bytes; the limit is 6 MB.")
                )
                return
            try:
                out, out_type, variant = runtime.invoke(
                    unquote(parts[1]),
                    body,
                    self.headers.get("Content-Type", "application/octet-stream"),
                    self.headers.get("Accept", "application/json"),
                    target_variant=self.headers.get("X-Amzn-SageMaker-Target-Variant"),
                    inference_id=self.headers.get("X-Amzn-SageMaker-Inference-Id"),
                )
            except InvokeError as exc:
                self._error(exc)
                return
            self._send(200, out, out_type, {"x-Amzn-Invoked-Production-Variant": variant})

    return Handler


class EndpointServer:
    def __init__(self, runtime: EndpointRuntime, port: int = 0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(runtime))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="endpoints")

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
