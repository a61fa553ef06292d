"""Time through the loop on the local twin, split by stage.

Starts a twin from the synthesized app (synthesizing first if the app changed) and
uploads demo datasets through the S3 API, then reads the executions' histories:

1. upload → validation result, for several sizes: S3 event to execution start (event
   delivery through the rule), the Lambda task, the rest of the state machine. The peer
   is the contract engine called directly on the same file in this process: the floor
   that the twin's plumbing adds to.
2. upload → registered model package → deployed, for the demo model: validation, the
   "Dataset Validated" event to the training execution, each state of the training machine
   (prepare, training job, evaluation job, gate, register, record), then the deployment
   until it has succeeded. The peer is ``pipelines/train.py`` run directly on the same data,
   the floor for the training job.
3. What strictness costs: part 2 runs on two twins in one run, turn about (one upload on
   each, ``--repeat`` times): SageMaker code on the twin's own packages
   (``MLOPS_TWIN_IMAGE_ENV=host``, the baseline: not the image), and on the image
   environments (the default: the image's Python and packages, built once and cached, plus
   what the source dir ships vendored). Target: upload → deployed grows by at most 20%.

    python bench/loop.py [--rows 5000 50000 200000] [--repeat 2] [--train-rows 5000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.generate_data import generate, write_csv  # noqa: E402
from mlops.core.contract import validate_file  # noqa: E402
from mlops.sagemaker_contract import training_env  # noqa: E402
from mlops.settings import model_config  # noqa: E402
from mlops.synth import ensure_synthesized  # noqa: E402
from mlops.twin import control  # noqa: E402
from mlops.twin.sagemaker.images import HOST_MODE_VARIABLE, image_environment, spec_for  # noqa: E402

MODEL = "tumor-classifier"
STRICTNESS_BUDGET = 1.20  # upload → deployed on the image environments, relative to the host's packages


def _ts(value: Any) -> float:
    return datetime.fromisoformat(str(value)).timestamp()


def _stages(execution: dict[str, Any], uploaded_at: float) -> dict[str, float]:
    history = execution["history"]
    start = _ts(execution["start_date"])
    stop = _ts(execution["stop_date"])
    task_start = next(_ts(e["timestamp"]) for e in history if e["type"] == "TaskScheduled")
    task_end = next(_ts(e["timestamp"]) for e in history if e["type"] in ("TaskSucceeded", "TaskFailed"))
    return {
        "event": start - uploaded_at,
        "lambda": task_end - task_start,
        "machine": (stop - start) - (task_end - task_start),
        "total": stop - uploaded_at,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000, 50_000, 200_000])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=5_000)
    args = parser.parse_args(argv)

    cdk_out = ROOT / "cdk.out"
    ensure_synthesized(ROOT, cdk_out)
    contract = model_config(MODEL).dataset
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "twin"
        # the clock runs fast only for Wait states and schedules; Lambdas and jobs take real time
        handle = control.start(cdk_out, workdir, port=0, time_scale=0.01)
        try:
            s3 = handle.client()
            bucket = handle.bucket("incoming")
            rows_out = []
            for rows in args.rows:
                path = write_csv(generate(MODEL, "good", rows, seed=5), Path(tmp) / f"bench-{rows}.csv")
                direct = statistics.median(_direct(path, contract) for _ in range(args.repeat))
                samples = []
                for i in range(args.repeat):
                    # each good upload also trains (and deploys): start every measurement on an idle twin
                    _settle(workdir)
                    key = f"incoming/{MODEL}/bench-{rows}-{i}-{time.time_ns()}.csv"
                    uploaded_at = time.time()
                    s3.upload_file(str(path), bucket, key)
                    (execution,) = control.wait_for_executions(
                        workdir, key, machine="Validation", timeout_s=600, poll_s=0.05
                    )
                    if execution["status"] != "SUCCEEDED":
                        raise SystemExit(f"execution for {key} ended {execution['status']}: {execution.get('error')}")
                    samples.append(_stages(execution, uploaded_at))
                med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                rows_out.append((rows, path.stat().st_size, direct, med))
            # the same on the host's packages, in the same run: what the image environments cost
            training_rows, baseline_rows = _interleaved(handle, cdk_out, Path(tmp), args.train_rows, args.repeat)
        finally:
            control.stop(workdir)

    header = (
        "| rows | MB | engine alone (s) | S3 event → execution (s) | Lambda task (s) "
        "| rest of machine (s) | upload → result (s) |"
    )
    lines = [header, "|" + "---|" * 7]
    for rows, size, direct, med in rows_out:
        lines.append(
            f"| {rows:,} | {size / 1e6:.1f} | {direct:.3f} | {med['event']:.3f} | {med['lambda']:.3f} "
            f"| {med['machine']:.3f} | {med['total']:.3f} |"
        )
    table = "\n".join(lines)
    command = "python bench/loop.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    print(f"`{command.strip()}` on {machine}")
    print(f"median of {args.repeat} runs per size; twin on 127.0.0.1, peer = contract engine called directly")
    print(table)
    direct_train = statistics.median(_direct_training(args.train_rows) for _ in range(args.repeat))
    baseline = dict(baseline_rows)
    train_table = "\n".join(
        [
            "| stage | host packages, s (baseline) | image environments, s | change |",
            "|---|---:|---:|---:|",
            *(
                f"| {stage} | {baseline.get(stage, float('nan')):.2f} | {seconds:.2f} | "
                f"{_change(baseline.get(stage), seconds)} |"
                for stage, seconds in training_rows
            ),
            f"| peer: train.py run directly on the same data (host) | {direct_train:.2f} | | |",
        ]
    )
    image = image_environment(spec_for("sklearn", "1.9-0"))
    before, after = baseline[DEPLOYED], dict(training_rows)[DEPLOYED]
    ok = after <= before * STRICTNESS_BUDGET
    verdict = (
        f"- {'PASS' if ok else 'FAIL'}: upload → deployed on the image environments {after:.2f} s vs "
        f"{before:.2f} s on the host's packages: {after / before - 1:+.0%} (budget +{STRICTNESS_BUDGET - 1:.0%})"
    )
    note = (
        f"SageMaker code on {image.describe()} (environments cached before the run), "
        "against the twin's own venv; both twins run the same synthesized app, model-server workers included."
    )
    print(f"\nupload → deployed ({args.train_rows:,} rows of {MODEL}), median of {args.repeat}")
    print(train_table)
    print(verdict)
    out = ROOT / "bench" / "results" / "loop.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        f"`{command.strip()}`\n\n{machine}; datasets: {MODEL} demo data ({', '.join(f'{r:,}' for r in args.rows)} "
        f"rows for validation, {args.train_rows:,} for training). No memory target here.\n\n"
        f"# upload → validation result on the twin\n\n{table}\n\n"
        f"# upload → deployed ({args.train_rows:,} rows of {MODEL})\n\n{note}\n\n{train_table}\n\n{verdict}\n"
        "The peer train.py runs on prepare's split of the same rows (same fractions and seed), as the job does.\n"
    )
    return 0 if ok else 1


DEPLOYED = "upload → deployed (total)"


def _change(before: float | None, after: float) -> str:
    return f"{after / before - 1:+.0%}" if before else ""


def _interleaved(
    image_twin: control.TwinHandle, cdk_out: Path, tmp: Path, rows: int, repeat: int
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Part 2 on the image environments and on a second twin whose SageMaker code runs on the twin's own
    packages, turn about (image, host, image, host, ...): a change in the shared machine's load hits both
    alike, where one twin after the other measured the load as much as the environments."""
    workdir = tmp / "twin-host-packages"
    os.environ[HOST_MODE_VARIABLE] = "host"  # the twin's process inherits it
    try:
        host_twin = control.start(cdk_out, workdir, port=0, time_scale=0.01)
    finally:
        os.environ.pop(HOST_MODE_VARIABLE)
    try:
        # the image twin's Lambdas and endpoint were warmed by part 1's uploads: warm these the same way
        _samples(host_twin, tmp, rows, 1)
        image: list[dict[str, float]] = []
        host: list[dict[str, float]] = []
        for _ in range(repeat):
            image += _samples(image_twin, tmp, rows, 1)
            host += _samples(host_twin, tmp, rows, 1)
        return _medians(image), _medians(host)
    finally:
        control.stop(workdir)


