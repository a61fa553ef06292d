"""Dataset validation speed and memory: this project's engine against its peers.

Generates (once, cached under ``bench/.data/``) a deterministic CSV of 5M rows x 20
columns with a matching ``DatasetContract`` built in code, and the same rows as Parquet,
then runs each contender in its own subprocess, measuring wall time and peak RSS:

1. ``pandas.read_csv``: raw parse into memory, no checks (the floor);
2. ``validate_file``: this project's streaming contract engine (checks + profile);
3. pandera: the same checks as a ``DataFrameSchema`` on the pandas frame;
4. great_expectations: the same checks as an expectation suite on the pandas frame;
5. ``pyarrow.parquet.read_table`` of the Parquet copy (its floor), and
6. ``validate_file`` on the Parquet copy.

Fair by construction: imports and the peers' setup (building the schema, the context and the
suite) happen before the clock starts; peak memory is the process's peak RSS during the timed
work above its RSS just before it (the kernel's high-water mark is reset after the imports);
every engine runs ``--repeat`` times, interleaved with the others so that a busy machine slows
them alike, and the median is reported with the load average. The memory target is judged at
the full 5M rows only (at smaller sizes interpreter and library overheads dominate).

Prints a table and PASS/FAIL per target, and writes ``bench/results/validate.md``.

    python bench/validate.py              # 5M rows, 3 rounds: about 10 minutes
    python bench/validate.py --rows 200000 --repeat 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import finish  # noqa: E402  (bench/, the script's own directory)

from mlops.config import Column, DatasetContract  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent / ".data"
RESULTS = Path(__file__).resolve().parent / "results" / "validate.md"
CHUNK = 500_000
FLOATS = [f"f{i:02d}" for i in range(12)]  # f11 is nullable
INTS = ["age", "visits", "score"]
STRINGS = {
    "region": ["north", "south", "east", "west"],
    "channel": ["web", "store", "phone"],
    "tier": ["free", "basic", "pro", "enterprise", "partner"],
}
ENGINES = ["pandas_read_csv", "validate_file", "pandera", "great_expectations", "pyarrow_read_parquet"]
ENGINES += ["validate_file_parquet", "validate_file_parquet_copy"]
# What each contender computes, printed with the table: the comparison is only fair if both sides say it.
COMPUTES = {
    "pandas_read_csv": "parse only: `pandas.read_csv` of the whole file into memory, no checks (the floor)",
    "validate_file": "parse + every contract check + the statistical profile, streaming; with `output=` as the "
    "validate Lambda calls it, but this CSV is canonical already, so the validated copy is the upload itself "
    "(a server-side copy in S3) and nothing is written",
    "pandera": "`pandas.read_csv`, then a `DataFrameSchema` with the same checks, `lazy=True`",
    "great_expectations": "`pandas.read_csv`, then an expectation suite with the same checks",
    "pyarrow_read_parquet": "read only: `pyarrow.parquet.read_table` of the Parquet copy into memory (the floor)",
    "validate_file_parquet": "read + every contract check + the profile of the Parquet copy, streaming; no "
    "validated copy written",
    "validate_file_parquet_copy": "the same, plus the validated copy the Lambda writes for a Parquet upload "
    "(canonical CSV, to a temp file): for information, not a target",
}
PAIRS = [("pandas_read_csv", "validate_file"), ("pyarrow_read_parquet", "validate_file_parquet")]
MEMORY_TARGET_ROWS = 5_000_000  # the size the memory target applies to


# -- data and contract ------------------------------------------------------------
def contract() -> DatasetContract:
    cols = [Column(name="id", type="int", unique=True, feature=False, min=0)]
    cols += [Column(name=f, type="float", min=-1000, max=1000, nullable=f == "f11") for f in FLOATS]
    cols += [
        Column(name="age", type="int", min=0, max=120),
        Column(name="visits", type="int", min=0, max=10_000),
        Column(name="score", type="int", min=-50, max=50),
    ]
    cols += [Column(name=name, type="string", allowed=values) for name, values in STRINGS.items()]
    cols.append(Column(name="label", type="int", allowed=[0, 1]))
    return DatasetContract(target="label", columns=cols, max_rows=100_000_000, max_bytes=10 * 1024**3)


def _chunk(start: int, rows: int) -> Any:
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(start)
    data: dict[str, Any] = {"id": np.arange(start, start + rows, dtype=np.int64)}
    for i, name in enumerate(FLOATS):
        data[name] = np.round(rng.normal(i * 10.0, 1.0 + i, rows), 4)
    data["age"] = rng.integers(18, 90, rows)
    data["visits"] = rng.poisson(12, rows)
    data["score"] = rng.integers(-50, 51, rows)
    for name, values in STRINGS.items():
        data[name] = np.asarray(values)[rng.integers(0, len(values), rows)]
    data["label"] = (data["f00"] + rng.normal(0, 1, rows) > 0).astype(np.int64)
    frame = pl.DataFrame(data)
    nulls = pl.Series(rng.random(rows) < 0.02)
    return frame.with_columns(pl.when(nulls).then(None).otherwise(pl.col("f11")).alias("f11"))


def parquet(rows: int) -> Path:
    """The same rows as Parquet (written once from the CSV by polars' streaming sink)."""
    import polars as pl

    path = DATA_DIR / f"bench-{rows}.parquet"
    if not path.exists():
        source = dataset(rows)
        pl.scan_csv(source).sink_parquet(path.with_suffix(".tmp"), row_group_size=250_000)
        path.with_suffix(".tmp").rename(path)
    return path


def dataset(rows: int) -> Path:
    """The cached CSV for ``rows`` rows (written chunk by chunk: bounded memory)."""
    path = DATA_DIR / f"bench-{rows}.csv"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for start in range(0, rows, CHUNK):
            _chunk(start, min(CHUNK, rows - start)).write_csv(out, include_header=start == 0)
    tmp.rename(path)
    return path


# -- contenders: each runs in its own process ----------------------------------------------
def _pandas_dtypes(spec: DatasetContract) -> dict[str, str]:
    return {
        c.name: {"int": "int64", "float": "float64", "string": "str", "bool": "bool"}[c.type.value]
        for c in spec.columns
    }


# Each contender: ``setup(path, spec)`` (not timed) returns ``work()`` (timed).
def setup_pandas_read_csv(path: Path, spec: DatasetContract) -> Any:
    import pandas as pd

    def work() -> dict[str, Any]:
        frame = pd.read_csv(path)
        return {"rows": len(frame), "passed": None, "problems": 0}

    return work


def setup_validate_file(path: Path, spec: DatasetContract, copy: bool = True) -> Any:
    import tempfile

    from mlops.core.contract import validate_file

    out = Path(tempfile.mkdtemp()) / "canonical.csv"

    def work() -> dict[str, Any]:
        result = validate_file(path, spec, output=out if copy else None)
        written = out.stat().st_size / 1e6 if out.exists() else 0.0
        out.unlink(missing_ok=True)
        return {"rows": result.rows, "passed": result.passed, "problems": len(result.violations),
                "copy": result.canonical, "copy_mb": written}  # fmt: skip

    return work


def setup_validate_file_parquet(path: Path, spec: DatasetContract) -> Any:
    return setup_validate_file(path, spec, copy=False)


def setup_pyarrow_read_parquet(path: Path, spec: DatasetContract) -> Any:
    import pyarrow.parquet as pq

    def work() -> dict[str, Any]:
        return {"rows": pq.read_table(path).num_rows, "passed": None, "problems": 0}

    return work


def setup_pandera(path: Path, spec: DatasetContract) -> Any:
    import pandas as pd
    import pandera.pandas as pa

    columns = {}
    for c in spec.columns:
        checks = []
        if c.min is not None:
            checks.append(pa.Check.ge(c.min))
        if c.max is not None:
            checks.append(pa.Check.le(c.max))
        if c.allowed is not None:
            checks.append(pa.Check.isin([int(a) if c.type.value == "int" else str(a) for a in c.allowed]))
        columns[c.name] = pa.Column(_pandas_dtypes(spec)[c.name], checks, nullable=c.nullable, unique=c.unique)
    schema = pa.DataFrameSchema(
        columns,
        strict=True,
        unique=None if spec.allow_duplicate_rows else spec.column_names,
        checks=[pa.Check(lambda df: spec.min_rows <= len(df) <= (spec.max_rows or len(df)))],
    )

    def work() -> dict[str, Any]:
        frame = pd.read_csv(path)
        try:
            schema.validate(frame, lazy=True)
            passed, problems = True, 0
        except pa.errors.SchemaErrors as exc:
            passed, problems = False, len(exc.failure_cases)
        return {"rows": len(frame), "passed": passed, "problems": problems}

    return work


def setup_great_expectations(path: Path, spec: DatasetContract) -> Any:
    import logging

    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    types = {"int": "int64", "float": "float64", "string": "str", "bool": "bool"}
    context = gx.get_context(mode="ephemeral")
    suite = gx.ExpectationSuite(name="contract")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(column_set=spec.column_names, exact_match=True))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=spec.min_rows, max_value=spec.max_rows))
    if not spec.allow_duplicate_rows:
        suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=spec.column_names))
    for c in spec.columns:
        suite.add_expectation(gxe.ExpectColumnValuesToBeOfType(column=c.name, type_=types[c.type.value]))
        if not c.nullable:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=c.name))
        if c.min is not None or c.max is not None:
            suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=c.name, min_value=c.min, max_value=c.max))
        if c.allowed is not None:
            allowed = [int(a) if c.type.value == "int" else str(a) for a in c.allowed]
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=c.name, value_set=allowed))
        if c.unique:
            suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=c.name))
    asset = context.data_sources.add_pandas("bench").add_dataframe_asset("data")
    batch_definition = asset.add_batch_definition_whole_dataframe("all")

    def work() -> dict[str, Any]:
        frame = pd.read_csv(path)
        result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
        failed = [r for r in result.results if not r.success]
        if os.environ.get("BENCH_DEBUG"):
            print(
                [(r.expectation_config.type, r.expectation_config.kwargs.get("column"), r.result) for r in failed],
                file=sys.stderr,
            )
        return {"rows": len(frame), "passed": bool(result.success), "problems": len(failed)}

    return work


