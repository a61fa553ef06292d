"""Drift of live data against the training profile: PSI per feature, KS for numeric ones.

The baseline is the statistical profile written at validation time (``profile.json``):
numeric features carry quantile ``bin_edges`` with exact ``bin_fractions`` and 101
``quantiles``; categorical ones carry value ``frequencies``. Current data is binned with
the baseline's own edges, so PSI compares like with like, and KS compares the current
empirical CDF with the baseline CDF reconstructed from its quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

EPSILON = 1e-4  # share given to empty bins: PSI is undefined for a zero share
OTHER = "__other__"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    drifted: bool
    rows: int


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two distributions over the same bins.

    Only empty bins are floored (to ``EPSILON``, then both renormalised): a small but non-zero
    share is a real observation and counts as it is, as in evidently and most PSI implementations.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e = np.where(e > 0, e, EPSILON)
    a = np.where(a > 0, a, EPSILON)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def bin_fractions(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Share of values per baseline bin; values outside the edges count in the outer bins."""
    inner = np.asarray(edges[1:-1], dtype=float)
    idx = np.searchsorted(inner, values, side="right")
    counts = np.bincount(idx, minlength=len(edges) - 1).astype(float)
    return counts / max(len(values), 1)


def kolmogorov_pvalue(statistic: float, n: int) -> float:
    """Asymptotic p-value of a one-sample KS statistic (Kolmogorov distribution)."""
    if n <= 0 or statistic <= 0:
        return 1.0
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * statistic
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(max(2 * total, 0.0), 1.0))


def ks_against_quantiles(values: np.ndarray, quantiles: list[float]) -> tuple[float, float]:
    """KS statistic and p-value of current values against a CDF given by its quantiles."""
    q = np.asarray(quantiles, dtype=float)
    probs = np.linspace(0.0, 1.0, len(q))
    x = np.sort(values)
    n = len(x)
    if n == 0:
        return 0.0, 1.0
    base_at_x = np.interp(x, q, probs, left=0.0, right=1.0)
    cur_hi = np.arange(1, n + 1) / n
    cur_lo = np.arange(0, n) / n
    stat = float(max(np.max(np.abs(cur_hi - base_at_x)), np.max(np.abs(base_at_x - cur_lo))))
    return stat, kolmogorov_pvalue(stat, n)


def numeric_drift(name: str, baseline: Mapping[str, Any], values: Iterable[Any], psi_threshold: float) -> FeatureDrift:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    score = psi(np.asarray(baseline["bin_fractions"]), bin_fractions(arr, baseline["bin_edges"]))
    stat, pvalue = ks_against_quantiles(arr, baseline["quantiles"])
    return FeatureDrift(name, "numeric", score, stat, pvalue, score >= psi_threshold, len(arr))


def categorical_drift(
    name: str, baseline: Mapping[str, Any], values: Iterable[Any], psi_threshold: float
) -> FeatureDrift:
    freq: Mapping[str, float] = baseline["frequencies"]
    cats = [*freq, OTHER]
    counts = dict.fromkeys(cats, 0)
    n = 0
    for v in values:
        if v is None:
            continue
        key = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)  # 1.0 from CSV is category "1"
        counts[key if key in freq else OTHER] += 1
        n += 1
    expected = np.asarray([freq.get(c, 0.0) for c in cats])
    actual = np.asarray([counts[c] / max(n, 1) for c in cats])
    score = psi(expected, actual)
    return FeatureDrift(name, "categorical", score, None, None, score >= psi_threshold, n)


@dataclass
class DriftReport:
    features: list[FeatureDrift]
    drifted_share: float
    max_psi: float
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [asdict(f) for f in self.features],
            "drifted_share": self.drifted_share,
            "max_psi": self.max_psi,
            "rows": self.rows,
        }


def compare(profile: Mapping[str, Any], columns: Mapping[str, Iterable[Any]], psi_threshold: float) -> DriftReport:
    """Drift of each profiled feature present in ``columns`` (name -> values)."""
    results = []
    for name, baseline in profile["features"].items():
        if name not in columns:
            continue
        check = numeric_drift if baseline["kind"] == "numeric" else categorical_drift
        results.append(check(name, baseline, columns[name], psi_threshold))
    drifted = sum(r.drifted for r in results)
    return DriftReport(
        features=results,
        drifted_share=drifted / len(results) if results else 0.0,
        max_psi=max((r.psi for r in results), default=0.0),
        rows=max((r.rows for r in results), default=0),
    )
