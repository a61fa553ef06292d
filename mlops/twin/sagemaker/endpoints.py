"""The SageMaker endpoint control plane on the twin.

Handlers and state machines call the real SageMaker API (CreateModel,
CreateEndpointConfig, CreateEndpoint, UpdateEndpoint, DescribeEndpoint) on the twin's
endpoint; moto keeps the records. This module makes those records serve:

- CreateEndpoint answers with the endpoint ``Creating`` and loads each production
  variant's model (``model.tar.gz`` and the script-mode source dir named by
  ``SAGEMAKER_SUBMIT_DIRECTORY``) into the runtime in the background: ``InService``
  once they serve, ``Failed`` (with the reason) when one does not load.
- UpdateEndpoint (which moto lacks; added here) sets ``Updating`` and runs a blue/green
  deployment: the new fleet takes the canary share of traffic for the wait interval
  while the auto-rollback alarms are watched; any alarm in ALARM, or a model that fails
  to load, sets ``RollingBack``, restores the old fleet and records the reason, then
  ``InService``. Otherwise all traffic shifts and the endpoint is ``InService``.
- DeleteEndpoint sets ``Deleting``, stops serving, and the record is gone after
  :attr:`EndpointManager.delete_seconds` (twin time), as SageMaker takes a while too.
- ``resume()``, when the twin starts again on a work dir whose records were restored
  (:mod:`.state`), starts the model servers of its endpoints again from the model data in S3.

What each status allows is checked where requests arrive (:mod:`.rules`).
"""

from __future__ import annotations

import logging
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.models import sagemaker_backends
from moto.sagemaker.utils import arn_formatter

from mlops.s3io import S3Location
from mlops.twin import moto_ext
from mlops.twin.cloudwatch.alarms import AlarmEvaluator
from mlops.twin.sagemaker.serving import CaptureConfig, Endpoint, EndpointRuntime, LoadedModel, Variant

log = logging.getLogger("mlops.twin.sagemaker.endpoints")


