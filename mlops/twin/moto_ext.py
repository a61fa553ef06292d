"""Every extension of moto's internals, in one place (moto is pinned to one minor version).

The twin keeps moto for the API surface and records of S3, the SageMaker control
plane and Application Auto Scaling, and adds behaviour AWS has and moto lacks. Each
addition wraps one moto name through :func:`wrap` (on the backend instance, so a
backend reset drops it; or subclasses, where moto lets us), so the list of what is touched is :data:`PATCHED` and
``tests/unit/twin/test_moto_ext.py`` checks each name still exists in the pinned moto.
Callers give the behaviour (callbacks); this module only knows where moto keeps it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.s3 import notifications as s3_notifications
from moto.s3.models import S3Backend
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

# (owner, attribute) of every moto name the twin replaces or adds
PATCHED: list[tuple[object, str]] = [
    (s3_notifications, "send_event"),
    (S3Backend, "_set_delete_marker"),
    (S3Backend, "complete_multipart_upload"),
    (SageMakerModelBackend, "create_model_package"),
    (SageMakerModelBackend, "update_model_package"),
    (SageMakerModelBackend, "create_endpoint"),
    (SageMakerModelBackend, "delete_endpoint"),
]
ADDED: list[tuple[object, str]] = [(SageMakerResponse, "update_endpoint")]  # actions moto lacks


def wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[], None]:
    """Replace ``owner.name`` by ``make(original)``; returns the function that puts the original back."""
    original = getattr(owner, name)
    setattr(owner, name, make(original))
    return lambda: setattr(owner, name, original)


# -- S3 -----------------------------------------------------------------------------------
def on_s3_change(backend: S3Backend, callback: Callable[[str, str, Any, Any], None]) -> Callable[[], None]:
    """Call ``callback(account, event_name, bucket, key)`` after every notification moto sends.

    moto calls ``notifications.send_event`` through the module attribute for every object
    change; it sends none when a versioned delete only adds a delete marker, so that is
    reported too (as ``s3:ObjectRemoved:DeleteMarkerCreated``).
    """

    def make_send(original: Callable[..., Any]) -> Callable[..., Any]:
        def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
            original(account_id, event_name, bucket, key)
            callback(account_id, str(getattr(event_name, "value", event_name)), bucket, key)

        return send_event

    def make_marker(original: Callable[..., Any]) -> Callable[..., Any]:
        def _set_delete_marker(bucket_name: str, key_name: str) -> Any:
            marker = original(bucket_name, key_name)
            callback(
                backend.account_id, "s3:ObjectRemoved:DeleteMarkerCreated", backend.get_bucket(bucket_name), marker
            )
            return marker

        return _set_delete_marker

    undo = [wrap(s3_notifications, "send_event", make_send), wrap(backend, "_set_delete_marker", make_marker)]
    return lambda: [u() for u in reversed(undo)] and None


class MultipartCompletion:
    """Tells whether the current thread is inside CompleteMultipartUpload.

    moto stores a completed multipart upload with put_object, which notifies "Put" before
    its own "CompleteMultipartUpload"; S3 sends only the latter.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def active(self) -> bool:
        return bool(getattr(self._local, "active", False))

    def install(self, backend: S3Backend) -> Callable[[], None]:
        local = self._local

        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            def complete_multipart_upload(*args: Any, **kwargs: Any) -> Any:
                local.active = True
                try:
                    return original(*args, **kwargs)
                finally:
                    local.active = False

            return complete_multipart_upload

        return wrap(backend, "complete_multipart_upload", make)


