"""The twin's one front door: every AWS API it serves, at one URL on 127.0.0.1.

Each request goes through the same steps, in one place:

1. **identify**: service (signing name), operation (botocore's model), caller
   (access key -> principal), see :mod:`.routing`;
2. **authorize**: the :class:`~mlops.twin.iam.Authorizer` decides, for every service;
   then the service's own request rules, when it has some (SageMaker's, see
   :mod:`mlops.twin.sagemaker.rules`), refuse what the service would refuse;
3. **serve**: a service mounted as a :class:`~mlops.twin.api.ServiceApi` gets parsed
   parameters and returns a dict that is serialized in the service's protocol
   (:mod:`.wire`); a service mounted as a WSGI app (moto's S3 and SageMaker, the
   endpoint runtime) gets the request as it came, body still on the socket, so large
   uploads and downloads stream.

An operation of a known service that nothing serves gets an AWS-shaped
``NotImplemented`` error naming it; an unknown service gets the same, never an empty
default.
"""

from __future__ import annotations

import io
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.datastructures import MultiDict
from werkzeug.serving import ThreadedWSGIServer

from mlops.twin.api import ApiError, Call, ServiceApi, not_implemented
from mlops.twin.gateway import routing, wire
from mlops.twin.iam import Authorizer, Principals, Unenforced

log = logging.getLogger("mlops.twin.gateway")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Check = Callable[[str, dict[str, Any]], None]  # (operation, parameters); raises ApiError
# Bodies of API calls (not S3 objects) above this are refused before they are read.
MAX_API_BODY = 16 * 1024 * 1024
STREAMED = {"s3"}  # services whose bodies stay on the socket for the mounted app


class _Server(ThreadedWSGIServer):
    request_queue_size = 1024  # a listen backlog that does not drop connections under load
    daemon_threads = True


