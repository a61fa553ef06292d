"""Every extension of moto's internals, in one place (moto is pinned to one minor version).

The twin keeps moto for the API surface and records of S3, the SageMaker control
plane and Application Auto Scaling, and adds behaviour AWS has and moto lacks. Each
addition wraps one moto name through :func:`wrap` (on the backend instance, so a
backend reset drops it; or subclasses, where moto lets us), so the list of what is touched is :data:`PATCHED` and
``tests/unit/twin/test_moto_ext.py`` checks each name still exists in the pinned moto.
Callers give the behaviour (callbacks); this module only knows where moto keeps it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.s3 import models as s3_models
from moto.s3 import notifications as s3_notifications
from moto.s3 import utils as s3_utils
from moto.s3.exceptions import EntityTooSmall, InvalidPart
from moto.s3.models import FakeBucket, FakeDeleteMarker, FakeKey, FakeMultipart, S3Backend
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.utilities.utils import md5_hash

# (owner, attribute) of every moto name the twin replaces or adds
PATCHED: list[tuple[object, str]] = [
    (s3_notifications, "send_event"),
    (S3Backend, "_set_delete_marker"),
    (S3Backend, "complete_multipart_upload"),
    (FakeKey, "__init__"),  # a key whose value is a file on disk (file_backed_keys)
    (FakeMultipart, "complete"),
    (S3Backend, "put_object"),
    (S3Backend, "upload_part"),
    (S3Backend, "upload_part_copy"),
    (S3Backend, "copy_object"),
    (s3_utils._VersionedKeyStore, "setlist"),  # FakeBucket.keys is one, subclassed by track_versions
    (s3_utils._VersionedKeyStore, "__setitem__"),
    (s3_utils._VersionedKeyStore, "pop"),
    (SageMakerModelBackend, "create_model_package"),
    (SageMakerModelBackend, "update_model_package"),
    (SageMakerModelBackend, "create_endpoint"),
    (SageMakerModelBackend, "delete_endpoint"),
    (SageMakerResponse, "create_transform_job"),  # moto records a Completed job and runs nothing
]
# actions moto lacks
ADDED: list[tuple[object, str]] = [(SageMakerResponse, "update_endpoint"), (SageMakerResponse, "stop_transform_job")]


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


def track_versions(bucket: FakeBucket, changed: Callable[[str, str], None]) -> None:
    """``changed(bucket_name, key_name)`` after any change to a key's list of versions in ``bucket``.

    moto keeps a key's versions (objects and delete markers, oldest first) in ``bucket.keys``,
    a ``_VersionedKeyStore``; every put, copy, completed upload, delete marker and version
    deletion goes through its ``setlist``, ``__setitem__`` or ``pop``.
    """
    if isinstance(bucket.keys, _TrackedKeyStore):
        bucket.keys.changed = changed
        return
    store = _TrackedKeyStore(bucket.name, changed)
    dict.update(store, bucket.keys)  # the lists as they are, without disposing of anything
    bucket.keys = store


class _TrackedKeyStore(s3_utils._VersionedKeyStore):
    def __init__(self, bucket_name: str, changed: Callable[[str, str], None]) -> None:
        super().__init__()
        self.bucket_name = bucket_name
        self.changed = changed

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.changed(self.bucket_name, key)

    def setlist(self, key: Any, list_: Any) -> None:
        super().setlist(key, list_)
        self.changed(self.bucket_name, key)

    def pop(self, key: str) -> None:  # type: ignore[override]
        super().pop(key)
        self.changed(self.bucket_name, key)


# -- S3 data on disk --------------------------------------------------------------------------
# A "file-backed value" is any object with ``size``, ``etag`` (hex, or None) and ``reader()``
# (a file-like moto can seek and read, holding nothing in memory): moto keeps it as the key's
# value buffer, so the key's bytes stay on disk and moto reads them only where it needs them.


def _is_bytes(value: Any) -> bool:
    return isinstance(value, bytes | bytearray | str | memoryview)


def file_backed_keys() -> Callable[[], None]:
    """Let ``FakeKey(name, value, ...)`` take a file-backed value in place of bytes."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: FakeKey, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
            if _is_bytes(value):
                original(self, name, value, *args, **kwargs)
                return
            if kwargs.get("etag") is None and len(args) < 4:
                kwargs["etag"] = value.etag
            original(self, name, b"", *args, **kwargs)
            attach_body(self, value)

        return __init__

    return wrap(FakeKey, "__init__", make)


