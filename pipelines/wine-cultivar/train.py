"""wine-cultivar's own training code: an XGBoost classifier, in SageMaker script mode.

What it receives (as the XGBoost framework container gives it): hyperparameters as ``--name value``
arguments, the CSV channels in ``SM_CHANNEL_TRAIN`` and ``SM_CHANNEL_VALIDATION`` (a header row, the
dataset's columns), the model config in ``SM_CHANNEL_CONFIG/model-config.json`` (its feature columns
and target), and ``SM_MODEL_DIR``, where it saves the booster and what ``inference.py`` needs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import pandas as pd
import xgboost as xgb


def read_channel(name: str) -> pd.DataFrame:
    files = sorted(glob.glob(os.path.join(os.environ[f"SM_CHANNEL_{name.upper()}"], "*.csv")))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_depth", type=int, default=4)
    parser.add_argument("--eta", type=float, default=0.3)
    parser.add_argument("--num_round", type=int, default=60)
    parser.add_argument("--subsample", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with open(os.path.join(os.environ["SM_CHANNEL_CONFIG"], "model-config.json")) as f:
        config = json.load(f)
    target = config["dataset"]["target"]
    features = [c["name"] for c in config["dataset"]["columns"] if c["feature"] and c["name"] != target]

    train, validation = read_channel("train"), read_channel("validation")
    classes = sorted(int(c) for c in train[target].unique())
    index = {c: i for i, c in enumerate(classes)}
    dtrain = xgb.DMatrix(train[features], label=train[target].map(index))
    dvalid = xgb.DMatrix(validation[features], label=validation[target].map(index))
    params = {
        "objective": "multi:softprob",
        "num_class": len(classes),
        "max_depth": args.max_depth,
        "eta": args.eta,
        "subsample": args.subsample,
        "seed": args.seed,
        "eval_metric": "mlogloss",
        "nthread": 1,
    }
    booster = xgb.train(params, dtrain, num_boost_round=args.num_round, evals=[(dvalid, "validation")], verbose_eval=20)

    model_dir = os.environ["SM_MODEL_DIR"]
    booster.save_model(os.path.join(model_dir, "xgboost-model.json"))
    with open(os.path.join(model_dir, "model-info.json"), "w") as f:
        json.dump({"features": features, "classes": classes, "xgboost": xgb.__version__}, f)
    print(f"trained XGBoost {xgb.__version__} on {len(train)} rows, {len(features)} features, classes {classes}")


if __name__ == "__main__":
    main()