SETUPS = {
    "pandas_read_csv": setup_pandas_read_csv,
    "validate_file": setup_validate_file,
    "pandera": setup_pandera,
    "great_expectations": setup_great_expectations,
    "pyarrow_read_parquet": setup_pyarrow_read_parquet,
    "validate_file_parquet": setup_validate_file_parquet,
    "validate_file_parquet_copy": setup_validate_file,
}
PARQUET_ENGINES = {"pyarrow_read_parquet", "validate_file_parquet", "validate_file_parquet_copy"}


IMPORTS = {
    "pandas_read_csv": ["pandas"],
    "validate_file": ["mlops.core.contract"],
    "pandera": ["pandas", "pandera.pandas"],
    "great_expectations": ["pandas", "great_expectations", "great_expectations.expectations"],
    "pyarrow_read_parquet": ["pyarrow.parquet"],
    "validate_file_parquet": ["mlops.core.contract"],
    "validate_file_parquet_copy": ["mlops.core.contract"],
}


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def child(engine: str, path: Path) -> None:
    """Run one contender and print its measurements as JSON: the timed work only, and its own peak RSS."""
    for module in IMPORTS[engine]:  # imports are not part of the timed work
        importlib.import_module(module)
    work = SETUPS[engine](path, contract())  # nor is building a peer's schema, context or suite
    before = _status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark: the peak covers the work only
    started, cpu = time.perf_counter(), _cpu_seconds()
    out = work()
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = _cpu_seconds() - cpu
    out["peak_mb"] = _status("VmHWM:") - before
    out["rss_before_mb"] = before
    print(json.dumps(out))


