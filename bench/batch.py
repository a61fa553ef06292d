"""Batch scoring throughput on the twin against the same model's ``predict`` in one process.

Starts the twin from the synthesized app (as ``mlops local up`` does), trains and deploys the
tumor-classifier demo model through the whole loop, then, for each of ``--repeat`` rounds:

1. ``end to end``: upload a CSV of ``--rows`` rows under ``batch/<model>/`` -> the batch state
   machine -> prepare Lambda (feature checks, transform input) -> ``createTransformJob.sync``
   -> finish Lambda (predictions joined with the ids, data capture, report); timed from the
   start of the upload to the report in S3, as ``mlops batch`` waits for it;
2. ``transform``: the batch transform job alone, its ``TransformStartTime`` to
   ``TransformEndTime`` (download, model server start on the image's environment with one
   worker per vCPU, 6 MB mini-batches of lines through ``input_fn`` -> ``predict_fn`` ->
   ``output_fn``, output upload);
3. ``in-process predict``: the same model (its ``model.tar.gz`` from the registry) loaded in this
   process with the host's packages: ``pandas.read_csv`` of the same file, the features coerced
   as ``input_fn`` does (``mlops.core.features.prepare_features``) and the pipeline's
   ``predict_proba``/``predict``: the floor, with no I/O beyond reading the local file.

Prints the command, the machine and the sizes, then the table; writes ``bench/results/batch.md``.

    python bench/batch.py                       # 100k rows, 2 rounds
    python bench/batch.py --rows 20000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import finish  # noqa: E402  (bench/, the script's own directory)

RESULTS = Path(__file__).resolve().parent / "results" / "batch.md"
MODEL = "tumor-classifier"


def deploy(handle: Any, tmp: Path, train_rows: int) -> None:
    from examples.generate_data import generate, write_csv
    from mlops.demo import wait_until
    from mlops.twin import control

    path = write_csv(generate(MODEL, "good", train_rows, seed=1), tmp / "train.csv")
    handle.client().upload_file(str(path), handle.bucket("incoming"), f"incoming/{MODEL}/train.csv")
    done = wait_until(
        lambda: [e for e in control.load_executions(handle.workdir, "Deploy") if e["status"] != "RUNNING"],
        900,
        "the first deployment",
        poll_s=1.0,
    )
    if done[0]["status"] != "SUCCEEDED":
        raise RuntimeError(f"deployment failed: {done[0].get('cause')}")


def score(handle: Any, path: Path, name: str) -> dict[str, Any]:
    """Upload ``path`` as a batch file; the report once it is written, with the timings."""
    from mlops.services.batch import report_location, run_name

    s3, sm = handle.client(), handle.client("sagemaker")
    key = f"batch/{MODEL}/{name}"
    started = time.perf_counter()
    s3.upload_file(str(path), handle.bucket("incoming"), key)
    version = s3.head_object(Bucket=handle.bucket("incoming"), Key=key).get("VersionId")
    report = report_location(handle.bucket("artifacts"), MODEL, run_name(key, version))
    while True:
        try:
            body = s3.get_object(Bucket=report.bucket, Key=report.key)["Body"].read()
            break
        except s3.exceptions.NoSuchKey:
            if time.perf_counter() - started > 1800:
                raise RuntimeError(f"no report at {report.uri} after 30 min") from None
            time.sleep(0.2)
    end_to_end = time.perf_counter() - started
    found = json.loads(body)
    if found["status"] != "scored":
        raise RuntimeError(f"batch run {found['status']}: {found['summary']}")
    job = sm.describe_transform_job(TransformJobName=found["transform_job_name"])
    transform = (job["TransformEndTime"] - job["TransformStartTime"]).total_seconds()
    log = handle.workdir / "sagemaker" / "transform" / found["transform_job_name"] / "job.log"
    detail = log.read_text().strip().splitlines()[-1].removeprefix("[twin] ") if log.is_file() else ""
    rows = found["predicted_rows"]
    return {"end_to_end": end_to_end, "transform": transform, "rows": rows, "report": found, "detail": detail}


def in_process(handle: Any, report: dict[str, Any], path: Path, tmp: Path) -> float:
    """Seconds for the champion's pipeline to predict every row of ``path`` in this process."""
    import pandas as pd

    from mlops.core import features as F

    sm, s3 = handle.client("sagemaker"), handle.client()
    container = sm.describe_model(ModelName=report["model_name"])["PrimaryContainer"]
    bucket, key = container["ModelDataUrl"].removeprefix("s3://").split("/", 1)
    tmp.mkdir(parents=True, exist_ok=True)
    archive = tmp / "model.tar.gz"
    s3.download_file(bucket, key, str(archive))
    model_dir = tmp / "model"
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    pipeline, metadata = F.load_artifacts(model_dir)
    features = F.features_from_metadata(metadata)
    started = time.perf_counter()
    frame = pd.read_csv(path)
    prepared = F.prepare_features(frame[[f.name for f in features]], features)
    predictions, _proba = F.predict(pipeline, prepared)
    seconds = time.perf_counter() - started
    assert len(predictions) == len(frame)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/batch.md")
    args = parser.parse_args(argv)
    command = "python bench/batch.py " + " ".join(argv if argv is not None else sys.argv[1:])

    from examples.generate_data import generate, write_csv
    from mlops.synth import synthesize
    from mlops.twin import control

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "cdk.out"
        print("synthesizing and starting the twin ...", file=sys.stderr, flush=True)
        synthesize(ROOT, out)
        handle = control.start(out, tmp / "twin", port=0, time_scale=0.01)
        try:
            print("training and deploying the model ...", file=sys.stderr, flush=True)
            deploy(handle, tmp, args.train_rows)
            path = write_csv(generate(MODEL, "good", args.rows, seed=5), tmp / "batch.csv")
            size_mb = path.stat().st_size / 1e6
            rounds = []
            for i in range(args.repeat):
                print(f"round {i + 1}: scoring {args.rows:,} rows ...", file=sys.stderr, flush=True)
                run = score(handle, path, f"round-{i + 1}.csv")
                run["in_process"] = in_process(handle, run["report"], path, tmp / f"round-{i + 1}")
                rounds.append(run)
        finally:
            control.stop(tmp / "twin")
    load_end = os.getloadavg()

    def rate(key: str) -> float:
        return statistics.median(args.rows / r[key] for r in rounds)

    lines = [
        f"Machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end.",
        f"Dataset: {args.rows:,} rows x 13 columns of CSV ({size_mb:.1f} MB; the tumor-classifier demo data), "
        f"model trained on {args.train_rows:,} rows (GradientBoosting, config hyperparameters).",
        "",
        "| what | computes | " + " | ".join(f"round {i + 1} (s)" for i in range(len(rounds))) + " | rows/s (median) |",
        "|---|---|" + "---|" * len(rounds) + "---|",
    ]
    rows = {
        "end_to_end": (
            "batch, end to end",
            "upload, prepare Lambda (checks, transform input), transform job, finish Lambda (join, capture, report)",
        ),
        "transform": ("batch transform alone", "model server start + every row through the model's inference.py"),
        "in_process": ("in-process predict", "read_csv + prepare_features + pipeline predict, host packages"),
    }
    for key, (label, what) in rows.items():
        times = " | ".join(f"{r[key]:.2f}" for r in rounds)
        lines.append(f"| {label} | {what} | {times} | {rate(key):,.0f} |")
    lines += ["", *(f"Round {i + 1}'s transform job: {r['detail']}." for i, r in enumerate(rounds))]
    lines += [
        "",
        f"Every run scored {args.rows:,} of {args.rows:,} rows. The transform runs the model as the endpoint does: "
        "the image's environment (its Python and packages), worker processes started for the job, 6 MB mini-batches "
        "of CSV lines parsed by `input_fn` and answered by `output_fn`; the in-process row is the same fitted "
        "pipeline called once on a DataFrame.",
    ]
    report = "\n".join(lines)
    checks = [(f"every round scored all {args.rows:,} rows", all(r["rows"] == args.rows for r in rounds))]
    return finish(
        report, checks, title="Batch scoring throughput", command=command, out=None if args.no_write else RESULTS
    )


if __name__ == "__main__":
    raise SystemExit(main())
