"""Dataset validation speed and memory: this project's engine against its peers.

Generates (once, cached under ``bench/.data/``) a deterministic CSV of 5M rows x 20
columns with a matching ``DatasetContract`` built in code, then runs each contender in
its own subprocess, measuring wall time and peak RSS:

1. ``pandas.read_csv``: raw parse into memory, no checks (the floor);
2. ``validate_file``: this project's streaming contract engine (checks + profile);
3. pandera: the same checks as a ``DataFrameSchema`` on the pandas frame;
4. great_expectations: the same checks as an expectation suite on the pandas frame.

Prints a table and PASS/FAIL per target, and writes ``bench/results/validate.md``.

    python bench/validate.py              # 5M rows, a few minutes
    python bench/validate.py --rows 200000
"""

from __future__ import annotations

import argparse
import importlib
import json
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
ENGINES = ["pandas_read_csv", "validate_file", "pandera", "great_expectations"]


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


def run_pandas_read_csv(path: Path, spec: DatasetContract) -> dict[str, Any]:
    import pandas as pd

    frame = pd.read_csv(path)
    return {"rows": len(frame), "passed": None, "problems": 0}


def run_validate_file(path: Path, spec: DatasetContract) -> dict[str, Any]:
    from mlops.core.contract import validate_file

    result = validate_file(path, spec)
    return {"rows": result.rows, "passed": result.passed, "problems": len(result.violations)}


def run_pandera(path: Path, spec: DatasetContract) -> dict[str, Any]:
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
    frame = pd.read_csv(path)
    try:
        schema.validate(frame, lazy=True)
        passed, problems = True, 0
    except pa.errors.SchemaErrors as exc:
        passed, problems = False, len(exc.failure_cases)
    return {"rows": len(frame), "passed": passed, "problems": problems}


def run_great_expectations(path: Path, spec: DatasetContract) -> dict[str, Any]:
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
    frame = pd.read_csv(path)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    failed = [r for r in result.results if not r.success]
    if os.environ.get("BENCH_DEBUG"):
        print(
            [(r.expectation_config.type, r.expectation_config.kwargs.get("column"), r.result) for r in failed],
            file=sys.stderr,
        )
    return {"rows": len(frame), "passed": bool(result.success), "problems": len(failed)}


RUNNERS = {
    "pandas_read_csv": run_pandas_read_csv,
    "validate_file": run_validate_file,
    "pandera": run_pandera,
    "great_expectations": run_great_expectations,
}


IMPORTS = {
    "pandas_read_csv": ["pandas"],
    "validate_file": ["mlops.core.contract"],
    "pandera": ["pandas", "pandera.pandas"],
    "great_expectations": ["pandas", "great_expectations", "great_expectations.expectations"],
}


def child(engine: str, path: Path) -> None:
    """Run one contender and print its measurements as JSON (peak RSS of this process only)."""
    for module in IMPORTS[engine]:  # imports are not part of the timed work
        importlib.import_module(module)
    spec = contract()
    started = time.perf_counter()
    out = RUNNERS[engine](path, spec)
    out["seconds"] = time.perf_counter() - started
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
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


# -- report ------------------------------------------------------------------------------------
def table(rows: int, path: Path, results: dict[str, dict[str, Any]]) -> str:
    floor = results["pandas_read_csv"]
    lines = [
        f"{rows:,} rows x 20 columns, {path.stat().st_size / 1e6:,.0f} MB CSV; {platform.python_version()}, "
        f"{os.cpu_count()} CPUs. Each engine runs in its own process; seconds = reading and checking the file "
        "(interpreter start and imports excluded); peak MB = the process's peak RSS.",
        "",
        "| engine | seconds | rows/s | peak MB | x raw parse | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        verdict = "-" if r["passed"] is None else ("passed" if r["passed"] else f"failed ({r['problems']} problems)")
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | {r['peak_mb']:,.0f} | "
            f"{r['seconds'] / floor['seconds']:.2f} | {verdict} |"
        )
    return "\n".join(lines)


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    ours, floor = results["validate_file"], results["pandas_read_csv"]
    out = [
        (
            f"validation within 1.5x of the raw parse time: {ours['seconds'] / floor['seconds']:.2f}x",
            ours["seconds"] <= 1.5 * floor["seconds"],
        ),
        (
            f"peak memory under a quarter of pandas loading the file: {ours['peak_mb']:,.0f} MB vs "
            f"{floor['peak_mb'] / 4:,.0f} MB ({floor['peak_mb']:,.0f} / 4)",
            ours["peak_mb"] < floor["peak_mb"] / 4,
        ),
    ]
    if "great_expectations" in results:
        ge = results["great_expectations"]
        speedup = ge["seconds"] / ours["seconds"]
        out.insert(1, (f"at least 4x faster than great_expectations: {speedup:.1f}x", speedup >= 4))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
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
    path = dataset(args.rows)
    results = {}
    for engine in engines:
        print(f"running {engine} ...", file=sys.stderr, flush=True)
        results[engine] = measure(engine, path)
    command = f"python bench/validate.py --rows {args.rows}"
    out = None if args.no_write else RESULTS
    report = table(args.rows, path, results)
    return finish(report, targets(results), title="Validation benchmark", command=command, out=out)


if __name__ == "__main__":
    sys.exit(main())