def measure(engine: str, path: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", engine, "--path", str(path)]
    wall = time.perf_counter()
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - wall
    return out


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(runs[0])
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    out["peak_mb"] = statistics.median(r["peak_mb"] for r in runs)
    out["cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in runs)
    out["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return out


# -- report ------------------------------------------------------------------------------------
def table(
    rows: int,
    paths: dict[str, Path],
    results: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
    loads: list[float],
) -> str:
    floor = results["pandas_read_csv"]
    csv_mb = paths["csv"].stat().st_size / 1e6
    pq_mb = paths["parquet"].stat().st_size / 1e6 if "parquet" in paths else 0
    lines = [
        f"Machine: Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, shared with other "
        f"work: load average {loads[0]:.2f} at start, {loads[-1]:.2f} at the end, {min(loads):.2f}-{max(loads):.2f} "
        f"over the run (median {statistics.median(loads):.2f}). Dataset: "
        f"{rows:,} rows x 20 columns, {csv_mb:,.0f} MB CSV" + (f", {pq_mb:,.0f} MB Parquet" if pq_mb else "") + ". "
        "Both sides read the same file from disk (page cache). Each engine runs in its own process, turn about: "
        "each engine right next to its floor (pandas / validate_file, pyarrow / validate_file_parquet), the order "
        "within the pair swapped every round; seconds = the median of the rounds (each round listed) of reading "
        "and checking the file, imports and peers' setup excluded; CPU s = the process's user+system CPU seconds "
        "over that work (all its threads: what it costs when the machine is busy); peak MB = peak RSS during that "
        "work above the RSS before it.",
        "",
        "| engine | input | seconds | rounds | CPU s | rows/s | peak MB | x pandas parse | verdict |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        verdict = "-" if r["passed"] is None else ("passed" if r["passed"] else f"failed ({r['problems']} problems)")
        if r.get("copy") == "written":
            verdict += f", copy written ({r['copy_mb']:,.0f} MB)"
        elif r.get("copy") == "source":
            verdict += ", copy = the upload"
        source = "Parquet" if name in PARQUET_ENGINES else "CSV"
        lines.append(
            f"| {name} | {source} | {r['seconds']:.2f} | {', '.join(map(str, r['all_seconds']))} | "
            f"{r['cpu_seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | {r['peak_mb']:,.0f} | "
            f"{r['seconds'] / floor['seconds']:.2f} | {verdict} |"
        )
    lines += ["", "Per round, each side against its floor measured next to it:", ""]
    for floor_name, ours in PAIRS:
        if floor_name in runs and ours in runs:
            ratios = [o["seconds"] / f["seconds"] for f, o in zip(runs[floor_name], runs[ours], strict=True)]
            shown = ", ".join(f"{x:.2f}" for x in ratios)
            lines.append(f"- {ours} / {floor_name}: {shown} (median {statistics.median(ratios):.2f}x)")
    lines += ["", "What each side computes:", ""]
    lines += [f"- `{name}`: {COMPUTES[name]}" for name in results]
    return "\n".join(lines)


def targets(rows: int, results: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    ours, floor = results["validate_file"], results["pandas_read_csv"]
    ratio = ours["seconds"] / floor["seconds"]
    out = [(f"validate_file within 1.0x of the pandas parse of the same CSV: {ratio:.2f}x", ratio <= 1.0)]
    if "great_expectations" in results:
        speedup = results["great_expectations"]["seconds"] / ours["seconds"]
        out.append((f"at least 4x faster than great_expectations: {speedup:.1f}x", speedup >= 4))
    if "validate_file_parquet" in results and "pyarrow_read_parquet" in results:
        ours_pq, arrow = results["validate_file_parquet"], results["pyarrow_read_parquet"]
        out.append(
            (
                f"Parquet validated at least as fast as pyarrow reads it: {ours_pq['seconds']:.2f} s vs "
                f"{arrow['seconds']:.2f} s ({ours_pq['seconds'] / arrow['seconds']:.2f}x)",
                ours_pq["seconds"] <= arrow["seconds"],
            )
        )
    memory = (
        f"peak memory under a quarter of pandas loading the file, at {MEMORY_TARGET_ROWS:,} rows: "
        f"{ours['peak_mb']:,.0f} MB vs {floor['peak_mb'] / 4:,.0f} MB ({floor['peak_mb']:,.0f} / 4)"
    )
    if rows >= MEMORY_TARGET_ROWS:
        out.append((memory, ours["peak_mb"] < floor["peak_mb"] / 4))
    else:
        print(f"(memory target not judged at {rows:,} rows: it applies at {MEMORY_TARGET_ROWS:,})", file=sys.stderr)
    return out


def _round_order(engines: list[str], round_: int) -> list[str]:
    """Each floor next to its contender, the two swapped every other round (ABBA: a drifting load hits both)."""
    order = list(engines)
    if round_ % 2:
        for a, b in PAIRS:
            if a in order and b in order:
                i, j = order.index(a), order.index(b)
                order[i], order[j] = order[j], order[i]
    return order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=ENGINES)
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/validate.md")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.path)
        return 0
    engines = ["pandas_read_csv", *[e for e in args.engines if e != "pandas_read_csv"]]
    if "validate_file" not in engines:
        engines.append("validate_file")
    paths = {"csv": dataset(args.rows)}
    if PARQUET_ENGINES & set(engines):
        paths["parquet"] = parquet(args.rows)
    loads = [os.getloadavg()[0]]
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    for round_ in range(args.repeat):
        for engine in _round_order(engines, round_):
            print(f"round {round_ + 1}/{args.repeat}: {engine} (load {os.getloadavg()[0]:.1f}) ...", file=sys.stderr,
                  flush=True)  # fmt: skip
            path = paths["parquet"] if engine in PARQUET_ENGINES else paths["csv"]
            runs[engine].append(measure(engine, path))
            loads.append(os.getloadavg()[0])
    results = {e: median_of(runs[e]) for e in engines}
    command = f"python bench/validate.py --rows {args.rows} --repeat {args.repeat}"
    if set(args.engines) != set(ENGINES):
        command += " --engines " + " ".join(args.engines)
    out = None if args.no_write else RESULTS
    report = table(args.rows, paths, results, runs, loads)
    return finish(report, targets(args.rows, results), title="Validation benchmark", command=command, out=out)


if __name__ == "__main__":
    sys.exit(main())