def attach_body(key: FakeKey, body: Any) -> None:
    """Make ``body`` (file-backed) the key's value; its bytes no longer live in memory."""
    key._value_buffer.close()
    key._value_buffer = body.reader()
    key.contentsize = body.size
    key._twin_body = body


def part_sizes(key: Any) -> list[int]:
    """Sizes of the parts a completed multipart upload made the object of ([] for a single PUT)."""
    return list(key.multipart.completed_part_sizes) if getattr(key, "multipart", None) else []


def body_of(key: Any) -> Any:
    """The file-backed value of a key, None for a key whose value moto holds."""
    return getattr(key, "_twin_body", None)


class StreamedValue:
    """The body of the current request, already on disk, for moto to store in place of the
    (empty) body it was handed: PutObject and UploadPart take it as their value."""

    def __init__(self) -> None:
        self._local = threading.local()

    def offer(self, value: Any) -> None:
        self._local.value = value

    def withdraw(self) -> Any:
        """The value if moto did not take it (the request failed first), else None."""
        value, self._local.value = getattr(self._local, "value", None), None
        return value

    def _take(self, value: Any) -> Any:
        offered = getattr(self._local, "value", None)
        if offered is None or value:
            return value
        self._local.value = None
        return offered

    def install(self, backend: S3Backend) -> Callable[[], None]:
        def make_put(original: Callable[..., Any]) -> Callable[..., Any]:
            def put_object(bucket_name: str, key_name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
                return original(bucket_name, key_name, self._take(value), *args, **kwargs)

            return put_object

        def make_part(original: Callable[..., Any]) -> Callable[..., Any]:
            def upload_part(bucket_name: str, multipart_id: str, part_id: int, value: Any) -> Any:
                return original(bucket_name, multipart_id, part_id, self._take(value))

            return upload_part

        def make_part_copy(original: Callable[..., Any]) -> Callable[..., Any]:
            def upload_part_copy(dest_bucket_name: str, multipart_id: str, part_id: int, *args: Any, **kw: Any) -> Any:
                copied = self._take(b"")
                if copied is None:
                    return original(dest_bucket_name, multipart_id, part_id, *args, **kw)
                multipart = backend.get_bucket(dest_bucket_name).multiparts[multipart_id]
                return multipart.set_part(part_id, copied)  # moto would read the whole source to slice it

            return upload_part_copy

        def make_copy(original: Callable[..., Any]) -> Callable[..., Any]:
            def copy_object(src_key: Any, *args: Any, **kwargs: Any) -> Any:
                if getattr(self._local, "value", None) is not None:
                    src_key = _WithoutValue(src_key)  # moto passes src_key.value to put_object, which takes ours
                return original(src_key, *args, **kwargs)

            return copy_object

        undo = [
            wrap(backend, "put_object", make_put),
            wrap(backend, "upload_part", make_part),
            wrap(backend, "upload_part_copy", make_part_copy),
            wrap(backend, "copy_object", make_copy),
        ]
        return lambda: [u() for u in reversed(undo)] and None


class _WithoutValue:
    """A source key as moto's copy_object sees it when its bytes were already copied on disk."""

    value = b""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._key, name)


