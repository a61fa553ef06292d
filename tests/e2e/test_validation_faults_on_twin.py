"""Validate Lambda workers killed with SIGKILL (issue 9, item 4), on the twin.

- killed once while validating: the state machine retries and the dataset validates once;
- killed on every attempt: after the retries the error is recorded: the execution fails with
  the cause, the object is quarantined with an error report, its fate is ``errored`` and the
  notification topic gets a message;
- the record step killed too: the notification still goes out, the object stays in incoming;
- killed while it checks a dataset folder's commit marker: notified, the parts stay in place.

Run apart with ``pytest -m faults``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples.generate_data import generate, write_csv, write_parts
from mlops.services.fates import Fate, FateStore
from mlops.twin import control
from mlops.twin.stepfunctions.asl.history import entered_states

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
MODEL = "tumor-classifier"


def _output(handle: control.TwinHandle, name: str) -> str:
    (value,) = [v for k, v in handle.state["outputs"].items() if k.split(".", 1)[-1] == name]
    return str(value)


def _workers_of(twin_pid: int, function: str) -> list[int]:
    """This twin's Lambda worker processes running ``function`` (children of its daemon, found by the
    environment Lambda gives them): other twins on the machine (tests in parallel) run the same names."""
    found = []
    wanted = f"AWS_LAMBDA_FUNCTION_NAME={function}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) != twin_pid:
                continue
            if b"worker.py" in proc.joinpath("cmdline").read_bytes() and wanted in proc.joinpath(
                "environ"
            ).read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class WorkerKiller(threading.Thread):
    """Kills every worker of one function, as soon as it appears, until stopped."""

    def __init__(
        self, twin: control.TwinHandle, function: str, limit: int | None = None, when: Callable[[], bool] = lambda: True
    ) -> None:
        super().__init__(daemon=True, name=f"kill-{function}")
        self.twin_pid = int(twin.state["pid"])
        self.function = function
        self.limit = limit
        self.when = when
        self.killed: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005) and (self.limit is None or len(self.killed) < self.limit):
            if not self.when():
                continue
            for pid in _workers_of(self.twin_pid, self.function):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.killed.add(pid)


def _entered(twin: control.TwinHandle, mentions: str, state: str) -> bool:
    for execution in control.load_executions(twin.workdir, "Validation"):
        if mentions in json.dumps(execution.get("input")) and state in entered_states(execution.get("history") or []):
            return True
    return False


def _validating(twin: control.TwinHandle, key: str) -> bool:
    """The execution for ``key`` has invoked the validate function and not heard back yet."""
    for execution in control.load_executions(twin.workdir, "Validation"):
        if key in json.dumps(execution.get("input")):
            types = [e["type"] for e in execution.get("history") or []]
            return "TaskStarted" in types and types[-1] == "TaskStarted"
    return False


def test_a_validate_worker_killed_once_is_retried_and_validates_once(twin: control.TwinHandle, tmp_path: Path) -> None:
    key = f"incoming/{MODEL}/killed-once.csv"
    # killed while it validates (an idle worker that dies is replaced before the next invoke, as in AWS)
    killer = WorkerKiller(twin, _output(twin, "ValidationFunctionName"), limit=1, when=lambda: _validating(twin, key))
    killer.start()
    try:
        path = write_csv(generate(MODEL, "good", 100_000, seed=22), tmp_path / "killed-once.csv")
        s3 = twin.client()
        s3.put_object(Bucket=twin.bucket("incoming"), Key=key, Body=path.read_bytes())
        (execution,) = control.wait_for_executions(twin.workdir, key, machine="Validation", timeout_s=240)
    finally:
        killer.done.set()
        killer.join()
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    failures = [e["taskFailedEventDetails"]["error"] for e in execution["history"] if e["type"] == "TaskFailed"]
    assert failures == ["Runtime.ExitError"]
    assert entered_states(execution["history"]) == [
        "ValidateDataset",
        "DatasetPassed?",
        "PublishDatasetValidated",
        "ValidationPassed",
    ]
    version = execution["output"]["dataset_version"]
    validated = [o["Key"] for o in s3.list_objects_v2(Bucket=twin.bucket("validated")).get("Contents", [])]
    assert sorted(validated) == [
        f"validated/{MODEL}/{version}/{name}" for name in ("data.csv", "manifest.json", "profile.json")
    ]
    fate = FateStore(s3, twin.bucket("artifacts")).get(MODEL, version)
    assert fate is not None and fate["state"] in (Fate.VALIDATED, Fate.QUEUED, Fate.TRAINING, Fate.TRAINED)
    assert not [n for n in _notifications(twin) if key in n["message"]]


def test_a_validate_worker_killed_on_every_attempt_leaves_a_report_and_a_notification(
    twin: control.TwinHandle, tmp_path: Path
) -> None:
    killer = WorkerKiller(twin, _output(twin, "ValidationFunctionName"))
    killer.start()
    key = f"incoming/{MODEL}/killed.csv"
    try:
        path = write_csv(generate(MODEL, "good", 20_000, seed=21), tmp_path / "killed.csv")
        s3 = twin.client()
        version_id = s3.put_object(Bucket=twin.bucket("incoming"), Key=key, Body=path.read_bytes())["VersionId"]
        (execution,) = control.wait_for_executions(twin.workdir, key, machine="Validation", timeout_s=240)
    finally:
        killer.done.set()
        killer.join()

    # retried (a crashed worker twice), then recorded, notified and failed with the validate step's cause
    assert execution["status"] == "FAILED"
    assert execution["error"] == "Runtime.ExitError", execution.get("cause")
    assert "Runtime exited with error" in execution["cause"]
    history: list[dict[str, Any]] = execution["history"]
    failures = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    assert failures == ["Runtime.ExitError"] * 3, failures
    assert len(killer.killed) >= 3
    assert entered_states(history) == [
        "ValidateDataset",
        "RecordValidationError",
        "PublishValidationErrored",
        "ValidationErrored",
    ]

    # the report says why, for which object version
    artifacts = twin.bucket("artifacts")
    reports = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=artifacts, Prefix=f"reports/{MODEL}/").get("Contents", [])
        if o["Key"].endswith("validation.json")
    ]
    (report_key,) = reports
    report = json.loads(s3.get_object(Bucket=artifacts, Key=report_key)["Body"].read())
    assert report["status"] == "errored" and report["error"] == "Runtime.ExitError"
    assert "Runtime exited with error" in report["cause"]
    assert report["source"]["key"] == key and report["source"]["version_id"] == version_id
    assert report["execution_id"] == execution["arn"]

    # the object is in quarantine with the report, out of incoming (its version kept)
    assert "Contents" not in s3.list_objects_v2(Bucket=twin.bucket("incoming"), Prefix=key)
    quarantine = twin.bucket("quarantine")
    quarantined = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=quarantine).get("Contents", []))
    version = report["dataset_version"]
    prefix = f"quarantine/{MODEL}/{version}/"
    assert quarantined == [f"{prefix}killed.csv", f"{prefix}report.json"]
    assert s3.get_object(Bucket=quarantine, Key=f"{prefix}killed.csv")["Body"].read() == path.read_bytes()

    # its fate, and the notification on the topic
    fate = FateStore(s3, artifacts).get(MODEL, version)
    assert fate is not None and fate["state"] == Fate.ERRORED
    notes = _notifications(twin)
    (note,) = [n for n in notes if key in n["message"]]
    assert "could not complete" in note["message"] and "Runtime.ExitError" in note["message"]
    assert report_key in note["message"]
    assert note["topic"] == _output(twin, "NotificationsTopicArn")


def _notifications(twin: control.TwinHandle) -> list[dict[str, Any]]:
    """What the twin's SNS would have sent (it keeps every published message)."""
    path = twin.workdir / "notifications.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def test_when_recording_the_error_fails_too_the_notification_still_goes_out(
    twin: control.TwinHandle, tmp_path: Path
) -> None:
    killers = [
        WorkerKiller(twin, _output(twin, name))
        for name in ("ValidationFunctionName", "RecordValidationErrorFunctionName")
    ]
    for killer in killers:
        killer.start()
    key = f"incoming/{MODEL}/nothing-works.csv"
    try:
        path = write_csv(generate(MODEL, "good", 2_000, seed=23), tmp_path / "nothing-works.csv")
        s3 = twin.client()
        s3.put_object(Bucket=twin.bucket("incoming"), Key=key, Body=path.read_bytes())
        (execution,) = control.wait_for_executions(twin.workdir, key, machine="Validation", timeout_s=240)
    finally:
        for killer in killers:
            killer.done.set()
            killer.join()
    assert execution["status"] == "FAILED" and execution["error"] == "Runtime.ExitError"
    assert entered_states(execution["history"]) == [
        "ValidateDataset",
        "RecordValidationError",
        "ErrorNotRecorded",
        "PublishValidationErrored",
        "ValidationErrored",
    ]
    (note,) = [n for n in _notifications(twin) if key in n["message"]]
    assert "recording the error failed too (Runtime.ExitError)" in note["message"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=twin.bucket("incoming"), Prefix=key)["Contents"]] == [key]


