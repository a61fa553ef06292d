"""Upload-to-validation-result time on the local twin, split by stage.

Starts a twin from the synthesized app (synthesizing first if the app changed),
uploads demo datasets of several sizes through the S3 API, and reads each
execution's history to split the time into: S3 event to execution start (event
delivery through the rule), the Lambda task, the rest of the state machine. The peer
is the contract engine called directly on the same file in this process: the floor
that the twin's plumbing adds to.

    python bench/loop.py [--rows 5000 100000 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
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
from mlops.settings import model_config  # noqa: E402
from mlops.synth import ensure_synthesized  # noqa: E402
from mlops.twin import control  # noqa: E402

MODEL = "tumor-classifier"


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
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    cdk_out = ROOT / "cdk.out"
    ensure_synthesized(ROOT, cdk_out)
    contract = model_config(MODEL).dataset
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "twin"
        handle = control.start(cdk_out, workdir, port=0)
        try:
            s3 = handle.client()
            bucket = handle.bucket("incoming")
            rows_out = []
            for rows in args.rows:
                path = write_csv(generate(MODEL, "good", rows, seed=5), Path(tmp) / f"bench-{rows}.csv")
                direct = statistics.median(_direct(path, contract) for _ in range(args.repeat))
                samples = []
                for i in range(args.repeat):
                    key = f"incoming/{MODEL}/bench-{rows}-{i}-{time.time_ns()}.csv"
                    uploaded_at = time.time()
                    s3.upload_file(str(path), bucket, key)
                    (execution,) = control.wait_for_executions(workdir, key, timeout_s=600, poll_s=0.05)
                    if execution["status"] != "SUCCEEDED":
                        raise SystemExit(f"execution for {key} ended {execution['status']}: {execution.get('error')}")
                    samples.append(_stages(execution, uploaded_at))
                med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                rows_out.append((rows, path.stat().st_size, direct, med))
        finally:
            control.stop(workdir)

    header = "| rows | MB | engine alone (s) | S3 event → execution (s) | Lambda task (s) | rest of machine (s) | upload → result (s) |"
    lines = [header, "|" + "---|" * 7]
    for rows, size, direct, med in rows_out:
        lines.append(
            f"| {rows:,} | {size / 1e6:.1f} | {direct:.3f} | {med['event']:.3f} | {med['lambda']:.3f} "
            f"| {med['machine']:.3f} | {med['total']:.3f} |"
        )
    table = "\n".join(lines)
    print(f"median of {args.repeat} runs per size; twin on 127.0.0.1, peer = contract engine called directly")
    print(table)
    out = ROOT / "bench" / "results" / "loop.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"# upload → validation result on the twin\n\n{table}\n")
    return 0


def _direct(path: Path, contract: Any) -> float:
    started = time.perf_counter()
    result = validate_file(path, contract)
    assert result.passed, result.summary()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
