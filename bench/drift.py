"""Drift computation speed and PSI agreement: this project's drift check against evidently.

Data: the tumor-classifier demo data (``examples/generate_data.py``) at 1M rows, the
``good`` variant as the reference and the ``drifted`` variant as the current data
(written once as parquet under ``bench/.data/``). Each contender runs in its own process,
loads the frames (not timed), then times its work from data in memory:

1. ``profile``: ``mlops.core.profile.profile_frame`` of the reference (done once, at
   validation time in the project; pandas -> polars conversion included);
2. ``compare``: ``mlops.core.drift.compare`` of the current data against that stored
   profile (PSI per feature on the profile's quantile bins, KS for numeric features,
   share of drifted features): what the monitor runs on every schedule;
3. ``evidently``: a Report with ``ValueDrift(method="psi")`` for every feature and
   ``ValueDrift(method="ks")`` for the numeric ones (the same statistics), on the two frames;
4. ``evidently_same_bins``: evidently's PSI on data pre-binned with the profile's edges
   (numeric values replaced by their bin index, declared categorical), so its PSI uses the
   project's bins: this is the run the PSI values are compared on (not a timing contender).

Prints a table and PASS/FAIL per target, and writes ``bench/results/drift.md``.

    python bench/drift.py               # 1M rows
    python bench/drift.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import finish  # noqa: E402  (bench/, the script's own directory)

DATA_DIR = Path(__file__).resolve().parent / ".data"
RESULTS = Path(__file__).resolve().parent / "results" / "drift.md"
MODEL = "tumor-classifier"
PSI_THRESHOLD = 0.2  # configs/tumor-classifier.yaml monitoring.alarms.drift_psi
SPEEDUP = 5.0
# PSI agreement on identical bins: relative 1e-3 (or 1e-9 absolute near zero), and a feature agrees
# only when the two independent computations do. Both keep non-zero shares as they are; they differ
# only on empty bins (the project fills them with 1e-4 and renormalises, evidently with 1e-4 or,
# when the smallest non-zero share is <= 1e-4, with that share / 1e6). A feature with an empty bin
# that the two conventions score differently is reported as a mismatch, with the size of the
# difference and the number of empty bins, never counted as agreeing.
PSI_RTOL, PSI_ATOL = 1e-3, 1e-9
ENGINES = ["profile", "compare", "evidently", "evidently_same_bins"]


def contract() -> Any:
    from mlops.config import load_config

    return load_config(ROOT / "configs" / f"{MODEL}.yaml").dataset


def datasets(rows: int) -> tuple[Path, Path]:
    """Reference (good) and current (drifted) parquet files, written once."""
    from examples.generate_data import generate

    paths = DATA_DIR / f"drift-{rows}-reference.parquet", DATA_DIR / f"drift-{rows}-current.parquet"
    for path, variant, seed in zip(paths, ["good", "drifted"], [1, 2], strict=True):
        if not path.exists():
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            generate(MODEL, variant, rows, seed=seed).to_parquet(path.with_suffix(".tmp"), index=False)
            path.with_suffix(".tmp").rename(path)
    return paths


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the peak covers the timed work only (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _features(spec: Any) -> tuple[list[str], list[str]]:
    from mlops.core.profile import is_numeric

    numeric = [c.name for c in spec.features if is_numeric(c)]
    categorical = [c.name for c in spec.features if not is_numeric(c)]
    return numeric, categorical


def _evidently() -> Any:
    # evidently 0.7 imports pandas.core.dtypes.common.infer_dtype_from_object, which pandas 3
    # removed; it is used only by a data-integrity test this benchmark does not run.
    import pandas as pd
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: pd.api.types.pandas_dtype(dtype).type
    import evidently

    return evidently


def _evidently_report(reference: Any, current: Any, numeric: list[str], categorical: list[str], ks: bool) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    ref = Dataset.from_pandas(reference[numeric + categorical], data_definition=definition)
    cur = Dataset.from_pandas(current[numeric + categorical], data_definition=definition)
    metrics = [ValueDrift(column=n, method="psi", threshold=PSI_THRESHOLD) for n in numeric + categorical]
    if ks:
        metrics += [ValueDrift(column=n, method="ks") for n in numeric]
    snapshot = Report(metrics).run(current_data=cur, reference_data=ref)
    psi, ks_p = {}, {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        (psi if config["method"] == "psi" else ks_p)[config["column"]] = float(metric["value"])
    return psi, ks_p


# -- contenders: each runs in its own process ----------------------------------------------
def child(engine: str, reference_path: Path, current_path: Path, profile_path: Path) -> None:
    import numpy as np
    import pandas as pd
    import polars as pl

    from mlops.core import drift, profile

    if engine.startswith("evidently"):
        _evidently()
        import evidently.metrics  # noqa: F401  (imports are not timed)
    spec = contract()
    numeric, categorical = _features(spec)
    reference = pd.read_parquet(reference_path) if engine != "compare" else None
    current = pd.read_parquet(current_path) if engine != "profile" else None
    stored = json.loads(profile_path.read_text()) if engine in ("compare", "evidently_same_bins") else None
    out: dict[str, Any] = {}
    base_mb = _rss_mb()
    peak_ok = _reset_peak()
    started = time.perf_counter()
    if engine == "profile":
        built = profile.profile_frame(pl.from_pandas(reference), spec)
        out["seconds"] = time.perf_counter() - started
        profile_path.write_text(json.dumps(built))
    elif engine == "compare":
        columns = {name: current[name].to_numpy() for name in numeric + categorical}
        report = drift.compare(stored, columns, PSI_THRESHOLD)
        out["seconds"] = time.perf_counter() - started
        out["psi"] = {f.feature: f.psi for f in report.features}
        out["ks"] = {f.feature: f.ks_statistic for f in report.features if f.ks_statistic is not None}
        out["drifted_share"] = report.drifted_share
    elif engine == "evidently":
        psi, ks_p = _evidently_report(reference, current, numeric, categorical, ks=True)
        out["seconds"] = time.perf_counter() - started
        out["psi"], out["ks_pvalue"] = psi, ks_p
        out["drifted_share"] = sum(v >= PSI_THRESHOLD for v in psi.values()) / len(psi)
    else:  # evidently_same_bins: values replaced by the profile's bin index (same rule as drift.bin_fractions)

        def binned(frame: pd.DataFrame) -> pd.DataFrame:
            out_frame = {}
            for name in numeric:
                values = frame[name].to_numpy(dtype=float)
                inner = np.asarray(stored["features"][name]["bin_edges"][1:-1], dtype=float)
                idx = np.searchsorted(inner, values, side="right").astype(float)
                idx[np.isnan(values)] = np.nan
                out_frame[name] = pd.Series(idx).map(lambda v: v if v != v else f"bin{int(v):02d}")
            for name in categorical:
                out_frame[name] = frame[name].astype(object)
            return pd.DataFrame(out_frame)

        ref_binned, cur_binned = binned(reference), binned(current)
        psi, _ = _evidently_report(ref_binned, cur_binned, [], numeric + categorical, ks=False)
        out["seconds"] = time.perf_counter() - started
        out["psi"] = psi
        # evidently's own bin shares (no zero fill), scored with the project's empty-share floor: isolates
        # the floor convention from the binning (not timed)
        from evidently.legacy.calculations.stattests.utils import get_binned_data
        from evidently.legacy.core import ColumnType

        out["empty_bins"], out["psi_project_floor"] = {}, {}
        for name in numeric + categorical:
            ref_pct, cur_pct = get_binned_data(
                ref_binned[name].dropna(), cur_binned[name].dropna(), ColumnType.Categorical, 10, feel_zeroes=False
            )
            out["empty_bins"][name] = int((ref_pct < drift.EPSILON).sum() + (cur_pct < drift.EPSILON).sum())
            out["psi_project_floor"][name] = drift.psi(ref_pct, cur_pct)
    out["peak_mb"] = _peak_mb() - base_mb if peak_ok else float("nan")
    out["rss_before_mb"] = base_mb
    print(json.dumps(out))


def measure(engine: str, paths: tuple[Path, Path], profile_path: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", engine, "--paths", str(paths[0]), str(paths[1])]
    cmd += ["--profile", str(profile_path)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- report ------------------------------------------------------------------------------------
def _close(ours: float, theirs: float) -> bool:
    return math.isclose(ours, theirs, rel_tol=PSI_RTOL, abs_tol=PSI_ATOL)


def _agree(results: dict[str, dict[str, Any]], name: str) -> str:
    ours, same = results["compare"]["psi"][name], results["evidently_same_bins"]
    theirs = same["psi"][name]
    if _close(ours, theirs):
        return "yes"
    diff = abs(ours - theirs) / max(abs(theirs), PSI_ATOL)
    empty = same["empty_bins"][name]
    return f"NO ({diff:.1%} apart{f'; {empty} empty bin(s)' if empty else ''})"


def table(rows: int, results: dict[str, dict[str, Any]]) -> str:
    prof, comp, ev = results["profile"], results["compare"], results["evidently"]
    lines = [
        f"{rows:,} reference rows (good) and {rows:,} current rows (drifted), 10 numeric features + 1 "
        f"categorical; {platform.python_version()}, {os.cpu_count()} CPUs, load average at start "
        f"{results['_load']:.2f}. Each contender runs in its own process; seconds = the work from frames "
        "already in memory (reading parquet and imports excluded); peak MB = peak RSS during that work "
        "above the RSS before it (kernel high-water mark reset just before). No memory target.",
        "",
        "| contender | what it computes | seconds | peak MB | x evidently |",
        "|---|---|---:|---:|---:|",
        f"| project `compare` | PSI (profile bins) + KS per feature, drifted share, vs the stored profile | "
        f"{comp['seconds']:.2f} | {comp['peak_mb']:,.0f} | {ev['seconds'] / comp['seconds']:.1f}x faster |",
        f"| project `profile_frame` | the reference's profile (once, at validation time) | "
        f"{prof['seconds']:.2f} | {prof['peak_mb']:,.0f} | - |",
        f"| project profile + compare | both, as if the baseline were built per run | "
        f"{prof['seconds'] + comp['seconds']:.2f} | - | "
        f"{ev['seconds'] / (prof['seconds'] + comp['seconds']):.1f}x faster |",
        f"| evidently {results['_evidently_version']} | `ValueDrift` psi for 11 features + ks for 10 | "
        f"{ev['seconds']:.2f} | {ev['peak_mb']:,.0f} | 1.0x |",
        f"| evidently, pre-binned (agreement run) | `ValueDrift` psi on the profile's bins | "
        f"{results['evidently_same_bins']['seconds']:.2f} | {results['evidently_same_bins']['peak_mb']:,.0f} | - |",
        "",
        "PSI per feature (project vs evidently on the profile's bins, and evidently with its own binning: "
        "Sturges equal-width bins over reference+current for numeric features); KS: project statistic "
        "(one-sample, against the profile's quantiles), evidently p-value (two-sample `ks_2samp`):",
        "",
        "| feature | project PSI | evidently PSI, same bins | evidently's shares, project's empty-bin fill | agree | "
        "evidently PSI, own bins | project KS stat | evidently KS p |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    same = results["evidently_same_bins"]["psi"]
    floor = results["evidently_same_bins"]["psi_project_floor"]
    for name, ours in comp["psi"].items():
        ks = comp["ks"].get(name)
        ks_p = ev["ks_pvalue"].get(name)
        lines.append(
            f"| {name} | {ours:.6g} | {same[name]:.6g} | {floor[name]:.6g} | {_agree(results, name)} | "
            f"{ev['psi'][name]:.6g} | {'-' if ks is None else f'{ks:.4f}'} | "
            f"{'-' if ks_p is None else f'{ks_p:.3g}'} |"
        )
    lines += [
        "",
        f"Drifted share (PSI >= {PSI_THRESHOLD}): project {comp['drifted_share']:.3f}, evidently (own bins) "
        f"{ev['drifted_share']:.3f}.",
    ]
    return "\n".join(lines)


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    comp, ev, same = results["compare"], results["evidently"], results["evidently_same_bins"]["psi"]
    speedup = ev["seconds"] / comp["seconds"]
    verdicts = {n: _agree(results, n) for n in comp["psi"]}
    agree = [n for n, v in verdicts.items() if v == "yes"]
    differ = [f"{n} {v}" for n, v in verdicts.items() if v != "yes"]
    worst = max(comp["psi"], key=lambda n: abs(comp["psi"][n] - same[n]) / max(abs(same[n]), PSI_ATOL))
    largest = abs(comp["psi"][worst] - same[worst]) / max(abs(same[worst]), PSI_ATOL)
    return [
        (f"compare at least {SPEEDUP:g}x faster than evidently: {speedup:.1f}x", speedup >= SPEEDUP),
        (
            f"PSI matches evidently's, computed independently on the same bins, within rel {PSI_RTOL:g} "
            f"(abs {PSI_ATOL:g}) for every feature: {len(agree)} of {len(verdicts)} agree (largest relative "
            f"difference {largest:.1e}, {worst}); mismatches: {', '.join(differ) or 'none'}",
            len(agree) == len(verdicts),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/drift.md")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--paths", type=Path, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.paths[0], args.paths[1], args.profile)
        return 0
    print("writing data (first run only) ...", file=sys.stderr, flush=True)
    paths = datasets(args.rows)
    profile_path = DATA_DIR / f"drift-{args.rows}-profile.json"
    results: dict[str, Any] = {"_load": os.getloadavg()[0]}
    for engine in ENGINES:  # profile first: compare and the agreement run read the stored profile
        print(f"running {engine} ...", file=sys.stderr, flush=True)
        results[engine] = measure(engine, paths, profile_path)
    from importlib.metadata import version

    results["_evidently_version"] = version("evidently")
    command = f"python bench/drift.py --rows {args.rows}"
    out = None if args.no_write else RESULTS
    return finish(table(args.rows, results), targets(results), title="Drift benchmark", command=command, out=out)


if __name__ == "__main__":
    sys.exit(main())
