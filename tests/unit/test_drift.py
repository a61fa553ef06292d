from __future__ import annotations

import math

import numpy as np
import pytest

from mlops.core.drift import bin_fractions, compare, kolmogorov_pvalue, ks_against_quantiles, psi


def _numeric_baseline(values: np.ndarray) -> dict:
    edges = np.quantile(values, np.linspace(0, 1, 11))
    return {
        "kind": "numeric",
        "bin_edges": edges.tolist(),
        "bin_fractions": bin_fractions(values, edges.tolist()).tolist(),
        "quantiles": np.quantile(values, np.linspace(0, 1, 101)).tolist(),
    }


def test_psi_matches_the_textbook_formula() -> None:
    expected = np.array([0.25, 0.25, 0.5])
    actual = np.array([0.5, 0.25, 0.25])
    by_hand = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0 + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0


def test_bin_fractions_put_outliers_in_the_outer_bins() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    fr = bin_fractions(np.array([-5, 0.5, 1.0, 1.5, 2.5, 99]), edges)
    assert fr.tolist() == pytest.approx([2 / 6, 2 / 6, 2 / 6])


def test_ks_matches_scipy_for_a_known_distribution() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    baseline = rng.normal(size=200_000)
    current = rng.normal(loc=0.3, size=2000)
    stat, pvalue = ks_against_quantiles(current, np.quantile(baseline, np.linspace(0, 1, 101)).tolist())
    ref = stats.kstest(current, "norm")
    assert stat == pytest.approx(ref.statistic, abs=0.01)
    assert pvalue < 1e-6 and ref.pvalue < 1e-6
    assert kolmogorov_pvalue(0.01, 100) == pytest.approx(1.0)


def test_compare_flags_shifted_numeric_and_categorical_features() -> None:
    rng = np.random.default_rng(1)
    base_x = rng.normal(size=50_000)
    profile = {
        "features": {
            "x": _numeric_baseline(base_x),
            "stable": _numeric_baseline(base_x),
            "colour": {"kind": "categorical", "frequencies": {"red": 0.5, "blue": 0.5}},
        }
    }
    current = {
        "x": rng.normal(loc=1.0, size=5000),
        "stable": rng.normal(size=5000),
        "colour": ["red"] * 4000 + ["blue"] * 500 + ["green"] * 500 + [None] * 10,
    }
    report = compare(profile, current, psi_threshold=0.2)
    by_name = {f.feature: f for f in report.features}
    assert by_name["x"].drifted and by_name["x"].psi > 0.5
    assert not by_name["stable"].drifted and by_name["stable"].psi < 0.02
    assert by_name["colour"].drifted and by_name["colour"].rows == 5000
    assert report.drifted_share == pytest.approx(2 / 3)
    assert report.to_dict()["max_psi"] == max(f.psi for f in report.features)
