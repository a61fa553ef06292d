"""Statistical profile of a dataset: the drift baseline written next to validated data.

Built incrementally, one chunk at a time, with memory independent of the row count:

- numeric columns (int/float without ``allowed``): count, nulls, mean/std (merged per
  chunk with Chan's formula), min/max and a fine histogram over *float buckets*. A
  bucket is the top 20 bits of an order-preserving 64-bit key of the value (sign, 11
  exponent bits, 8 mantissa bits: about 0.4% relative width), so the histogram needs no
  range known in advance and holds a few thousand entries at most. Quantile bin edges
  are bucket boundaries, which makes the bin fractions *exact* counts against those
  edges (ties included), using the same rule as ``numeric_bin_fractions``. The 101
  quantiles are interpolated inside their bucket.
- categorical columns (string/bool, or anything with ``allowed``): value frequencies.

Shape (``version`` 1)::

    {"version": 1, "rows": n, "features": {name: entry}, "target": entry | None}
    numeric entry: kind, type, null_rate, count, mean, std, min, max, bin_edges (11),
                   bin_fractions (10, sum to 1), quantiles (101, at 0.00..1.00)
    categorical entry: kind, type, null_rate, count, frequencies {value: share}
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl

from mlops.config import Column, ColumnType, DatasetContract

PROFILE_VERSION = 1
BINS = 10
QUANTILES = 101
_SIGN = np.uint64(1 << 63)
_SHIFT = np.uint64(44)  # keep sign + exponent + 8 mantissa bits
_TOP_BUCKET = (1 << 20) - 1
_HALF = 1 << 19
_LITTLE_ENDIAN = sys.byteorder == "little"


def is_numeric(column: Column) -> bool:
    return column.type in (ColumnType.INT, ColumnType.FLOAT) and column.allowed is None


def category_key(value: Any) -> str:
    """How a value is named in ``frequencies``: 1 and 1.0 are "1", booleans "true"/"false"."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def numeric_bin_fractions(values: Iterable[Any] | np.ndarray, edges: Sequence[float]) -> list[float]:
    """Exact share of the non-null, finite values per bin of ``edges``.

    Bin ``i`` holds ``edges[i] <= v < edges[i + 1]``; values below the first inner edge
    count in the first bin and values from the last inner edge on in the last one (the
    same rule as ``mlops.core.drift.bin_fractions``). Repeated edges give empty bins.
    """
    arr = np.asarray([v for v in values if v is not None] if not isinstance(values, np.ndarray) else values, float)
    arr = arr[np.isfinite(arr)]
    if len(edges) < 2:
        return []
    idx = np.searchsorted(np.asarray(edges[1:-1], dtype=float), arr, side="right")
    counts = np.bincount(idx, minlength=len(edges) - 1)
    return (counts / max(len(arr), 1)).tolist()


