"""Read SageMaker data capture (JSON Lines) back into feature columns and predictions.

Each line is one request: ``captureData.endpointInput`` / ``endpointOutput`` with
``data`` in the observed content type (CSV or JSON, or base64 for anything else) and
``eventMetadata.inferenceId`` when the caller sent one. Inputs follow the serving
contract of ``pipelines/inference.py``: CSV rows with or without a header, or JSON
``{"instances": [...]}`` / a list / one object.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CapturedRequest:
    inference_id: str | None
    rows: list[dict[str, Any]]  # feature name -> raw value
    predictions: list[Any] = field(default_factory=list)  # label or value per row


def _payload(part: dict[str, Any]) -> tuple[str, str]:
    data = part.get("data", "")
    if part.get("encoding") == "BASE64":
        data = base64.b64decode(data).decode("utf-8", errors="replace")
    return str(part.get("observedContentType", "")).split(";")[0].strip().lower(), data


def _csv_rows(text: str, features: list[str]) -> list[dict[str, Any]]:
    lines = [r for r in csv.reader(io.StringIO(text)) if r]
    if not lines:
        return []
    if any(cell.strip() in features for cell in lines[0]):
        header = [c.strip() for c in lines[0]]
        return [dict(zip(header, r, strict=False)) for r in lines[1:]]
    return [dict(zip(features, r, strict=False)) for r in lines]


def _json_rows(text: str, features: list[str]) -> list[dict[str, Any]]:
    doc = json.loads(text)
    items = doc.get("instances", [doc]) if isinstance(doc, dict) else doc
    rows = []
    for item in items:
        rows.append(dict(zip(features, item, strict=False)) if isinstance(item, list) else dict(item))
    return rows


def _predictions(content_type: str, text: str) -> list[Any]:
    if "json" in content_type:
        doc = json.loads(text)
        preds = doc.get("predictions", []) if isinstance(doc, dict) else doc
        return [p.get("label", p.get("value")) if isinstance(p, dict) else p for p in preds]
    return [line.split(",")[0] for line in text.splitlines() if line.strip()]


def parse_lines(lines: Iterable[str], features: list[str]) -> tuple[list[CapturedRequest], int]:
    """Captured requests from JSON Lines; the second value counts lines that could not be read."""
    requests, unreadable = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            data = record["captureData"]
            rows: list[dict[str, Any]] = []
            if "endpointInput" in data:
                ctype, text = _payload(data["endpointInput"])
                rows = _json_rows(text, features) if "json" in ctype else _csv_rows(text, features)
            preds: list[Any] = []
            if "endpointOutput" in data:
                preds = _predictions(*_payload(data["endpointOutput"]))
            requests.append(CapturedRequest(record.get("eventMetadata", {}).get("inferenceId"), rows, preds))
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    return requests, unreadable


def columns(requests: Iterable[CapturedRequest], features: list[str]) -> dict[str, list[Any]]:
    """Feature name -> every captured value, as numbers where they parse."""
    out: dict[str, list[Any]] = {f: [] for f in features}
    for req in requests:
        for row in req.rows:
            for f in features:
                value = row.get(f)
                if isinstance(value, str):
                    value = value.strip()
                    with contextlib.suppress(ValueError):
                        value = float(value) if value else None
                out[f].append(value)
    return out


# -- reading capture and ground truth from S3 (shared by the monitor and the retrain) ---------
GROUND_TRUTH_PREFIX = "ground-truth"


def list_objects(s3: Any, bucket: str, prefix: str, since: float = 0.0) -> list[dict[str, Any]]:
    """Objects under ``prefix`` modified after ``since`` (epoch seconds), oldest first."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [o for o in page.get("Contents", []) if o["LastModified"].timestamp() > since]
    return sorted(found, key=lambda o: (o["LastModified"], o["Key"]))


def read_lines(s3: Any, bucket: str, key: str) -> list[str]:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace").splitlines()


def read_ground_truth(s3: Any, bucket: str, model: str, target: str) -> tuple[dict[str, str], list[str], list[str]]:
    """Labels uploaded under ``ground-truth/<model>/`` (CSV with ``inference_id`` and the target column).

    Returns inference id -> label (later files win), one problem line per unusable file,
    and the keys of the files whose labels were read.
    """
    labels: dict[str, str] = {}
    problems: list[str] = []
    used: list[str] = []
    for obj in list_objects(s3, bucket, f"{GROUND_TRUTH_PREFIX}/{model}/"):
        reader = csv.DictReader(io.StringIO("\n".join(read_lines(s3, bucket, obj["Key"]))))
        if not reader.fieldnames or "inference_id" not in reader.fieldnames or target not in reader.fieldnames:
            problems.append(f"{obj['Key']}: needs columns inference_id and {target}, has {reader.fieldnames}")
            continue
        used.append(obj["Key"])
        for row in reader:
            labels[row["inference_id"]] = row[target]
    return labels, problems, used
