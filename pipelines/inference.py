"""SageMaker scikit-learn serving handlers: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``.

Requests (``ContentType``):

- ``text/csv``: one row per line. With a header row (any cell naming a feature or the
  target), columns are matched by name and extra columns (ids, the target) are dropped;
  without one, each row holds exactly the features in the model's order
  (``model-metadata.json`` ``features``).
- ``application/json``: ``{"instances": [{feature: value, ...}, ...]}``, a list of such
  objects, or one object; rows may also be lists in feature order.

Responses (``Accept``; ``*/*`` or none means JSON):

- ``application/json``: ``{"predictions": [{"label": 1, "probabilities": {"0": 0.1, "1": 0.9}}, ...]}``
  for classifiers (``probabilities`` keyed by the class as a string), ``{"value": 151.2}`` for
  regression.
- ``text/csv``: one line per row: ``label,p(class 1),p(class 2),...`` (classes in
  ``model-metadata.json`` order) or ``value``.

Bad requests raise ``ValueError`` with a message naming the problem (unsupported content
type, missing features, non-numeric values), which the serving container reports.
``output_fn`` returns ``(body, content_type)``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import vendored  # noqa: F401  (before mlops: puts vendor/, what the image lacks, on sys.path)

from mlops.core import features as F

CSV, JSON = "text/csv", "application/json"


class ServedModel:
    """The fitted pipeline and its metadata.

    A plain class, not a dataclass: the serving host may import this file without
    registering it in ``sys.modules`` (the twin does), which dataclasses cannot handle.
    """

    def __init__(self, pipeline: Any, metadata: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.metadata = metadata

    @property
    def features(self) -> list[F.Feature]:
        return F.features_from_metadata(self.metadata)

    @property
    def classes(self) -> list[Any] | None:
        return self.metadata.get("classes")


# input_fn gets no model argument but needs the feature list: model_fn keeps the model it loaded
# here. A serving process loads one model (the twin imports this module afresh per model).
_LOADED: ServedModel | None = None


def model_fn(model_dir: str) -> ServedModel:
    global _LOADED
    pipeline, metadata = F.load_artifacts(model_dir)
    _LOADED = ServedModel(pipeline, metadata)
    return _LOADED


def _current() -> ServedModel:
    if _LOADED is None:
        raise ValueError("no model loaded: model_fn must run before input_fn")
    return _LOADED


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _text(body: str | bytes | bytearray) -> str:
    if isinstance(body, (bytes, bytearray)):
        try:
            return bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError("request body is not UTF-8 text") from None
    return body


def _csv_frame(text: str, names: list[str], known: set[str]) -> pd.DataFrame | list[list[str]]:
    """A frame of the named columns when the request has a header row; else the rows, checked for width."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError("empty text/csv request: send one row per line")
    if any(cell.strip() in known for cell in rows[0]):
        header = [cell.strip() for cell in rows[0]]
        return pd.DataFrame(rows[1:], columns=header).replace("", np.nan)
    wrong = [i + 1 for i, row in enumerate(rows) if len(row) != len(names)]
    if wrong:
        raise ValueError(
            f"text/csv row {wrong[0]} has {len(rows[wrong[0] - 1])} values; without a header row each row needs "
            f"the {len(names)} features in order: {', '.join(names)}"
        )
    return rows


def _json_frame(text: str, names: list[str]) -> pd.DataFrame:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"application/json request is not valid JSON: {exc}") from None
    if isinstance(payload, dict):
        payload = payload.get("instances", [payload])
    if not isinstance(payload, list) or not payload:
        raise ValueError('application/json request needs {"instances": [{...}, ...]}, a list of objects or an object')
    if all(isinstance(item, list) for item in payload):
        bad = next((i for i, item in enumerate(payload) if len(item) != len(names)), None)
        if bad is not None:
            raise ValueError(
                f"instance {bad} has {len(payload[bad])} values; expected {len(names)}: {', '.join(names)}"
            )
        return pd.DataFrame(payload, columns=names)
    if not all(isinstance(item, dict) for item in payload):
        raise ValueError("application/json instances must all be objects (feature: value) or all lists")
    return pd.DataFrame.from_records(payload)


def input_fn(request_body: str | bytes, request_content_type: str) -> pd.DataFrame:
    """The request as a DataFrame of the model's features, coerced to their types."""
    model = _current()
    names = [f.name for f in model.features]
    kind = _media_type(request_content_type)
    if kind not in (CSV, JSON):
        raise ValueError(f"unsupported content type {request_content_type!r}; use {CSV} or {JSON}")
    text = _text(request_body)
    if kind == CSV:
        frame = _csv_frame(text, names, set(names) | {model.metadata.get("target")})
        if isinstance(frame, list):  # headerless rows of the features in order: the fast path
            typed = F.typed_rows(frame, model.features)
            if typed is not None:
                return typed
            frame = pd.DataFrame(frame, columns=names).replace("", np.nan)
    else:
        frame = _json_frame(text, names)
    try:
        return F.prepare_features(frame, model.features)
    except F.DataError as exc:
        raise ValueError(str(exc)) from None


def predict_fn(input_data: pd.DataFrame, model: ServedModel) -> dict[str, Any]:
    predictions, proba = F.predict(model.pipeline, input_data)
    return {
        "problem_type": model.metadata["problem_type"],
        "predictions": F.plain(predictions),
        "probabilities": None if proba is None else proba.tolist(),
        "classes": model.classes,
    }


def _records(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    if prediction["problem_type"] == "regression":
        return [{"value": float(v)} for v in prediction["predictions"]]
    classes, proba = prediction["classes"], prediction["probabilities"]
    out = []
    for i, label in enumerate(prediction["predictions"]):
        record: dict[str, Any] = {"label": label}
        if proba is not None:
            record["probabilities"] = {str(c): float(p) for c, p in zip(classes, proba[i], strict=True)}
        out.append(record)
    return out


def _csv_lines(prediction: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    proba = prediction["probabilities"]
    for i, value in enumerate(prediction["predictions"]):
        writer.writerow([value, *(f"{p:.6g}" for p in proba[i])] if proba is not None else [value])
    return buffer.getvalue()


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[str, str]:
    for candidate in (accept or JSON).split(","):
        kind = _media_type(candidate)
        if kind in (JSON, "*/*", "application/*", ""):
            return json.dumps({"predictions": _records(prediction)}), JSON
        if kind in (CSV, "text/*"):
            return _csv_lines(prediction), CSV
    raise ValueError(f"unsupported accept type {accept!r}; use {JSON} or {CSV}")
