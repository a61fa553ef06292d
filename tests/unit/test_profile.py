"""The statistical profile: shape, exact bin fractions (ties included), frequencies, null rates."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest

from examples.generate_data import generate
from mlops.config import DatasetContract
from mlops.core.drift import bin_fractions, compare
from mlops.core.profile import ProfileBuilder, bucket_high, bucket_ids, bucket_low, numeric_bin_fractions, profile_frame
from mlops.settings import model_config


def _contract() -> DatasetContract:
    return DatasetContract.model_validate(
        {
            "target": "label",
            "columns": [
                {"name": "id", "type": "int", "unique": True, "feature": False},
                {"name": "size", "type": "float", "nullable": True},
                {"name": "count", "type": "int"},
                {"name": "colour", "type": "string", "allowed": ["red", "green", "blue"]},
                {"name": "city", "type": "string", "nullable": True},
                {"name": "ok", "type": "bool"},
                {"name": "label", "type": "int", "allowed": [0, 1]},
            ],
        }
    )


def _frame(n: int = 10_000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.lognormal(1.0, 0.8, n)
    size[rng.random(n) < 0.1] = np.nan
    return pl.DataFrame(
        {
            "id": np.arange(n),
            "size": size,
            "count": rng.poisson(2, n),  # few distinct values: ties at every quantile
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "city": rng.choice(["a", "b", None], n, p=[0.6, 0.2, 0.2]),
            "ok": rng.random(n) < 0.25,
            "label": rng.integers(0, 2, n),
        }
    ).with_columns(pl.col("size").fill_nan(None))


def test_profile_shape_and_json() -> None:
    profile = profile_frame(_frame(), _contract())
    assert profile["version"] == 1 and profile["rows"] == 10_000
    assert list(profile["features"]) == ["size", "count", "colour", "city", "ok"]  # no id (feature: false), no target
    assert profile["target"]["name"] == "label" and profile["target"]["kind"] == "categorical"
    size = profile["features"]["size"]
    assert set(size) == {
        "kind", "type", "null_rate", "count", "mean", "std", "min", "max", "bin_edges", "bin_fractions", "quantiles"
    }  # fmt: skip
    assert size["kind"] == "numeric" and size["type"] == "float"
    assert len(size["bin_edges"]) == 11 and len(size["bin_fractions"]) == 10 and len(size["quantiles"]) == 101
    assert sum(size["bin_fractions"]) == pytest.approx(1.0)
    assert json.loads(json.dumps(profile)) == profile


def test_numeric_moments_and_quantiles_match_the_data() -> None:
    frame = _frame()
    size = profile_frame(frame, _contract())["features"]["size"]
    values = frame["size"].drop_nulls().to_numpy()
    assert size["count"] == len(values)
    assert size["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert size["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert size["min"] == values.min() and size["max"] == values.max()
    assert size["bin_edges"][0] == values.min() and size["bin_edges"][-1] == values.max()
    assert size["quantiles"][0] == values.min() and size["quantiles"][-1] == values.max()
    assert np.all(np.diff(size["quantiles"]) >= 0) and np.all(np.diff(size["bin_edges"]) >= 0)
    exact = np.quantile(values, np.linspace(0, 1, 101))
    # quantiles come from a histogram with ~0.4% wide buckets
    assert np.allclose(size["quantiles"], exact, rtol=0.01)
    # the edges are deciles: each bin holds about a tenth of the data
    assert all(0.08 < f < 0.12 for f in size["bin_fractions"])


def test_bin_fractions_are_exact_against_the_edges() -> None:
    frame = _frame()
    size = profile_frame(frame, _contract())["features"]["size"]
    values = frame["size"].drop_nulls().to_numpy()
    counted = np.bincount(np.searchsorted(size["bin_edges"][1:-1], values, side="right"), minlength=10)
    assert size["bin_fractions"] == (counted / len(values)).tolist()
    # and the drift code, binning live data with the same edges, agrees exactly
    assert size["bin_fractions"] == bin_fractions(values, size["bin_edges"]).tolist()


def test_integer_column_with_ties() -> None:
    frame = _frame()
    count = profile_frame(frame, _contract())["features"]["count"]
    values = frame["count"].to_numpy()
    edges = count["bin_edges"]
    assert all(float(e).is_integer() for e in edges)  # edges sit on the integers, where the ties are
    expected = numeric_bin_fractions(values, edges)
    assert count["bin_fractions"] == expected
    assert sum(count["bin_fractions"]) == pytest.approx(1.0)
    # Poisson(2) has a few values with heavy ties: bins are far from 0.1 each, some are empty
    assert max(count["bin_fractions"]) > 0.2 and 0.0 in count["bin_fractions"]
    # every value's share is recoverable: 2 is the most frequent value
    share_of_2 = float((values == 2).mean())
    assert any(abs(f - share_of_2) < 1e-12 for f in count["bin_fractions"])
    assert all(float(q).is_integer() for q in count["quantiles"])


def test_numeric_bin_fractions_helper() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    assert numeric_bin_fractions([0.5, 1.0, 1.0, 2.5, None, float("nan"), -4, 99], edges) == [2 / 6, 2 / 6, 2 / 6]
    assert numeric_bin_fractions([1, 1, 1, 1], [1.0, 1.0, 1.0]) == [0.0, 1.0]
    assert numeric_bin_fractions([1.0], [1.0]) == []


def test_categorical_frequencies_and_null_rates() -> None:
    frame = _frame()
    profile = profile_frame(frame, _contract())
    colour = profile["features"]["colour"]
    assert colour["kind"] == "categorical" and colour["null_rate"] == 0.0 and colour["count"] == 10_000
    expected = {k: v / 10_000 for k, v in frame["colour"].value_counts().iter_rows()}
    assert colour["frequencies"] == pytest.approx(expected) and next(iter(colour["frequencies"])) == "red"
    city = profile["features"]["city"]
    assert city["null_rate"] == frame["city"].null_count() / 10_000
    assert city["count"] == 10_000 - frame["city"].null_count()
    assert city["frequencies"]["a"] == pytest.approx((frame["city"] == "a").sum() / city["count"])
    assert set(profile["features"]["ok"]["frequencies"]) == {"true", "false"}
    assert profile["features"]["ok"]["frequencies"]["true"] == pytest.approx(frame["ok"].mean())
    assert set(profile["target"]["frequencies"]) == {"0", "1"}
    assert profile["features"]["size"]["null_rate"] == frame["size"].null_count() / 10_000


def test_chunks_give_the_same_profile_as_one_frame() -> None:
    frame, contract = _frame(), _contract()
    builder = ProfileBuilder(contract)
    for start in range(0, frame.height, 1_500):
        builder.update(frame.slice(start, 1_500))
    chunked, whole = builder.result(), profile_frame(frame, contract)
    for name, entry in whole["features"].items():
        for key, value in entry.items():
            same = pytest.approx(value) if key in ("mean", "std", "frequencies") else value
            assert chunked["features"][name][key] == same, (name, key)


def test_pandas_frames_and_the_drift_monitor_use_the_profile() -> None:
    contract = model_config("tumor-classifier").dataset
    train = generate("tumor-classifier", "good", 4000, seed=1)
    profile = profile_frame(train, contract)
    assert profile["features"]["mean_concavity"]["null_rate"] == pytest.approx(train["mean_concavity"].isna().mean())

    def columns(frame: Any) -> dict[str, list[Any]]:
        return {f.name: frame[f.name].tolist() for f in contract.features}

    same = compare(profile, columns(generate("tumor-classifier", "good", 2000, seed=2)), 0.2)
    drifted = compare(profile, columns(generate("tumor-classifier", "drifted", 2000, seed=2)), 0.2)
    assert same.max_psi < 0.05
    assert {f.feature for f in drifted.features if f.drifted} >= {"mean_radius", "worst_radius"}


def test_float_buckets_are_ordered_and_contain_their_values() -> None:
    values = np.array([-1e9, -3.5, -1.0, -1e-300, -0.0, 0.0, 1e-300, 1.0, 3.5, 37.0, 1e9])
    ids = bucket_ids(values)
    assert np.all(np.diff(ids) >= 0)
    assert all(bucket_low(b) <= v < bucket_high(b) for b, v in zip(ids, values, strict=True))
    assert bucket_low(bucket_ids(np.array([37.0]))[0]) == 37.0  # small integers are bucket boundaries