def complete_from_files(
    assemble: Callable[[list[Any], str | None, str | None], tuple[Any, tuple[str, str, int] | None]],
) -> Callable[[], None]:
    """CompleteMultipartUpload without loading the parts, when they are file-backed.

    ``assemble(part_bodies, checksum_algorithm, checksum_type) -> (value, checksum_details)``
    makes the object's value from the parts' bodies; the checks and the ETag are moto's
    (``InvalidPart``, ``EntityTooSmall``, ``MalformedXML``; md5 of the part md5s, ``-N``).
    """

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def complete(self: FakeMultipart, body: Any) -> Any:
            listed = list(body)
            chosen = [self.parts.get(pn) for pn, _etag in listed]
            known = [p for p in chosen if p is not None]
            if not known or not all(body_of(p) is not None for p in known):
                return original(self, iter(listed))
            md5s = bytearray()
            last = None
            for (_pn, etag), part in zip(listed, chosen, strict=True):
                part_etag = part.etag.replace('"', "") if part is not None else None
                if part is None or part_etag != etag.replace('"', ""):
                    raise InvalidPart()
                if last is not None and last.contentsize < s3_models.S3_UPLOAD_PART_MIN_SIZE:
                    raise EntityTooSmall()
                md5s.extend(bytes.fromhex(part_etag))
                last = part
            value, checksum = assemble(
                [body_of(p) for p in chosen],
                self.metadata.get("x-amz-checksum-algorithm"),
                self.metadata.get("x-amz-checksum-type"),
            )
            self.completed_part_sizes = [p.size for p in chosen]
            return value, f"{md5_hash(bytes(md5s)).hexdigest()}-{len(listed)}", checksum

        return complete

    return wrap(FakeMultipart, "complete", make)


def versions(bucket: FakeBucket, key_name: str) -> list[Any]:
    """The key's versions, oldest first (objects and delete markers)."""
    return list(bucket.keys.getlist(key_name, []) or [])


def is_delete_marker(version: Any) -> bool:
    return isinstance(version, FakeDeleteMarker)


KEY_FIELDS = (  # FakeKey attributes a version record keeps, besides name, version id, size, etag and date
    "encryption",
    "kms_key_id",
    "bucket_key_enabled",
    "lock_mode",
    "lock_legal_status",
    "lock_until",
    "checksum_algorithm",
    "checksum_value",
    "checksum_type",
    "checksum_parts",
    "website_redirect_location",
)


def version_record(backend: S3Backend, version: Any) -> dict[str, Any]:
    """What a version is, as plain data (its bytes aside): enough for :func:`restore_versions`."""
    record: dict[str, Any] = {
        "version_id": version.version_id,
        "last_modified": version.last_modified.isoformat(),
    }
    if is_delete_marker(version):
        record["delete_marker"] = True
        return record
    record.update(
        size=version.size,
        etag=version.etag.strip('"'),
        storage_class=version.storage_class,
        metadata=dict(version.metadata),
        tags=backend.tagger.get_tag_dict_for_resource(version.arn),
        part_sizes=part_sizes(version),
        **{field: getattr(version, field, None) for field in KEY_FIELDS},
    )
    return record


def restore_versions(
    backend: S3Backend, bucket_name: str, key_name: str, records: list[dict[str, Any]], value: Callable[[int], Any]
) -> list[Any]:
    """Put a key's versions back as they were, ids and dates included (``value(i)``: the bytes of record i)."""
    bucket = backend.get_bucket(bucket_name)
    restored: list[Any] = []
    for i, record in enumerate(records):
        when = datetime.fromisoformat(record["last_modified"])
        if record.get("delete_marker"):
            # a marker points at what it hid; moto only looks at whether that is a marker too
            hidden = restored[-1] if restored else FakeKey(key_name, b"", backend.account_id, backend.region_name)
            marker = FakeDeleteMarker(hidden)
            marker._version_id = record["version_id"]
            marker.last_modified = when
            restored.append(marker)
            continue
        key = FakeKey(
            name=key_name,
            value=value(i),
            account_id=backend.account_id,
            region_name=backend.region_name,
            storage=record.get("storage_class"),
            etag=record["etag"],
            is_versioned=record["version_id"] != "null",
            version_id=record["version_id"],
            bucket_name=bucket_name,
        )
        for field in KEY_FIELDS:
            setattr(key, field, record.get(field))
        key.last_modified = when
        key.metadata.update(record.get("metadata") or {})  # Content-Type included
        if record.get("part_sizes"):
            key.multipart = FakeMultipart(key_name, {}, backend.account_id, backend.region_name)
            key.multipart.completed_part_sizes = list(record["part_sizes"])
        if record.get("tags"):
            backend.tagger.tag_resource(key.arn, [{"Key": k, "Value": v} for k, v in record["tags"].items()])
        restored.append(key)
    if restored:
        bucket.keys.setlist(key_name, restored)
    return restored


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


