"""One Lambda execution environment of the twin: a Python process that runs one function's handler.

Started by :mod:`mlops.twin.awslambda.runtime` as ``python -I -u -X utf8 <this file>``, by path, so that
nothing of the twin (not even the ``mlops`` package this file sits in) is imported here: the function's
``mlops`` comes from its layer, as in AWS. Only the standard library is used.

Protocol: one JSON document per line. Requests arrive on the original stdin, responses leave on the
original stdout; both are moved to private descriptors at start, then fd 0 reads ``/dev/null`` and fds
1 and 2 both go to the original stderr pipe, which the parent forwards line by line into the function's
log. After each phase the worker flushes and writes a marker line (:data:`MARK` + id) to that log pipe
before it answers, so the parent knows the phase's output is complete.

Requests::

    {"op": "init", "handler": "pkg/mod.func", "sys_path": [...], "hide_roots": [...], "unimportable": null}
    {"op": "invoke", "request_id": "...", "event": ..., "deadline_ms": <epoch ms>, "context": {...}}
"""

from __future__ import annotations

import contextlib
import decimal
import importlib
import importlib.util
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

MARK = "\x1emlops-twin-mark "
_real_time = time.time  # deadlines are real time; the handler may see the twin's (see _twin_clock)


class LambdaContext:
    """The ``context`` argument, with the attributes of the AWS Python runtime's context object."""

    def __init__(self, request_id: str, deadline_ms: float, info: dict[str, Any]) -> None:
        self.function_name: str = info["function_name"]
        self.function_version: str = info["function_version"]
        self.invoked_function_arn: str = info["invoked_function_arn"]
        self.memory_limit_in_mb: int = int(info["memory_limit_in_mb"])
        self.aws_request_id = request_id
        self.log_group_name: str = info["log_group_name"]
        self.log_stream_name: str = info["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - _real_time() * 1000))

    def __repr__(self) -> str:
        return (
            f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r}, "
            f"invoked_function_arn={self.invoked_function_arn!r})"
        )


class _Encoder(json.JSONEncoder):
    """As the AWS Python runtime: Decimals (e.g. from DynamoDB) are numbers."""

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


def _error(error_type: str, message: str, request_id: str | None = None, stack: list[str] | None = None) -> dict:
    body: dict[str, Any] = {"errorMessage": message, "errorType": error_type}
    if request_id is not None:
        body["requestId"] = request_id
    body["stackTrace"] = stack or []
    return body