# -- float buckets -------------------------------------------------------------------
def bucket_ids(values: np.ndarray) -> np.ndarray:
    """Monotone bucket id of each finite float64 value (the key's top 20 bits)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    raw = (bits >> _SHIFT).astype(np.int64)  # the sign is bit 19, then exponent and mantissa
    half = 1 << 19
    if not len(raw) or raw.max() < half:  # no sign bit set: the common, cheap case
        return raw + half
    raw = ((values.astype(np.float64) + 0.0).view(np.uint64) >> _SHIFT).astype(np.int64)  # -0.0 becomes 0.0
    # negative values order backwards: the larger the magnitude, the smaller the id
    return np.where(raw >= half, (2 * half - 1) - raw, raw + half)


def _value_of_key(key: int) -> float:
    bits = key ^ (1 << 63) if key >> 63 else ~key & ((1 << 64) - 1)
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def bucket_low(bucket: int) -> float:
    """Smallest value a bucket can hold: every value in it is >= this, every value below is <."""
    return _value_of_key(int(bucket) << int(_SHIFT))


def bucket_high(bucket: int) -> float:
    return math.inf if bucket >= _TOP_BUCKET else bucket_low(bucket + 1)


class _Numeric:
    def __init__(self, column: Column) -> None:
        self.column = column
        self.nulls = 0
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        # counts of every bucket id from ``low`` on, dense: at most 2**20 entries (8 MB), whatever the row count
        self.dense = np.zeros(0, dtype=np.int64)
        self.low = 0

    def update(self, series: pl.Series, stats: dict[str, Any]) -> None:
        """Add a chunk of finite values (or nulls) with its nulls, count, mean, m2, min and max."""
        self.nulls += stats["nulls"]
        n = stats["n"]
        if not n:
            return
        delta, total = stats["mean"] - self.mean, self.n + n
        self.mean += delta * n / total
        self.m2 += stats["m2"] + delta * delta * self.n * n / total
        self.n = total
        self.min, self.max = min(self.min, stats["min"]), max(self.max, stats["max"])
        values = series if not series.null_count() else series.drop_nulls()
        self._add_values(values.cast(pl.Float64).to_numpy())

    def _add_values(self, values: np.ndarray) -> None:
        if not len(values):
            return
        ids = None
        if _LITTLE_ENDIAN:
            # the top 20 bits of each float are the top 20 of its high 32-bit word: no 64-bit shifts
            raw = np.ascontiguousarray(values, dtype=np.float64).view(np.uint32)[1::2] >> 12
            if int(raw.max()) < _HALF:  # no sign bit: bucket id = raw + half
                ids, offset = raw, _HALF
            elif not (raw == _HALF).any():  # -0.0 (or a tiny negative) has this word: the exact path below
                ids, offset = np.where(raw >= _HALF, (2 * _HALF - 1) - raw, raw + _HALF), 0
        if ids is None:
            ids, offset = bucket_ids(values), 0
        low = int(ids.min())
        self._merge(np.bincount(ids - low), low + offset)

    def _merge(self, dense: np.ndarray, low: int) -> None:
        """Add the counts of bucket ids ``low``, ``low + 1``... to the running dense counts."""
        if not len(self.dense):
            self.dense, self.low = dense.astype(np.int64), low
            return
        start, end = min(self.low, low), max(self.low + len(self.dense), low + len(dense))
        if start < self.low or end > self.low + len(self.dense):
            grown = np.zeros(end - start, dtype=np.int64)
            grown[self.low - start : self.low - start + len(self.dense)] = self.dense
            self.dense, self.low = grown, start
        self.dense[low - self.low : low - self.low + len(dense)] += dense

    @property
    def buckets(self) -> np.ndarray:
        return np.flatnonzero(self.dense) + self.low

    @property
    def counts(self) -> np.ndarray:
        return self.dense[self.dense != 0]

    def entry(self, rows: int) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "numeric", "type": self.column.type.value}
        out["null_rate"] = self.nulls / rows if rows else 0.0
        out["count"] = self.n
        if not self.n:
            return out | {"mean": None, "std": None, "min": None, "max": None, "bin_edges": [], "bin_fractions": []}
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        out |= {"mean": self.mean, "std": std, "min": self.min, "max": self.max}
        buckets, counts = self.buckets, self.counts
        cum = np.cumsum(counts)
        inner = [self._bucket_at(cum, k * self.n / BINS) for k in range(1, BINS)]
        edges = [self.min, *(max(bucket_low(buckets[i]), self.min) for i in inner), self.max]
        # bin k = buckets from inner[k-1] up to inner[k]: exact counts because edges are bucket boundaries
        bounds = [0, *inner, len(counts)]
        before = np.concatenate([[0], cum])
        fractions = [float(before[bounds[k + 1]] - before[bounds[k]]) / self.n for k in range(BINS)]
        out |= {"bin_edges": edges, "bin_fractions": fractions, "quantiles": self._quantiles(cum, buckets, counts)}
        return out

    def _bucket_at(self, cum: np.ndarray, rank: float) -> int:
        """Index of the bucket holding the element of 0-based rank ``floor(rank)``."""
        return int(np.searchsorted(cum, min(math.floor(rank), self.n - 1), side="right"))

    def _quantiles(self, cum: np.ndarray, buckets: np.ndarray, counts: np.ndarray) -> list[float]:
        out = []
        for q in np.linspace(0.0, 1.0, QUANTILES):
            rank = q * (self.n - 1)
            i = self._bucket_at(cum, rank)
            below = int(cum[i - 1]) if i else 0
            frac = (rank - below + 0.5) / int(counts[i])
            lo, hi = bucket_low(buckets[i]), bucket_high(buckets[i])
            value = lo + (min(hi, self.max) - lo) * min(max(frac, 0.0), 1.0) if math.isfinite(hi) else lo
            if self.column.type is ColumnType.INT:
                value = math.floor(value)
            out.append(min(max(value, self.min), self.max))
        out[0], out[-1] = self.min, self.max
        return np.maximum.accumulate(out).tolist()


class _Categorical:
    def __init__(self, column: Column) -> None:
        self.column = column
        self.nulls = 0
        self.counts: Counter[str] = Counter()

    def update(self, series: pl.Series, allowed_counts: dict[str, int] | None = None) -> None:
        """Add a chunk; ``allowed_counts`` (value -> count) may carry counts made in a shared query."""
        nulls = series.null_count()
        self.nulls += nulls
        if allowed_counts is not None and sum(allowed_counts.values()) == len(series) - nulls:
            self.counts.update({k: c for k, c in allowed_counts.items() if c})
            return
        for value, count in series.drop_nulls().value_counts().iter_rows():
            self.counts[category_key(value)] += count

    def entry(self, rows: int) -> dict[str, Any]:
        n = sum(self.counts.values())
        freq = {k: c / n for k, c in self.counts.most_common()} if n else {}
        return {
            "kind": "categorical",
            "type": self.column.type.value,
            "null_rate": self.nulls / rows if rows else 0.0,
            "count": n,
            "frequencies": freq,
        }


class ProfileBuilder:
    """Accumulates the profile of the contract's features and target over typed chunks.

    Each chunk is a polars frame whose profiled columns are already typed (Int64,
    Float64, Boolean or String, with nulls for missing values).
    """

    def __init__(self, contract: DatasetContract, background: bool = False) -> None:
        """``background``: histograms are built in a worker thread (numpy releases the GIL) while the
        caller reads the next chunk; ``result`` waits for it."""
        self.target = contract.target
        profiled = [*contract.features, contract.target_column]
        self.stats = {c.name: _Numeric(c) if is_numeric(c) else _Categorical(c) for c in profiled}
        self.rows = 0
        self._counted = {n: _allowed_exprs(s) for n, s in self.stats.items() if isinstance(s, _Categorical)}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="profile") if background else None
        self._pending: Future[None] | None = None

    def update(self, frame: pl.DataFrame, computed: dict[str, Any] | None = None) -> None:
        """Add a chunk. Numeric columns hold finite values or nulls (the engine's conversion made NaN and
        infinities null). ``computed``: the values of ``exprs()`` on ``frame``, when the caller evaluated them
        in a query of its own (one multi-threaded query computes every column's moments and counts)."""
        self.rows += frame.height
        if computed is None:
            exprs = self.exprs()
            computed = frame.select(exprs).row(0, named=True) if exprs else {}
        stats = _numeric_stats(computed, [n for n, s in self.stats.items() if isinstance(s, _Numeric)])
        allowed = self._allowed_counts(computed)
        self._wait()
        if self._pool is not None:
            self._pending = self._pool.submit(self._add, frame, stats, allowed)
        else:
            self._add(frame, stats, allowed)

    def exprs(self) -> list[pl.Expr]:
        """What ``update`` needs of a chunk beyond its values, as named aggregations."""
        exprs = []
        for name, stat in self.stats.items():
            if isinstance(stat, _Numeric):
                exprs += _numeric_exprs(name)
            else:
                exprs += [expr for _, expr, _ in self._counted[name]]
        return exprs

    def _add(self, frame: pl.DataFrame, stats: dict[str, Any], allowed: dict[str, dict[str, int]]) -> None:
        for name, stat in self.stats.items():
            if isinstance(stat, _Numeric):
                stat.update(frame.get_column(name), stats[name])
            else:
                stat.update(frame.get_column(name), allowed.get(name))

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        self._wait()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _allowed_counts(self, computed: dict[str, Any]) -> dict[str, dict[str, int]]:
        return {
            n: {key: computed[alias] for alias, _, key in counted} for n, counted in self._counted.items() if counted
        }

    def result(self) -> dict[str, Any]:
        self.close()
        features = {n: s.entry(self.rows) for n, s in self.stats.items() if n != self.target}
        target = self.stats[self.target].entry(self.rows) | {"name": self.target}
        return {"version": PROFILE_VERSION, "rows": self.rows, "features": features, "target": target}


def _allowed_exprs(stat: _Categorical) -> list[tuple[str, pl.Expr, str]]:
    """Counts of each allowed value (columns with ``allowed``, Boolean aside): alias, expression, frequency key."""
    column = stat.column
    if not column.allowed or column.type is ColumnType.BOOL:
        return []
    out = []
    for i, value in enumerate(column.allowed):
        typed = int(value) if column.type is ColumnType.INT else str(value)
        alias = f"{column.name}\0={i}"
        out.append((alias, (pl.col(column.name) == typed).sum().alias(alias), category_key(typed)))
    return out


def _numeric_exprs(name: str) -> list[pl.Expr]:
    """Nulls, count, mean, variance, min and max of a numeric column, named ``<column>\\0<stat>``.

    Values are finite or null here: the engine's conversion, and ``profile_frame``, made NaN missing.
    """
    col, as_float = pl.col(name), pl.col(name).cast(pl.Float64)  # min and max need no cast (made floats below)
    return [
        col.null_count().alias(f"{name}\0nulls"),
        col.count().alias(f"{name}\0n"),
        as_float.mean().alias(f"{name}\0mean"),
        as_float.var(ddof=0).alias(f"{name}\0var"),
        col.min().alias(f"{name}\0min"),
        col.max().alias(f"{name}\0max"),
    ]


def _numeric_stats(computed: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per numeric column: nulls, count, mean, sum of squared deviations (m2), min and max."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        stats = {stat: computed[f"{name}\0{stat}"] for stat in ("nulls", "n", "mean")}
        for stat in ("min", "max"):  # an int column's, as the float its cast gives (the cast keeps the order)
            value = computed[f"{name}\0{stat}"]
            stats[stat] = None if value is None else float(value)
        stats["m2"] = (computed[f"{name}\0var"] or 0.0) * stats["n"]
        out[name] = stats
    return out


def profile_frame(frame: Any, contract: DatasetContract) -> dict[str, Any]:
    """Profile an in-memory frame (polars or pandas) whose columns follow the contract."""
    if not isinstance(frame, pl.DataFrame):
        frame = pl.DataFrame({c.name: _to_series(c, frame[c.name]) for c in contract.columns if c.name in frame})
    floats = [n for n, t in frame.schema.items() if t.is_float()]
    if floats:  # NaN and infinities are missing numbers, as validation makes them
        frame = frame.with_columns(pl.when(pl.col(n).is_finite()).then(pl.col(n)).alias(n) for n in floats)
    builder = ProfileBuilder(contract)
    builder.update(frame)
    return builder.result()


def _to_series(column: Column, values: Any) -> pl.Series:
    items = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in list(values)]
    dtype = {ColumnType.INT: pl.Int64, ColumnType.FLOAT: pl.Float64, ColumnType.BOOL: pl.Boolean}
    return pl.Series(column.name, items, dtype=dtype.get(column.type, pl.String), strict=False)
