"""The scheduled model monitor: drift of captured traffic and model quality from ground truth.

One run per model per schedule tick:

1. Find the model package the endpoint serves (endpoint tag ``mlops:model-package-arn``,
   else the newest approved version) and, through its lineage, the training profile.
2. Read the data capture objects written since the last run (state kept in the
   artifacts bucket), compare the captured features with the profile (PSI per feature
   with the profile's bins, KS for numeric ones).
3. Join ground-truth labels uploaded to ``ground-truth/<model>/`` (CSV with
   ``inference_id`` and the target column) with captured predictions by inference id,
   and compute the model-quality metric (accuracy or RMSE).
4. Return the numbers; the handler publishes them as CloudWatch metrics (EMF), which
   the model's alarms watch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops import env_names as E
from mlops.config import ModelConfig
from mlops.core import capture as cap
from mlops.core.drift import compare
from mlops.core.metrics import quality_metric_name, serving_quality
from mlops.naming import CAPTURE_PREFIX
from mlops.s3io import S3Location, get_json, put_json

PACKAGE_TAG = "mlops:model-package-arn"


def tagged_package(sagemaker: Any, endpoint_arn: str) -> str | None:
    """The model package an endpoint serves, by the tag its last successful deployment put on it."""
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=endpoint_arn).get("Tags", [])}
    return tags.get(PACKAGE_TAG)


@dataclass(frozen=True)
class MonitorSettings:
    capture_bucket: str
    capture_prefix: str
    incoming_bucket: str
    artifacts_bucket: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> MonitorSettings:
        keys = {
            "capture_bucket": E.CAPTURE_BUCKET,
            "incoming_bucket": E.INCOMING_BUCKET,
            "artifacts_bucket": E.ARTIFACTS_BUCKET,
        }
        missing = [v for v in keys.values() if not env.get(v)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(capture_prefix=CAPTURE_PREFIX, **{k: env[v] for k, v in keys.items()})


class ModelMonitor:
    def __init__(self, s3: Any, sagemaker: Any, settings: MonitorSettings) -> None:
        self.s3 = s3
        self.sm = sagemaker
        self.settings = settings

    # -- what is served, and its baseline -----------------------------------------------
    def served_package(self, endpoint: str, model: str) -> str | None:
        try:
            arn = self.sm.describe_endpoint(EndpointName=endpoint)["EndpointArn"]
        except self.sm.exceptions.ClientError:
            return None
        tagged = tagged_package(self.sm, arn)
        if tagged is not None:
            return tagged
        approved = self.sm.list_model_packages(
            ModelPackageGroupName=model, ModelApprovalStatus="Approved", SortBy="CreationTime", SortOrder="Descending"
        )["ModelPackageSummaryList"]
        return approved[0]["ModelPackageArn"] if approved else None

    def baseline(self, package_arn: str) -> dict[str, Any]:
        package = self.sm.describe_model_package(ModelPackageName=package_arn)
        lineage_uri = (package.get("CustomerMetadataProperties") or {}).get("lineage")
        if not lineage_uri:
            raise LookupError(f"{package_arn} records no lineage, so no training profile to compare with")
        found = get_json(self.s3, S3Location.parse(lineage_uri))
        if found is None or not found[0].get("profile_uri"):
            raise LookupError(f"lineage {lineage_uri} names no profile")
        profile = get_json(self.s3, S3Location.parse(found[0]["profile_uri"]))
        if profile is None:
            raise LookupError(f"profile {found[0]['profile_uri']} is missing")
        return profile[0]

    # -- the run ----------------------------------------------------------------------------
    def run(self, config: ModelConfig, *, endpoint: str | None = None, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        endpoint = endpoint or config.name
        state_loc = S3Location(self.settings.artifacts_bucket, f"monitoring/{config.name}/state.json")
        state = (get_json(self.s3, state_loc) or ({},))[0]
        since = float(state.get("last_capture_time", 0))
        features = [f.name for f in config.dataset.features]
        prefix = f"{self.settings.capture_prefix.strip('/')}/{endpoint}/"
        objects = cap.list_objects(self.s3, self.settings.capture_bucket, prefix, since)
        requests: list[cap.CapturedRequest] = []
        unreadable = 0
        for obj in objects:
            reqs, bad = cap.parse_lines(cap.read_lines(self.s3, self.settings.capture_bucket, obj["Key"]), features)
            requests += reqs
            unreadable += bad
        result: dict[str, Any] = {
            "model": config.name,
            "endpoint": endpoint,
            "time": datetime.fromtimestamp(now, UTC).isoformat(),
            "capture_objects": len(objects),
            "captured_rows": sum(len(r.rows) for r in requests),
            "unreadable_records": unreadable,
            "drift": None,
            "quality": None,
        }
        package = self.served_package(endpoint, config.name)
        result["model_package_arn"] = package
        if requests and package:
            profile = self.baseline(package)
            report = compare(profile, cap.columns(requests, features), config.monitoring.alarms.drift_psi)
            result["drift"] = report.to_dict()
        result["quality"] = self._quality(config, requests) if requests else None
        if objects:
            state["last_capture_time"] = objects[-1]["LastModified"].timestamp()
        state["last_run"] = now
        put_json(self.s3, state_loc, state)
        put_json(
            self.s3,
            S3Location(self.settings.artifacts_bucket, f"monitoring/{config.name}/runs/{int(now)}.json"),
            result,
        )
        return result

    def _quality(self, config: ModelConfig, requests: list[cap.CapturedRequest]) -> dict[str, Any] | None:
        labels, problems, _ = cap.read_ground_truth(
            self.s3, self.settings.incoming_bucket, config.name, config.dataset.target
        )
        pairs = [
            (labels[r.inference_id], r.predictions[0])
            for r in requests
            if r.inference_id in labels and len(r.predictions) == 1
        ]
        name = quality_metric_name(config.problem_type)
        if not pairs:
            return {"metric": name, "value": None, "joined": 0, "problems": problems}
        truth = [_label(t) for t, _ in pairs]
        pred = [_label(p) for _, p in pairs]
        _, value = serving_quality(config.problem_type, truth, pred)
        return {"metric": name, "value": value, "joined": len(pairs), "problems": problems}


def _label(value: Any) -> Any:
    """Ground truth arrives as CSV text, predictions as JSON: compare 1, "1" and 1.0 alike."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value).strip()


def summary(result: dict[str, Any]) -> str:
    drift = result.get("drift") or {}
    quality = result.get("quality") or {}
    return json.dumps(
        {
            "model": result["model"],
            "rows": result["captured_rows"],
            "drifted_share": drift.get("drifted_share"),
            "max_psi": drift.get("max_psi"),
            quality.get("metric", "quality"): quality.get("value"),
        }
    )