class Gateway:
    def __init__(self, principals: Principals, *, port: int = 0, authorizer: Authorizer | None = None) -> None:
        self.principals = principals
        self.authorizer: Authorizer = authorizer or Unenforced()
        self.port = port
        self._apis: dict[str, ServiceApi] = {}
        self._wsgi: dict[str, WsgiApp] = {}
        self._checks: dict[str, Check] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- mounting -----------------------------------------------------------------------
    def mount_api(self, api: ServiceApi) -> None:
        self._apis[api.service] = api

    def mount_wsgi(self, service: str, app: WsgiApp, check: Check | None = None) -> None:
        """Serve ``service`` with ``app``; ``check`` sees every request after IAM, before the app."""
        self._wsgi[service] = app
        if check is not None:
            self._checks[service] = check

    @property
    def services(self) -> list[str]:
        return sorted({*self._apis, *self._wsgi})

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("gateway not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        try:
            self._server = _Server("127.0.0.1", self.port, self, handler=MotoRequestHandler)
        except OSError as exc:
            raise RuntimeError(
                f"port {self.port} on 127.0.0.1 is in use (another twin? `mlops local down`, or pass --port): {exc}"
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="gateway")
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the request path ------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        headers = _Headers(environ)
        sig = routing.signature(headers, query)
        service = routing.service_for(sig, path)
        principal = self.principals.principal(sig.access_key)
        try:
            if not service:
                raise ApiError(
                    "NotImplemented",
                    f"the local twin does not serve the service signed as {sig.signing_name!r}",
                    501,
                )
            body = b""
            if service not in STREAMED:
                body = _read_body(environ)
            form = _form(environ, body)
            operation, labels = routing.operation_for(service, environ["REQUEST_METHOD"], path, query, headers, form)
            op = routing.operation_model(service, operation) if operation else None
            if op is None:
                raise ApiError(
                    "InvalidAction" if service != "s3" else "NotImplemented",
                    f"{service}: no operation matches {environ['REQUEST_METHOD']} {path}",
                    400 if service != "s3" else 501,
                )
            api = self._apis.get(service)
            if api is not None:
                return self._serve_api(api, op, environ, start_response, headers, body, query, form, labels, principal)
            app = self._wsgi.get(service)
            if app is None:
                raise not_implemented(service, operation)
            params = self._light_params(op, environ, headers, body, query, form, labels)
            self.authorizer.authorize(principal, service, operation, params)
            check = self._checks.get(service)
            if check is not None:
                check(operation, params)
            environ["mlops.twin.operation"], environ["mlops.twin.labels"] = operation, labels
            return app(environ, start_response)
        except ApiError as exc:
            return self._error(service or "s3", environ, start_response, headers, path, exc)

    def _serve_api(
        self,
        api: ServiceApi,
        op: Any,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        headers: Any,
        body: bytes,
        query: dict[str, list[str]],
        form: MultiDict | None,
        labels: dict[str, str],
        principal: str,
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        protocol = wire.protocol_of(op, headers, path)
        if op.name not in api.operations():
            result: dict[str, Any] | ApiError = not_implemented(api.service, op.name)
        else:
            try:
                params = wire.parse(
                    op,
                    protocol,
                    method=environ["REQUEST_METHOD"],
                    path=path,
                    headers=headers,
                    body=body,
                    values=_values(query, form),
                    url_params=labels,
                )
                self.authorizer.authorize(principal, api.service, op.name, params)
                result = api.handle(Call(api.service, op.name, params, principal, dict(headers.items())))
            except ApiError as exc:
                result = exc
            except Exception as exc:  # a bug in a twin service: say so, as AWS says InternalFailure
                log.exception("%s:%s failed", api.service, op.name)
                result = ApiError("InternalFailure", f"the twin failed to serve {op.name}: {exc}", 500)
        status, out_headers, data = wire.serialize(op, protocol, result)
        return _respond(start_response, status, out_headers, data)

    @staticmethod
    def _light_params(
        op: Any,
        environ: dict[str, Any],
        headers: Any,
        body: bytes,
        query: dict[str, list[str]],
        form: MultiDict | None,
        labels: dict[str, str],
    ) -> dict[str, Any]:
        """Parameters for authorization of a pass-through call, without reading a streamed body."""
        protocol = op.service_model.protocol
        if protocol in ("rest-xml", "rest-json") and not body:
            params: dict[str, Any] = dict(labels)
            for name, member in op.input_shape.members.items() if op.input_shape else []:
                wire_name = member.serialization.get("name", name)
                location = member.serialization.get("location")
                if location == "querystring" and wire_name in query:
                    params[name] = query[wire_name][0]
                elif location == "header" and headers.get(wire_name) is not None:
                    params[name] = headers.get(wire_name)
            return params
        try:
            return wire.parse(
                op,
                wire.protocol_of(op, headers, environ.get("PATH_INFO", "/")),
                method=environ["REQUEST_METHOD"],
                path=environ.get("PATH_INFO", "/"),
                headers=headers,
                body=body,
                values=_values(query, form),
                url_params=labels,
            )
        except Exception:  # the service itself will answer the malformed request
            return dict(labels)

    def _error(
        self,
        service: str,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        headers: Any,
        path: str,
        exc: ApiError,
    ) -> Iterable[bytes]:
        model = routing.service_model(service) if service else None
        if model is None or not model.operation_names:
            return _respond(start_response, exc.status, {"Content-Type": "text/plain"}, exc.message.encode())
        op = model.operation_model(model.operation_names[0])
        protocol = wire.protocol_of(op, headers, path)
        if protocol == "rest-xml":  # S3's error body
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{exc.code}</Code><Message>{_xml_escape(exc.message)}</Message>"
                f"<Resource>{_xml_escape(path)}</Resource><RequestId>twin</RequestId></Error>"
            ).encode()
            return _respond(start_response, exc.status, {"Content-Type": "application/xml"}, body)
        _status, out_headers, data = wire.serialize(op, protocol, exc)
        return _respond(start_response, exc.status, out_headers, data)


class _Headers:
    """Case-insensitive read access to the request headers in a WSGI environ."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        upper = name.upper().replace("-", "_")
        return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper

    def get(self, name: str, default: Any = None) -> Any:
        return self._environ.get(self._key(name), default)

    def __getitem__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        found = []
        for key, value in self._environ.items():
            if key.startswith("HTTP_"):
                found.append((key[5:].replace("_", "-").title(), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                found.append((key.replace("_", "-").title(), value))
        return found

    def keys(self) -> list[str]:
        return [k for k, _ in self.items()]

    def __iter__(self) -> Any:
        return iter(self.keys())


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_API_BODY:
        raise ApiError(
            "RequestEntityTooLarge", f"request body of {length} bytes is over the {MAX_API_BODY} byte limit", 413
        )
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)  # the mounted app reads it again
    return body


def _form(environ: dict[str, Any], body: bytes) -> MultiDict | None:
    if "x-www-form-urlencoded" not in (environ.get("CONTENT_TYPE") or ""):
        return None
    return MultiDict(urllib.parse.parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _values(query: dict[str, list[str]], form: MultiDict | None) -> MultiDict:
    values = MultiDict([(k, v) for k, vs in query.items() for v in vs])
    if form is not None:
        for key, value in form.items(multi=True):
            values.add(key, value)
    return values


def _respond(start_response: Callable[..., Any], status: int, headers: dict[str, str], body: bytes) -> list[bytes]:
    out = [(k, v) for k, v in headers.items() if k.lower() != "content-length"]
    out.append(("Content-Length", str(len(body))))
    start_response(f"{status} {_REASONS.get(status, 'Error')}", out)
    return [body]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}