def _user_stack(exc: BaseException) -> list[str]:
    """The traceback without this file's frames, formatted like the AWS runtime's ``stackTrace``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return traceback.format_list(frames)


def _log_error(error_type: str, message: str, exc: BaseException | None = None) -> None:
    print(f"[ERROR] {error_type}: {message}", file=sys.stderr)
    if exc is not None:
        print("Traceback (most recent call last):", file=sys.stderr)
        for entry in _user_stack(exc):
            sys.stderr.write(entry)


def _max_memory_mb() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return max(1, -(-kb // 1024))


class Worker:
    def __init__(self) -> None:
        # The protocol gets private descriptors (not inherited by subprocesses of the handler).
        self.requests = os.fdopen(os.dup(0), "rb")
        self.responses = os.fdopen(os.dup(1), "wb")
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)  # the handler's stdout and stderr both go to the log pipe
        self.handler: Any = None

    # -- protocol ---------------------------------------------------------------------
    def recv(self) -> dict[str, Any] | None:
        line = self.requests.readline()
        return json.loads(line) if line else None

    def reply(self, mark: str, message: dict[str, Any]) -> None:
        try:
            data = json.dumps(message, cls=_Encoder, allow_nan=True)
        except (TypeError, ValueError, RecursionError) as exc:
            # Only the result can fail to serialise: the rest is built here.
            rid = message.get("request_id")
            body = _error("Runtime.MarshalError", f"Unable to marshal response: {exc}", rid)
            _log_error(body["errorType"], body["errorMessage"])
            message = {k: v for k, v in message.items() if k != "result"} | {"ok": False, "error": body}
            data = json.dumps(message)
        self.mark(mark)
        self.responses.write(data.encode() + b"\n")
        self.responses.flush()

    @staticmethod
    def mark(token: str) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.write(2, f"{MARK}{token}\n".encode())

    # -- phases -----------------------------------------------------------------------
    def init(self, req: dict[str, Any]) -> None:
        started = time.perf_counter()
        _isolate(req["sys_path"], [Path(p) for p in req.get("hide_roots", [])])
        if req.get("unimportable"):  # the twin found code that needs a newer Python than the runtime's
            modname = str(req["handler"]).rsplit(".", 1)[0].replace("/", ".")
            error = _error("Runtime.ImportModuleError", f"Unable to import module '{modname}': {req['unimportable']}")
            _log_error(error["errorType"], error["errorMessage"])
        else:
            error = self._load_handler(str(req["handler"]))
        init_ms = (time.perf_counter() - started) * 1000
        if error is not None:
            self.reply("init", {"ok": False, "error": error, "init_ms": init_ms})
        else:
            self.reply("init", {"ok": True, "init_ms": init_ms})

    def _load_handler(self, handler: str) -> dict[str, Any] | None:
        try:
            modname, fname = handler.rsplit(".", 1)
        except ValueError as exc:
            body = _error("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}")
            _log_error(body["errorType"], body["errorMessage"])
            return body
        modname = modname.replace("/", ".")
        try:
            module = importlib.import_module(modname)
        except SyntaxError as exc:
            body = _error("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {exc}")
            _log_error(body["errorType"], body["errorMessage"], exc)
            return body
        except ImportError as exc:
            body = _error("Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}")
            _log_error(body["errorType"], body["errorMessage"], exc)
            return body
        except Exception as exc:  # an exception raised by the module's top-level code
            body = _error(type(exc).__name__, str(exc), stack=_user_stack(exc))
            _log_error(body["errorType"], body["errorMessage"], exc)
            return body
        func = getattr(module, fname, None)
        if func is None:
            body = _error("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'")
            _log_error(body["errorType"], body["errorMessage"])
            return body
        self.handler = func
        return None

    def invoke(self, req: dict[str, Any]) -> None:
        rid = str(req["request_id"])
        context = LambdaContext(rid, float(req["deadline_ms"]), req["context"])
        started = time.perf_counter()
        try:
            result = self.handler(req["event"], context)
        except Exception as exc:
            duration = (time.perf_counter() - started) * 1000
            body = _error(type(exc).__name__, str(exc), rid, _user_stack(exc))
            _log_error(body["errorType"], body["errorMessage"], exc)
            message = {"ok": False, "error": body}
        else:
            duration = (time.perf_counter() - started) * 1000
            message = {"ok": True, "result": result}
        message |= {"request_id": rid, "duration_ms": duration, "max_memory_mb": _max_memory_mb()}
        self.reply(rid, message)

    def serve(self) -> None:
        while (req := self.recv()) is not None:
            if req["op"] == "init":
                self.init(req)
            elif req["op"] == "invoke":
                self.invoke(req)


def _under(path: str | Path, roots: list[Path]) -> bool:
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return any(resolved == root or root in resolved.parents for root in roots)


def _isolate(front: list[str], hide_roots: list[Path]) -> None:
    """``front`` (function code, then layers) before everything else; nothing from ``hide_roots``.

    ``hide_roots`` is the twin's own project: a plain ``sys.path`` entry for it, or a setuptools
    editable-install finder mapping ``mlops`` into it, would let the host's ``mlops`` stand in for the
    layer's copy (or for none at all, where AWS would fail the import).
    """
    roots = [r.resolve() for r in hide_roots]
    front_set = set(front)
    rest = [p for p in sys.path if p not in front_set and not (p and Path(p).resolve() in roots)]
    sys.path[:] = [*front, *rest]
    for finder in list(sys.meta_path):
        module = sys.modules.get(getattr(finder, "__module__", "") or "")
        mapping = getattr(module, "MAPPING", None)
        if isinstance(mapping, dict) and any(_under(v, roots) for v in mapping.values()):
            sys.meta_path.remove(finder)
    for name, mod in list(sys.modules.items()):
        if name == "__main__":
            continue
        origin = getattr(mod, "__file__", None)
        if origin and _under(origin, roots) and not any(_under(origin, [Path(p)]) for p in front):
            del sys.modules[name]
    importlib.invalidate_caches()


def _twin_clock() -> None:
    """Show the handler the twin's timeline (``mlops/twin/timeshim.py``, loaded by path: stdlib only)."""
    if not os.environ.get("MLOPS_TWIN_CLOCK"):
        return
    spec = importlib.util.spec_from_file_location("_twin_timeshim", Path(__file__).parents[1] / "timeshim.py")
    if spec is None or spec.loader is None:
        return
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    shim.install()


def main() -> None:
    _twin_clock()
    Worker().serve()


if __name__ == "__main__":
    main()
