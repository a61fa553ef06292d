"""One model-server worker of the twin's SageMaker endpoint: a process serving one model's handlers.

Started by :mod:`mlops.twin.sagemaker.serving` with the Python of the model's image environment, by path
(only the standard library is used here, nothing of the twin), as the serving container's workers are:
the source dir on ``sys.path``, the entry point (``SAGEMAKER_PROGRAM``) imported by module name, its
``model_fn`` called once with the model directory, then ``input_fn`` -> ``predict_fn`` -> ``output_fn``
for each request.

Protocol over the original stdin/stdout (moved to private descriptors at start; fd 1 then goes to
stderr, the model server's log, so what handlers print cannot corrupt it). Each message is one JSON
header line, followed by ``n`` bytes of body when the header says so::

    -> {"op": "load", "code_dir": ..., "program": "inference.py", "model_dir": ...}
    <- {"ok": true}  |  {"ok": false, "error": "ModuleNotFoundError: No module named 'x'", "trace": "..."}
    -> {"op": "invoke", "content_type": ..., "accept": ..., "n": <body bytes>} <body>
    <- {"ok": true, "content_type": ..., "n": <bytes>} <body>  |  {"ok": false, "error": ..., "trace": ...}
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any

HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")


class Worker:
    def __init__(self) -> None:
        self.requests = os.fdopen(os.dup(0), "rb")
        self.responses = os.fdopen(os.dup(1), "wb")
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        self.module: Any = None
        self.model: Any = None

    def reply(self, header: dict[str, Any], body: bytes = b"") -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        if body:
            header["n"] = len(body)
        self.responses.write(json.dumps(header).encode() + b"\n" + body)
        self.responses.flush()

    def fail(self, exc: BaseException) -> None:
        trace = "".join(traceback.format_exception(exc))
        sys.stderr.write(trace)
        self.reply({"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": trace[-4000:]})

    def load(self, req: dict[str, Any]) -> None:
        try:
            code_dir = req["code_dir"]
            if code_dir not in sys.path:
                sys.path.insert(0, code_dir)
            name = req["program"].removesuffix(".py")
            self.module = importlib.import_module(name)
            missing = [fn for fn in HANDLERS if not callable(getattr(self.module, fn, None))]
            if missing:
                raise AttributeError(f"{req['program']} does not define {', '.join(missing)}")
            self.model = self.module.model_fn(req["model_dir"])
        except BaseException as exc:
            self.fail(exc)
            return
        self.reply({"ok": True})

    def invoke(self, req: dict[str, Any], body: bytes) -> None:
        try:
            try:
                data: str | bytes = body.decode("utf-8")
            except UnicodeDecodeError:
                data = body
            module = self.module
            prediction = module.predict_fn(module.input_fn(data, req["content_type"]), self.model)
            out = module.output_fn(prediction, req["accept"])
            accept = req["accept"]
            if isinstance(out, tuple):  # (body, content type), as the serving toolkit allows
                out, accept = out
            payload = out.encode("utf-8") if isinstance(out, str) else bytes(out)
        except Exception as exc:
            self.fail(exc)
            return
        self.reply({"ok": True, "content_type": accept}, payload)

    def serve(self) -> None:
        while line := self.requests.readline():
            req = json.loads(line)
            body = self.requests.read(req["n"]) if req.get("n") else b""
            if req["op"] == "load":
                self.load(req)
            elif req["op"] == "invoke":
                self.invoke(req, body)


if __name__ == "__main__":
    Worker().serve()
