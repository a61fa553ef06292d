"""The SageMaker control plane's records, durable in ``<workdir>/sagemaker/``.

moto keeps the records (model package groups and packages, models, endpoint configs,
endpoints, the jobs the twin ran; the endpoints' scalable targets and scaling policies in
Application Auto Scaling) in dicts and lists on its backends. After every change the twin
writes a snapshot of them, and restores it when it starts, before any request is served.

Why a pickle of moto's dicts rather than a JSON record of each object: moto's record
classes carry dozens of attributes (ARNs, versions, times, tags, nested specs) that its
Describe/List responses read; a JSON schema of our own would copy each class and drift
from it with every moto release, while a pickle keeps every attribute as moto wrote it.
moto is pinned (:mod:`mlops.twin.moto_ext`); a snapshot that no longer loads is set aside
with a warning, never half applied. The files are the user's own work dir, so unpickling
them trusts nothing it should not.

Written atomically: the snapshot goes to a temporary file, is fsynced, then renamed over
the previous one (and the directory fsynced), so a kill -9 at any moment leaves either
the previous snapshot or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from moto.sagemaker.models import sagemaker_backends

from mlops.twin import moto_ext

log = logging.getLogger("mlops.twin.sagemaker.state")

FILE = "control-plane.pickle"
FORMAT = 1  # bumped when what is written changes shape
# API actions that only read: every other action may have changed a record
READ_PREFIXES = ("Describe", "List", "Search", "Get", "Query", "BatchDescribe", "BatchGet")
# a job's process does not outlive the twin (JobRunner.stop_all, or the kill that ended it)
JOB_INTERRUPTED = "InternalServerError: the twin stopped while the job was running; the job's process ended with it"


class MotoRecords:
    """One moto backend's records, snapshotted to ``path``."""

    def __init__(self, path: Path, backend: Callable[[], Any]) -> None:
        self.path = Path(path)
        self.root = self.path.parent
        self._backend = backend
        self._lock = threading.Lock()

    @property
    def backend(self) -> Any:
        return self._backend()

    def _records(self) -> dict[str, Any]:
        """The backend's record collections (every dict and list it holds; not its settings, methods
        or the other backends it refers to)."""
        return {name: value for name, value in vars(self.backend).items() if isinstance(value, dict | list)}

    # -- write ----------------------------------------------------------------------------
    def save(self) -> None:
        """Write the snapshot now. Safe from any thread: writes are serialized and each is whole."""
        with self._lock:
            data = self._dumps()
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)  # the rename itself survives a crash of the machine
            finally:
                os.close(fd)

    def _dumps(self) -> bytes:
        # Another request may add a record while this one pickles ("dictionary changed size during
        # iteration"): try again (that request writes its own snapshot once it is done anyway).
        for _ in range(19):
            with contextlib.suppress(RuntimeError):
                return self._pickle()
        return self._pickle()

    def _pickle(self) -> bytes:
        return pickle.dumps({"format": FORMAT, "records": self._records()}, protocol=pickle.HIGHEST_PROTOCOL)

    # -- read -----------------------------------------------------------------------------
    def restore(self) -> bool:
        """Load the last snapshot into the (empty) backend; False when there is none to load."""
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)  # a write cut short: never renamed
        if not self.path.is_file():
            return False
        try:
            snapshot = pickle.loads(self.path.read_bytes())
            if snapshot.get("format") != FORMAT:
                raise ValueError(f"format {snapshot.get('format')!r}, expected {FORMAT}")
            records = dict(snapshot["records"])
        except Exception as exc:  # unreadable: keep it for inspection, start empty rather than half restored
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            log.warning("twin state %s could not be read (%s): moved to %s, starting empty", self.path, exc, aside)
            return False
        backend = self.backend
        for name, value in records.items():
            if isinstance(getattr(backend, name, None), dict | list):
                setattr(backend, name, value)
        return True

    def wsgi(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """``app`` (moto's API of the backend) writing the snapshot after every request that is not a read."""

        def persisted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            action = str(environ.get("HTTP_X_AMZ_TARGET", "")).rpartition(".")[2]
            body = list(app(environ, start_response))  # moto answers whole; the change is made once this returns
            if action and not action.startswith(READ_PREFIXES):
                self.save()
            return body

        return persisted


class ControlPlaneState(MotoRecords):
    """SageMaker's records; jobs the twin ran are kept as moto's, and those a stop cut short end Failed."""

    def __init__(self, root: Path, account: str, region: str) -> None:
        super().__init__(Path(root) / FILE, lambda: sagemaker_backends[account][region])

    def restore(self) -> bool:
        if not super().restore():
            return False
        backend = self.backend
        jobs = [*backend.training_jobs.values(), *backend.processing_jobs.values(), *backend.transform_jobs.values()]
        for job in jobs:
            if isinstance(job, moto_ext.RecordedJob) and job.status in ("InProgress", "Stopping"):
                job.fail(JOB_INTERRUPTED)
        return True

    def record_job(self, describe: dict[str, Any]) -> None:
        """Keep a job's Describe*Job response (JobRunner's ``record``) and write the snapshot."""
        moto_ext.record_job(self.backend, describe)
        self.save()
