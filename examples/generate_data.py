"""Deterministic demo datasets built on datasets that scikit-learn ships.

The originals are small (569 and 442 rows), so rows are resampled and jittered with
noise proportional to each feature's spread; the same seed always gives the same
bytes. Variants:

- ``good``: matches the model's contract.
- ``bad``: the same data with contract violations a real upstream job produces
  (out-of-range values, unknown categories, nulls where none are allowed,
  non-numeric text in numeric columns, duplicated rows).
- ``drifted``: valid data whose feature distributions have shifted (for drift demos).

Formats (``--format``): ``csv`` (default), ``csv.gz``, ``csv.zst``, ``parquet``, ``jsonl``, and
``r-csv`` (as R's ``write.csv`` writes: quoted text, ``NA`` for missing values, a row-name
column dropped). ``--parts N`` writes a folder of N Parquet part files and a ``_SUCCESS``
marker, the way Spark writes a dataset.

Usage: python examples/generate_data.py tumor-classifier good 5000 out.csv [--format parquet] [--parts 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

TUMOR_FEATURES = {
    "mean_radius": "mean radius",
    "mean_texture": "mean texture",
    "mean_perimeter": "mean perimeter",
    "mean_area": "mean area",
    "mean_smoothness": "mean smoothness",
    "mean_compactness": "mean compactness",
    "mean_concavity": "mean concavity",
    "mean_symmetry": "mean symmetry",
    "worst_radius": "worst radius",
    "worst_concave_points": "worst concave points",
}
CLINICS = ["north", "south", "east", "west"]


def _resample(frame: pd.DataFrame, rows: int, rng: np.random.Generator, noise: float) -> pd.DataFrame:
    picked = frame.iloc[rng.integers(0, len(frame), size=rows)].reset_index(drop=True)
    numeric = picked.select_dtypes("number")
    jitter = rng.normal(0.0, noise, size=numeric.shape) * numeric.std().to_numpy()
    picked[numeric.columns] = (numeric + jitter).clip(lower=0)
    return picked


def tumor(rows: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    source = load_breast_cancer(as_frame=True).frame
    base = source[list(TUMOR_FEATURES.values())].rename(columns={v: k for k, v in TUMOR_FEATURES.items()})
    base["diagnosis"] = source["target"]
    out = _resample(base, rows, rng, noise=0.05)
    if drift:
        # larger tumours: radius, and with it perimeter and area, shift together
        out["mean_radius"] *= 1 + drift
        out["mean_perimeter"] *= 1 + drift
        out["mean_area"] *= (1 + drift) ** 2
        out["mean_texture"] += drift * 10
        out["worst_radius"] *= 1 + drift
    out = out.round(5)
    out["diagnosis"] = out["diagnosis"].round().astype(int)
    out.insert(0, "clinic", rng.choice(CLINICS, size=rows, p=[0.4, 0.3, 0.2, 0.1]))
    out.insert(0, "record_id", np.arange(rows) + seed * 10_000_000)
    # a few genuinely missing measurements: the contract allows nulls here
    out.loc[rng.random(rows) < 0.01, "mean_concavity"] = np.nan
    return out


def diabetes(rows: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    source = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    out = _resample(source, rows, rng, noise=0.05)
    if drift:
        out["bmi"] *= 1 + drift
        out["bp"] *= 1 + drift / 2
    out["age"] = out["age"].round().astype(int)
    out["sex"] = out["sex"].round().clip(1, 2).astype(int)
    return out.round(4)


def wine(rows: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    source = load_wine(as_frame=True).frame.rename(
        columns={"od280/od315_of_diluted_wines": "od280_od315", "target": "cultivar"}
    )
    out = _resample(source, rows, rng, noise=0.05)
    if drift:
        out["alcohol"] *= 1 + drift / 4
        out["color_intensity"] *= 1 + drift
        out["proline"] *= 1 + drift / 2
    out = out.round(4)
    out["cultivar"] = out["cultivar"].round().astype(int)
    return out


GENERATORS = {"tumor-classifier": tumor, "diabetes-progression": diabetes, "wine-cultivar": wine}


def corrupt(frame: pd.DataFrame, model: str, seed: int = 0) -> pd.DataFrame:
    """Inject contract violations into a copy of a good dataset."""
    rng = np.random.default_rng(seed + 1)
    bad = frame.copy().astype(object)
    n = len(bad)
    idx = rng.choice(n, size=max(4, n // 50), replace=False)
    a, b, c, d = np.array_split(idx, 4)
    if model == "tumor-classifier":
        bad.loc[a, "mean_radius"] = -5.0  # below min
        bad.loc[b, "clinic"] = "central"  # not an allowed value
        bad.loc[c, "mean_area"] = None  # null in a non-nullable column
        bad.loc[d, "mean_texture"] = "n/a"  # text in a float column
    elif model == "wine-cultivar":
        bad.loc[a, "alcohol"] = -1.0
        bad.loc[b, "cultivar"] = 7
        bad.loc[c, "hue"] = None
        bad.loc[d, "proline"] = "lots"
    else:
        bad.loc[a, "bmi"] = 95.0
        bad.loc[b, "sex"] = 3
        bad.loc[c, "bp"] = None
        bad.loc[d, "age"] = "unknown"
    return pd.concat([bad, bad.iloc[:3]], ignore_index=True)  # exact duplicate rows


def generate(model: str, variant: str = "good", rows: int = 5000, seed: int = 0) -> pd.DataFrame:
    if model not in GENERATORS:
        raise ValueError(f"no demo data generator for model {model!r}; known: {sorted(GENERATORS)}")
    make = GENERATORS[model]
    if variant == "good":
        return make(rows, seed)
    if variant == "drifted":
        return make(rows, seed, drift=0.6)
    if variant == "bad":
        return corrupt(make(rows, seed), model, seed)
    raise ValueError(f"unknown variant {variant!r}; use good, bad or drifted")


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


FORMATS = ("csv", "csv.gz", "csv.zst", "parquet", "jsonl", "r-csv")


def write_as(frame: pd.DataFrame, path: str | Path, fmt: str = "csv") -> Path:
    """The frame in one of ``FORMATS`` (the name of the file does not matter to the platform)."""
    import gzip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import polars as pl

        pl.from_pandas(frame).write_parquet(path)
    elif fmt == "jsonl":
        path.write_text(frame.to_json(orient="records", lines=True), encoding="utf-8")
    elif fmt == "r-csv":  # write.csv(df, row.names = FALSE): quoted names and text, NA (unquoted) when missing
        text = [not pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]

        def cell(value: object, quoted: bool) -> str:
            if pd.isna(value):  # type: ignore[call-overload]
                return "NA"
            return '"' + str(value).replace('"', '""') + '"' if quoted else str(value)

        lines = [",".join(f'"{c}"' for c in frame.columns)]
        lines += [",".join(cell(v, q) for v, q in zip(row, text, strict=True)) for row in frame.itertuples(index=False)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        body = frame.to_csv(index=False, lineterminator="\n").encode()
        if fmt == "csv.gz":
            body = gzip.compress(body)
        elif fmt == "csv.zst":
            from mlops.core.formats import _zstd_module

            body = _zstd_module().compress(body)
        elif fmt != "csv":
            raise ValueError(f"unknown format {fmt!r}; one of {FORMATS}")
        path.write_bytes(body)
    return path


def write_parts(frame: pd.DataFrame, folder: str | Path, parts: int) -> list[Path]:
    """A Spark-style dataset folder: ``part-0000N.parquet`` files, then the ``_SUCCESS`` marker."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        out.append(write_as(frame.iloc[chunk], folder / f"part-{i:05d}.snappy.parquet", "parquet"))
    (folder / "_SUCCESS").write_bytes(b"")
    return [*out, folder / "_SUCCESS"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(GENERATORS))
    parser.add_argument("variant", choices=["good", "bad", "drifted"])
    parser.add_argument("rows", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument("--parts", type=int, default=0, help="write a folder of N Parquet parts + _SUCCESS")
    args = parser.parse_args(argv)
    frame = generate(args.model, args.variant, args.rows, args.seed)
    if args.parts:
        written = write_parts(frame, args.out, args.parts)
        print(f"wrote {len(written) - 1} parts and _SUCCESS to {args.out}/")
        return 0
    path = write_as(frame, args.out, args.format)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