class EndpointManager:
    def __init__(
        self,
        *,
        account: str,
        region: str,
        s3: Any,
        runtime: EndpointRuntime,
        s3_as: Callable[[str], Any] | None = None,  # an S3 client signed as a role (IAM on the twin)
        alarms: AlarmEvaluator,
        workdir: Path,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,  # a record changed outside an API request
    ) -> None:
        self.account = account
        self.region = region
        self.s3 = s3
        self.runtime = runtime
        self.alarms = alarms
        self.root = workdir / "endpoints"
        self.time_scale = time_scale
        self.clock = clock
        self.deployments: list[dict[str, Any]] = []  # history, newest last
        self.s3_as = s3_as
        self.roles: dict[str, str] = {}  # endpoint name -> the execution role its capture is written as
        self.delete_seconds = 10.0  # how long an endpoint stays Deleting (scaled by time_scale)
        self.on_change = on_change

    @property
    def backend(self) -> Any:
        return sagemaker_backends[self.account][self.region]

    def install(self) -> None:
        moto_ext.on_create_endpoint(self.backend, self._serve_new)
        moto_ext.on_delete_endpoint(self.backend, self.delete)
        moto_ext.add_update_endpoint(self.update)

    def resume(self) -> None:
        """Serve the endpoints restored from the work dir again (the twin restarted).

        What a restart does to an endpoint, by the status it was recorded in:

        - InService: its model servers start again from the model data in S3, with its endpoint
          config's variants and weights; InvokeEndpoint answers as before, no new deployment.
        - Creating: finished, as SageMaker finishes a creation whoever asked for it: InService,
          or Failed if its model does not load.
        - Updating: the blue/green deployment cannot go on (its canary and alarm watch lived in
          the stopped twin, and the execution that waited for it was failed at start), so it ends
          as SageMaker ends a failed update: InService on the config it served before, with a
          FailureReason saying why. The new config's model never takes traffic.
        - RollingBack: as Updating (the old fleet serves again).
        - Deleting: the deletion finishes, the record is gone.
        - Failed (and the rest): left as recorded.

        A model that no longer loads (its data gone from S3) leaves its endpoint Failed with the reason.
        """
        for record in list(self.backend.endpoints.values()):
            status = record.endpoint_status
            if status == "Deleting":
                del self.backend.endpoints[record.endpoint_name]
                continue
            if status not in ("InService", "Creating", "Updating", "RollingBack"):
                continue
            try:
                self.runtime.set_endpoint(self._endpoint(record.endpoint_name, record.endpoint_config_name))
            except Exception as exc:
                record.endpoint_status = "Failed"
                record.failure_reason = f"the twin restarted and the model failed to load: {exc}"
                log.warning("endpoint %s: %s", record.endpoint_name, record.failure_reason)
                continue
            record.endpoint_status = "InService"
            if status in ("Updating", "RollingBack"):
                record.failure_reason = (
                    "rolled back: the twin stopped during the deployment; "
                    f"the endpoint serves its previous config {record.endpoint_config_name}"
                )
                record.last_modified_time = utcnow()
        self.on_change()

    def _serve_new(self, endpoint: Any) -> None:
        endpoint.endpoint_status = "Creating"
        threading.Thread(target=self._create, args=(endpoint,), daemon=True, name="endpoint-create").start()

    def _create(self, endpoint: Any) -> None:
        try:
            self.runtime.set_endpoint(self._endpoint(endpoint.endpoint_name, endpoint.endpoint_config_name))
            endpoint.endpoint_status = "InService"
        except Exception as exc:  # a model that does not load: the endpoint fails to create
            endpoint.failure_reason = f"failed to load the model: {exc}"
            endpoint.endpoint_status = "Failed"
        endpoint.last_modified_time = utcnow()
        self.on_change()

    def delete(self, name: str, remove: Callable[[str], None]) -> None:
        record = self.backend.endpoints.get(name)
        if record is None:
            raise KeyError(f'Could not find endpoint "{arn_formatter("endpoint", name, self.account, self.region)}".')
        record.endpoint_status = "Deleting"
        self.runtime.remove_endpoint(name)

        def finish() -> None:
            self._sleep(self.delete_seconds)
            if self.backend.endpoints.get(name) is record:
                remove(name)
                self.on_change()

        threading.Thread(target=finish, daemon=True, name="endpoint-delete").start()

    # -- loading -------------------------------------------------------------------------
    def _fetch(self, uri: str, dest: Path, role: str | None = None) -> Path:
        if dest.exists():
            return dest
        loc = S3Location.parse(uri)
        tmp = dest.with_name(dest.name + ".download")
        tmp.mkdir(parents=True, exist_ok=True)
        archive = tmp / "archive.tar.gz"
        s3 = self.s3_as(role) if role and self.s3_as else self.s3  # SageMaker downloads as the model's role
        s3.download_file(loc.bucket, loc.key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "x", filter="data")
        (tmp / "x").replace(dest)
        return dest

    def _model(self, model_name: str) -> LoadedModel:
        model = self.backend._models.get(model_name)
        if model is None:
            raise KeyError(f"model {model_name} not found")
        container = model.primary_container or (model.containers[0] if model.containers else {})
        env = container.get("Environment", {})
        base = self.root / model_name
        role = model.execution_role_arn
        model_dir = self._fetch(container["ModelDataUrl"], base / "model", role)
        code_dir = (
            self._fetch(env["SAGEMAKER_SUBMIT_DIRECTORY"], base / "code", role)
            if "SAGEMAKER_SUBMIT_DIRECTORY" in env
            else model_dir / "code"
        )
        # the model server of the container's image: its workers, its packages, the source dir's requirements
        return LoadedModel(
            model_name,
            model_dir,
            code_dir,
            env.get("SAGEMAKER_PROGRAM", "inference.py"),
            image_uri=container.get("Image", ""),
            environment={k: str(v) for k, v in env.items()},
            log_path=base / "model-server.log",
        ).load()

    def _endpoint(self, name: str, config_name: str) -> Endpoint:
        config = self.backend.endpoint_configs[config_name]
        variants: list[Variant] = []
        try:
            for v in config.production_variants:
                variants.append(
                    Variant(
                        name=v["VariantName"],
                        model=self._model(v["ModelName"]),
                        weight=float(v.get("InitialVariantWeight", 1.0)),
                        model_package_arn=self._package_of(v["ModelName"]),
                    )
                )
        except Exception:  # a variant that does not load: stop the ones already started
            for variant in variants:
                variant.model.close()
            raise
        capture = None
        dc = config.data_capture_config or {}
        if dc.get("EnableCapture", True) and dc.get("DestinationS3Uri"):
            modes = {
                o.get("CaptureMode")
                for o in dc.get("CaptureOptions", [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}])
            }
            capture = CaptureConfig(
                dc["DestinationS3Uri"],
                int(dc.get("InitialSamplingPercentage", 100)),
                "Input" in modes,
                "Output" in modes,
            )
        role = self.backend._models[config.production_variants[0]["ModelName"]].execution_role_arn
        if role:
            self.roles[name] = role
        return Endpoint(name, variants, capture, config_name)

    def _package_of(self, model_name: str) -> str | None:
        model = self.backend._models.get(model_name)
        for tag in getattr(model, "tags", []) or []:
            if tag.get("Key") == "mlops:model-package-arn":
                return tag.get("Value")
        return None

    # -- blue/green --------------------------------------------------------------------------
    def update(self, name: str, config_name: str, deployment: dict[str, Any]) -> str:
        record = self.backend.endpoints.get(name)
        if record is None:
            raise KeyError(f"Could not find endpoint {arn_formatter('endpoint', name, self.account, self.region)}.")
        if record.endpoint_status == "Updating":
            raise RuntimeError(f"Endpoint {name} is already being updated.")
        record.endpoint_status = "Updating"
        threading.Thread(target=self._blue_green, args=(name, config_name, deployment), daemon=True).start()
        return record.arn

    def _sleep(self, seconds: float) -> None:
        time.sleep(max(seconds * self.time_scale, 0.0))

    def _blue_green(self, name: str, config_name: str, deployment: dict[str, Any]) -> None:
        record = self.backend.endpoints[name]
        blue = self.runtime.endpoints[name]
        outcome: dict[str, Any] = {
            "endpoint": name,
            "from": blue.config_name,
            "to": config_name,
            "started": self.clock(),
        }
        try:
            green = self._endpoint(name, config_name)
        except Exception as exc:
            return self._finish(record, blue, outcome, f"new fleet failed to start: {exc}")
        policy = deployment.get("BlueGreenUpdatePolicy", {})
        routing = policy.get("TrafficRoutingConfiguration", {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0})
        alarms = [a["AlarmName"] for a in deployment.get("AutoRollbackConfiguration", {}).get("Alarms", [])]
        if routing.get("Type") == "CANARY":
            share = float(routing.get("CanarySize", {}).get("Value", 10)) / 100
            self.runtime.set_endpoint(
                replace(
                    blue,
                    variants=[replace(v, weight=v.weight * (1 - share)) for v in blue.variants]
                    + [replace(v, weight=v.weight * share) for v in green.variants],
                )
            )
            outcome["canary_share"] = share
            reason = self._watch(alarms, float(routing.get("WaitIntervalInSeconds", 0)))
            if reason:
                return self._finish(record, blue, outcome, reason)
        self.runtime.set_endpoint(green)
        reason = self._watch(alarms, float(policy.get("TerminationWaitInSeconds", 0)))
        if reason:
            return self._finish(record, blue, outcome, reason)
        record.endpoint_config_name = config_name
        self._finish(record, green, outcome, None)

    def _watch(self, alarms: list[str], seconds: float) -> str | None:
        """Evaluate the rollback alarms for the baking period; the reason to roll back, if any."""
        deadline = time.monotonic() + seconds * self.time_scale
        while True:
            self.alarms.evaluate(self.clock())
            firing = [a for a in alarms if a in self.alarms.alarms and self.alarms.alarms[a].state == "ALARM"]
            if firing:
                return f"rolled back: auto-rollback alarm(s) {', '.join(firing)} in ALARM"
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))

    def _finish(self, record: Any, serving: Endpoint, outcome: dict[str, Any], failure: str | None) -> None:
        if failure:
            record.endpoint_status = "RollingBack"  # traffic goes back to the old fleet
        self.runtime.set_endpoint(serving)
        record.endpoint_status = "InService"
        record.failure_reason = failure
        record.last_modified_time = utcnow()
        outcome.update(status="RolledBack" if failure else "Succeeded", reason=failure, finished=self.clock())
        self.deployments.append(outcome)
        self.on_change()
        log.info("deployment of %s: %s", record.endpoint_name, outcome)