def serve_transform_jobs(start: Callable[[dict[str, Any]], str], stop: Callable[[str], None]) -> Callable[[], None]:
    """CreateTransformJob runs the job (``start(request) -> arn``, which records it InProgress before it
    returns); StopTransformJob (which moto lacks) asks it to stop. Both after the twin's request rules."""
    original = SageMakerResponse.create_transform_job

    def create_transform_job(self: SageMakerResponse) -> ActionResult:
        params = dict(self.params) if self.automated_parameter_parsing else json.loads(self.body or "{}")
        return ActionResult({"TransformJobArn": start(params)})

    def stop_transform_job(self: SageMakerResponse) -> EmptyResult:
        stop(self._get_param("TransformJobName"))
        return EmptyResult()

    SageMakerResponse.create_transform_job = create_transform_job  # type: ignore[method-assign]
    SageMakerResponse.stop_transform_job = stop_transform_job  # type: ignore[attr-defined]

    def undo() -> None:
        SageMakerResponse.create_transform_job = original  # type: ignore[method-assign]
        delattr(SageMakerResponse, "stop_transform_job")

    return undo


class RecordedJob:
    """A training, processing or transform job the twin ran, as moto's Describe*Job and List*Jobs read it.

    The twin runs jobs itself (:mod:`mlops.twin.sagemaker.jobs`), not through moto's
    Create*Job; this puts the job's Describe*Job response where moto looks for it,
    with the attributes its list actions filter on.
    """

    PREFIXES = {"training": "TrainingJob", "processing": "ProcessingJob", "transform": "TransformJob"}

    def __init__(self, describe: dict[str, Any]) -> None:
        self.kind = next(kind for kind, prefix in self.PREFIXES.items() if f"{prefix}Name" in describe)
        prefix = self.PREFIXES[self.kind]
        self.response_object = {k: _time(k, v) for k, v in describe.items()}
        self.arn = describe[f"{prefix}Arn"]
        name, status = describe[f"{prefix}Name"], describe[f"{prefix}Status"]
        self.training_job_name = self.processing_job_name = self.transform_job_name = name
        self.training_job_status = self.processing_job_status = self.transform_job_status = status
        self.creation_time = self.response_object.get("CreationTime")
        self.last_modified_time = self.response_object.get("LastModifiedTime", self.creation_time)
        self.training_end_time = self.response_object.get("TrainingEndTime")
        self.processing_end_time = self.response_object.get("ProcessingEndTime")
        self.transform_end_time = self.response_object.get("TransformEndTime")
        self.failure_reason = describe.get("FailureReason")

    @property
    def status(self) -> str:
        return str(self.training_job_status)

    def fail(self, reason: str) -> None:
        """End the job as Failed with ``reason`` (it can no longer finish)."""
        now = datetime.now(self.creation_time.tzinfo if self.creation_time else None)
        key = f"{self.PREFIXES[self.kind]}Status"
        self.response_object.update({key: "Failed", "FailureReason": reason, "LastModifiedTime": now})
        if self.kind == "training":
            self.response_object["SecondaryStatus"] = "Failed"
        self.training_job_status = self.processing_job_status = self.transform_job_status = "Failed"
        self.failure_reason, self.last_modified_time = reason, now


def _time(key: str, value: Any) -> Any:
    # the runner writes ISO-8601 strings; moto's serializer wants datetimes for timestamp members
    return datetime.fromisoformat(value) if key.endswith("Time") and isinstance(value, str) else value


def record_job(backend: SageMakerModelBackend, describe: dict[str, Any]) -> RecordedJob:
    """Keep ``describe`` (a Describe*Job response) as the job's record in moto: Describe*Job answers it."""
    job = RecordedJob(describe)
    jobs = {"training": backend.training_jobs, "processing": backend.processing_jobs}.get(
        job.kind, backend.transform_jobs
    )
    jobs[job.training_job_name] = job  # type: ignore[assignment]
    return job
