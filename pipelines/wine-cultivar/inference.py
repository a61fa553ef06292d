"""wine-cultivar's own serving handlers for the XGBoost framework container (script mode).

Requests: ``text/csv`` (rows of the features in order, or a header row naming them first) or
``application/json`` (``{"instances": [{feature: value, ...}, ...]}``). Responses: ``application/json``
``{"predictions": [{"label": 1, "probabilities": {"0": 0.1, "1": 0.8, "2": 0.1}}, ...]}`` (the platform's
prediction shape: its evaluation, monitoring and the gate read it) or ``text/csv`` (``label,p0,p1,p2``).
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pandas as pd
import xgboost as xgb

_FEATURES: list[str] = []  # input_fn gets no model: model_fn keeps the feature order here


def model_fn(model_dir: str) -> dict:
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "xgboost-model.json"))
    with open(os.path.join(model_dir, "model-info.json")) as f:
        info = json.load(f)
    _FEATURES[:] = info["features"]
    return {"booster": booster, "features": info["features"], "classes": info["classes"]}


def _number(cell: object) -> float:
    text = str(cell).strip()
    return float(text) if text not in ("", "nan", "NaN") else np.nan


def input_fn(body: str | bytes, content_type: str) -> pd.DataFrame:
    text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/json":
        payload = json.loads(text)
        rows = payload.get("instances", [payload]) if isinstance(payload, dict) else payload
        if rows and isinstance(rows[0], list):
            frame = pd.DataFrame(rows, columns=_FEATURES)
        else:
            frame = pd.DataFrame.from_records(rows)
    elif kind == "text/csv":
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        if rows and any(cell.strip() in _FEATURES for cell in rows[0]):
            frame = pd.DataFrame(rows[1:], columns=[c.strip() for c in rows[0]])
        else:
            bad = next((r for r in rows if len(r) != len(_FEATURES)), None)
            if bad is not None:
                raise ValueError(f"a text/csv row has {len(bad)} values; expected {len(_FEATURES)}: {_FEATURES}")
            frame = pd.DataFrame(rows, columns=_FEATURES)
    else:
        raise ValueError(f"unsupported content type {content_type!r}; use text/csv or application/json")
    missing = [f for f in _FEATURES if f not in frame.columns]
    if missing:
        raise ValueError(f"missing feature(s): {', '.join(missing)}")
    return frame[_FEATURES].map(_number).astype(float)


def predict_fn(data: pd.DataFrame, model: dict) -> dict:
    proba = model["booster"].predict(xgb.DMatrix(data))
    labels = [model["classes"][i] for i in proba.argmax(axis=1)]
    return {"labels": labels, "probabilities": proba.tolist(), "classes": model["classes"]}


def output_fn(prediction: dict, accept: str) -> tuple[str, str]:
    classes = prediction["classes"]
    rows = zip(prediction["labels"], prediction["probabilities"], strict=True)
    kind = (accept or "application/json").split(",")[0].split(";")[0].strip().lower()
    if kind in ("text/csv", "text/*"):
        lines = [",".join([str(label), *(f"{p:.6g}" for p in proba)]) for label, proba in rows]
        return "\n".join(lines) + "\n", "text/csv"
    records = [
        {"label": label, "probabilities": {str(c): float(p) for c, p in zip(classes, proba, strict=True)}}
        for label, proba in rows
    ]
    return json.dumps({"predictions": records}), "application/json"