def test_a_commit_check_killed_on_every_attempt_is_notified(twin: control.TwinHandle, tmp_path: Path) -> None:
    prefix = f"incoming/{MODEL}/killed-folder/"
    part, _marker = write_parts(generate(MODEL, "good", 600, seed=24), tmp_path / "folder", 1)  # no marker sent
    killer = WorkerKiller(
        twin, _output(twin, "ValidationFunctionName"), when=lambda: _entered(twin, prefix, "WaitForCommitMarker")
    )
    killer.start()
    try:
        s3 = twin.client()
        s3.upload_file(str(part), twin.bucket("incoming"), prefix + part.name)
        (execution,) = control.wait_for_executions(twin.workdir, prefix, machine="Validation", timeout_s=240)
    finally:
        killer.done.set()
        killer.join()
    assert execution["status"] == "FAILED" and execution["error"] == "Runtime.ExitError"
    assert entered_states(execution["history"])[-4:] == [
        "CheckCommit",
        "CommitCheckErrored",
        "PublishValidationErrored",
        "ValidationErrored",
    ]
    (note,) = [n for n in _notifications(twin) if prefix in n["message"]]
    assert "checking the commit marker" in note["message"] and "left in place" in note["message"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=twin.bucket("incoming"), Prefix=prefix)["Contents"]] == [
        prefix + part.name
    ]