# -- SageMaker ------------------------------------------------------------------------------
def on_model_package_change(
    backend: SageMakerModelBackend,
    changed: Callable[[str], None],
    kept_on_update: tuple[str, ...] = ("customer_metadata_properties", "model_approval_status", "approval_description"),
) -> Callable[[], None]:
    """``changed(arn)`` after a package is created or its approval status changes.

    UpdateModelPackage without a member leaves it as it was (moto would set it to None;
    AWS does not).
    """

    def make_create(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_model_package(*args: Any, **kwargs: Any) -> Any:
            arn = original(*args, **kwargs)
            changed(arn)
            return arn

        return create_model_package

    def make_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_model_package(model_package_arn: str, **kwargs: Any) -> Any:
            # moto calls this with keyword arguments (its signature grows between releases)
            package = model_package(backend, model_package_arn)
            for field in kept_on_update:
                if kwargs.get(field) is None and package is not None:
                    kwargs[field] = getattr(package, field)
            before = package.model_approval_status if package is not None else None
            arn = original(model_package_arn=model_package_arn, **kwargs)
            if model_package(backend, arn).model_approval_status != before:
                changed(arn)
            return arn

        return update_model_package

    undo = [
        wrap(backend, "create_model_package", make_create),
        wrap(backend, "update_model_package", make_update),
    ]
    return lambda: [u() for u in reversed(undo)] and None


def model_package(backend: SageMakerModelBackend, arn_or_name: str) -> Any:
    name = backend.model_package_name_mapping.get(arn_or_name, arn_or_name)
    return backend.model_packages.get(name)


def on_create_endpoint(backend: SageMakerModelBackend, after: Callable[[Any], None]) -> Callable[[], None]:
    """``after(endpoint_record)`` once moto has recorded a new endpoint."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def create_endpoint(endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
            endpoint = original(endpoint_name, endpoint_config_name, tags)
            after(endpoint)
            return endpoint

        return create_endpoint

    return wrap(backend, "create_endpoint", make)


def on_delete_endpoint(
    backend: SageMakerModelBackend, delete: Callable[[str, Callable[[str], None]], None]
) -> Callable[[], None]:
    """DeleteEndpoint calls ``delete(name, remove)``; ``remove(name)`` drops moto's record (when it is gone).

    ``KeyError`` from ``delete`` answers as SageMaker's ValidationException.
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_endpoint(endpoint_name: str) -> None:
            try:
                delete(endpoint_name, original)
            except KeyError as exc:
                raise ValidationError(message=str(exc).strip("'\"")) from None

        return delete_endpoint

    return wrap(backend, "delete_endpoint", make)


def add_update_endpoint(update: Callable[[str, str, dict[str, Any]], str]) -> Callable[[], None]:
    """Serve UpdateEndpoint (moto has no such action): ``update(name, config, deployment) -> arn``.

    ``KeyError`` and ``RuntimeError`` from ``update`` answer as SageMaker's ValidationException.
    """

    def update_endpoint(self: SageMakerResponse) -> ActionResult:
        try:
            arn = update(
                self._get_param("EndpointName"),
                self._get_param("EndpointConfigName"),
                self._get_param("DeploymentConfig") or {},
            )
        except (KeyError, RuntimeError) as exc:
            raise ValidationError(message=str(exc).strip("'\"")) from None
        return ActionResult({"EndpointArn": arn})

    had = "update_endpoint" in vars(SageMakerResponse)
    SageMakerResponse.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    return (lambda: delattr(SageMakerResponse, "update_endpoint")) if not had else (lambda: None)


class RecordedJob:
    """A training or processing job the twin ran, as moto's Describe*Job and List*Jobs read it.

    The twin runs jobs itself (:mod:`mlops.twin.sagemaker.jobs`), not through moto's
    CreateTrainingJob; this puts the job's Describe*Job response where moto looks for it,
    with the attributes its list actions filter on.
    """

    def __init__(self, describe: dict[str, Any]) -> None:
        self.kind = "training" if "TrainingJobName" in describe else "processing"
        prefix = "TrainingJob" if self.kind == "training" else "ProcessingJob"
        self.response_object = {k: _time(k, v) for k, v in describe.items()}
        self.arn = describe[f"{prefix}Arn"]
        name, status = describe[f"{prefix}Name"], describe[f"{prefix}Status"]
        self.training_job_name = self.processing_job_name = name
        self.training_job_status = self.processing_job_status = status
        self.creation_time = self.response_object.get("CreationTime")
        self.last_modified_time = self.response_object.get("LastModifiedTime", self.creation_time)
        self.training_end_time = self.response_object.get("TrainingEndTime")
        self.processing_end_time = self.response_object.get("ProcessingEndTime")
        self.failure_reason = describe.get("FailureReason")

    @property
    def status(self) -> str:
        return str(self.training_job_status)

    def fail(self, reason: str) -> None:
        """End the job as Failed with ``reason`` (it can no longer finish)."""
        now = datetime.now(self.creation_time.tzinfo if self.creation_time else None)
        key = "TrainingJobStatus" if self.kind == "training" else "ProcessingJobStatus"
        self.response_object.update({key: "Failed", "FailureReason": reason, "LastModifiedTime": now})
        if self.kind == "training":
            self.response_object["SecondaryStatus"] = "Failed"
        self.training_job_status = self.processing_job_status = "Failed"
        self.failure_reason, self.last_modified_time = reason, now


def _time(key: str, value: Any) -> Any:
    # the runner writes ISO-8601 strings; moto's serializer wants datetimes for timestamp members
    return datetime.fromisoformat(value) if key.endswith("Time") and isinstance(value, str) else value


def record_job(backend: SageMakerModelBackend, describe: dict[str, Any]) -> RecordedJob:
    """Keep ``describe`` (a Describe*Job response) as the job's record in moto: Describe*Job answers it."""
    job = RecordedJob(describe)
    jobs = backend.training_jobs if job.kind == "training" else backend.processing_jobs
    jobs[job.training_job_name] = job  # type: ignore[assignment]
    return job