def _medians(samples: list[dict[str, float]]) -> list[tuple[str, float]]:
    return [(stage, statistics.median(s[stage] for s in samples)) for stage in samples[0]]


def _spans(execution: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """State name → (entered, exited) from an execution's history."""
    entered: dict[str, float] = {}
    spans = {}
    for event in execution["history"]:
        if event["type"].endswith("StateEntered"):
            entered[event["stateEnteredEventDetails"]["name"]] = _ts(event["timestamp"])
        elif event["type"].endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            spans[name] = (entered.get(name, _ts(event["timestamp"])), _ts(event["timestamp"]))
    return spans


TRAINING_STAGES = {
    "PrepareTraining": "prepare: split, champion, lock (Lambda)",
    "TrainModel": "training job (train.py under the SageMaker contract)",
    "EvaluateModel": "evaluation job (evaluate.py)",
    "ApplyGate": "gate (Lambda)",
    "RegisterModel": "register package + lineage (Lambda)",
    "RecordOutcome": "record run report (Lambda)",
}


def _samples(handle: control.TwinHandle, tmp: Path, rows: int, repeat: int) -> list[dict[str, float]]:
    """``repeat`` uploads through to deployment, one at a time: each one's seconds by stage."""
    samples: list[dict[str, float]] = []
    path = write_csv(generate(MODEL, "good", rows, seed=9), tmp / f"train-{rows}.csv")
    for i in range(repeat):
        _settle(handle.workdir)  # one training per model at a time: let the previous ones finish
        key = f"incoming/{MODEL}/train-{rows}-{i}-{time.time_ns()}.csv"
        deployed_before = {e["name"] for e in control.load_executions(handle.workdir, "Deploy")}
        uploaded_at = time.time()
        handle.client().upload_file(str(path), handle.bucket("incoming"), key)
        (validation,) = control.wait_for_executions(handle.workdir, key, machine="Validation", timeout_s=600)
        version = validation["output"]["dataset_version"]
        trainings = control.wait_for_executions(handle.workdir, version, machine="Training", timeout_s=900)
        trained = [t for t in trainings if "TrainModel" in _spans(t)]
        if len(trained) != 1:
            found = [(t["name"], t["status"], list(_spans(t))[-1:]) for t in trainings]
            raise SystemExit(f"expected one training of {version}, found {found}")
        training = trained[0]
        if training["status"] != "SUCCEEDED":
            raise SystemExit(f"training for {key} ended {training['status']}: {training.get('cause')}")
        spans = _spans(training)
        # the event leaves with PublishDatasetValidated, before the validation machine's last state
        published = _spans(validation).get("PublishDatasetValidated", (0.0, _ts(validation["stop_date"])))[1]
        sample = {
            "upload → validation result": _ts(validation["stop_date"]) - uploaded_at,
            "Dataset Validated event → training starts": _ts(training["start_date"]) - published,
        }
        sample.update({label: spans[s][1] - spans[s][0] for s, label in TRAINING_STAGES.items() if s in spans})
        sample["upload → registered (total)"] = _ts(training["stop_date"]) - uploaded_at
        deploy = _new_deployment(handle.workdir, deployed_before)
        if deploy["status"] != "SUCCEEDED":
            raise SystemExit(f"deployment for {key} ended {deploy['status']}: {deploy.get('cause')}")
        sample["registered → deployed (deploy machine)"] = _ts(deploy["stop_date"]) - _ts(training["stop_date"])
        sample[DEPLOYED] = _ts(deploy["stop_date"]) - uploaded_at
        samples.append(sample)
    return samples


def _new_deployment(workdir: Path, before: set[str], timeout_s: float = 900) -> dict[str, Any]:
    """The deploy execution started after ``before`` was taken, once it has ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        new = [e for e in control.load_executions(workdir, "Deploy") if e["name"] not in before]
        if new and new[0]["status"] != "RUNNING":
            return new[0]
        if time.monotonic() > deadline:
            raise SystemExit("no deployment ended")
        time.sleep(0.2)


def _settle(workdir: Path, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while any(e["status"] == "RUNNING" for e in control.load_executions(workdir)):
        if time.monotonic() > deadline:
            raise SystemExit("the twin did not settle")
        time.sleep(0.5)


def _direct_training(rows: int) -> float:
    """pipelines/train.py in a fresh process on the same channels the twin's job gets: the same data,
    split by prepare's own ``split_file`` with the config's fractions and seed (train ~70%, validation
    ~15%), so the peer fits and scores exactly the rows the training job does."""
    import subprocess

    from mlops.services.training import split_file

    with tempfile.TemporaryDirectory() as tmp:
        ml = Path(tmp) / "opt" / "ml"
        source = write_csv(generate(MODEL, "good", rows, seed=9), Path(tmp) / "data.csv")
        split = model_config(MODEL).training.split
        split_file(source, ml / "input" / "data", split.validation, split.test, split.seed)
        (ml / "input" / "data" / "config").mkdir(parents=True)
        (ml / "input" / "data" / "config" / "model-config.json").write_text(model_config(MODEL).model_dump_json())
        (ml / "model").mkdir()
        env = {**os.environ, **training_env(ml, ["train", "validation", "config"])}
        started = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "pipelines" / "train.py")], env=env, check=True, capture_output=True)
        return time.perf_counter() - started


def _direct(path: Path, contract: Any) -> float:
    started = time.perf_counter()
    result = validate_file(path, contract)
    assert result.passed, result.summary()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
