"""A 1 GB CSV whose last line is bad, uploaded through the twin's S3 (issue 16): quarantined within
the validation's timeout, with a report that names the line; the twin's memory stays bounded."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from examples.generate_data import generate, write_csv
from mlops.twin import control

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "tumor-classifier"
SIZE = int(os.environ.get("MLOPS_LARGE_CSV_MB", "1024")) * 1024**2
TWIN_MEMORY_BOUND_MB = 600  # the daemon's peak RSS: moto, the gateway, the engine; not the object


def _big_csv(path: Path) -> int:
    """A CSV of SIZE bytes of valid rows and one bad last line; the number of that line."""
    seed = write_csv(generate(MODEL, "good", 50_000, seed=11), path.with_suffix(".seed.csv"))
    header, *rows = seed.read_text().splitlines()
    body = ("\n".join(rows) + "\n").encode()
    lines = 1
    with path.open("wb") as out:
        out.write(header.encode() + b"\n")
        while out.tell() < SIZE:
            out.write(body)
            lines += len(rows)
        out.write(",".join(["not-a-number"] * len(header.split(","))).encode() + b"\n")
    seed.unlink()
    return lines + 1


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_a_large_csv_with_a_bad_last_line_is_quarantined_naming_the_line(
    twin: control.TwinHandle, tmp_path: Path
) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free < 3 * SIZE:  # the file, the twin's stored copy, the validated copy's work space
        pytest.skip(f"{free / 1024**3:.1f} GB free: a {SIZE / 1024**3:.1f} GB upload needs three times that")
    path = tmp_path / "large.csv"
    bad_line = _big_csv(path)
    key = f"incoming/{MODEL}/large-bad-last-line.csv"
    started = time.monotonic()
    twin.client().upload_file(str(path), twin.bucket("incoming"), key)
    path.unlink()
    (validation,) = control.wait_for_executions(twin.workdir, key, machine="Validation", timeout_s=900)
    took = time.monotonic() - started
    assert validation["status"] == "FAILED" and validation["error"] == "DatasetRejected", validation.get("cause")
    s3, artifacts = twin.client(), twin.bucket("artifacts")
    (report_key,) = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=artifacts, Prefix=f"reports/{MODEL}/")["Contents"]
        if o["Key"].endswith("validation.json")
    ]
    report = json.loads(s3.get_object(Bucket=artifacts, Key=report_key)["Body"].read())
    assert report["status"] == "failed" and report["quarantine_uri"], report.get("quarantine_uri")
    typed = [v for v in report["violations"] if v["rule"] == "type"]
    assert typed and all(f"on line {bad_line})" in v["message"] for v in typed), typed[:2]
    assert took < 900  # within the validate function's 15-minute timeout
    assert _peak_rss_mb(int(twin.state["pid"])) < TWIN_MEMORY_BOUND_MB
