"""Faults, bursts and races on the training side of the loop (issue 9), on a twin run as `mlops local up` runs it.

Run them apart with ``pytest -m faults``:

- kill -9 of the twin while a model trains, then a restart: the execution ends FAILED with
  a cause, no ``train.py`` runs on unowned, the lock does not hold the model, and the next
  upload trains;
- a training stopped by an operator (StopExecution) does not keep the model locked;
- a burst of uploads while a model trains: the uploads queue, and when the running
  training ends one follow-up run trains the newest of them; the others are superseded;
- a restart (graceful, then kill -9) after a model was deployed: the registry and the
  endpoint are still there, and the endpoint answers as before with no new deployment;
- two approvals close together for one endpoint, and a duplicate state-change event: one
  deployment at a time, the newest package serves, the older one is deployed then replaced
  or ends superseded (never Rejected, no rollback notice), the duplicate deploys nothing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from examples.generate_data import generate, write_csv
from mlops.cli import app
from mlops.demo import feature_frame, runtime_client
from mlops.services.fates import Fate, FateStore
from mlops.settings import model_config
from mlops.twin import control
from mlops.twin.stepfunctions.asl.history import entered_states

from .conftest import TIME_SCALE

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
MODEL = "tumor-classifier"
# rows of a dataset whose training outlasts a twin restart (gradient boosting, 150 trees)
SLOW_ROWS = 60_000


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "twin"
    try:
        yield path
    finally:
        control.stop(path)


def _upload(handle: control.TwinHandle, tmp_path: Path, name: str, rows: int, seed: int) -> str:
    path = write_csv(generate(MODEL, "good", rows, seed=seed), tmp_path / name)
    key = f"incoming/{MODEL}/{name}"
    handle.client().upload_file(str(path), handle.bucket("incoming"), key)
    return key


def _validated_version(handle: control.TwinHandle, key: str) -> str:
    (validation,) = control.wait_for_executions(handle.workdir, key, machine="Validation", timeout_s=180)
    assert validation["status"] == "SUCCEEDED", validation.get("cause")
    return str(validation["output"]["dataset_version"])


def _training_of(handle: control.TwinHandle, version: str) -> dict[str, Any]:
    (training,) = control.wait_for_executions(handle.workdir, version, machine="Training", timeout_s=600)
    return training


def _wait(check: Any, timeout_s: float, what: str, poll_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(poll_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def _running_in(handle: control.TwinHandle, version: str, state: str) -> dict[str, Any] | None:
    """The training execution for ``version`` while it is RUNNING and has entered ``state``."""
    for execution in control.load_executions(handle.workdir, "Training"):
        mentions = version in json.dumps(execution.get("input"))
        if mentions and execution["status"] == "RUNNING" and state in entered_states(execution.get("history") or []):
            return execution
    return None


def _train_processes(workdir: Path) -> list[int]:
    """``train.py`` processes of SageMaker jobs of this twin (their working directory is in it)."""
    found = []
    root = str(workdir.resolve())
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if "train.py" in cmdline and cwd.startswith(root):
            found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _fates(handle: control.TwinHandle) -> dict[str, dict[str, Any]]:
    store = FateStore(handle.client(), handle.bucket("artifacts"))
    return {f["dataset_version"]: f for f in store.list_fates(MODEL)}


def _lock(handle: control.TwinHandle) -> dict[str, Any] | None:
    s3 = handle.client()
    try:
        body = s3.get_object(Bucket=handle.bucket("artifacts"), Key=f"locks/training/{MODEL}.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return dict(json.loads(body))


def test_kill_9_while_training_then_restart(cdk_out: Path, workdir: Path, tmp_path: Path) -> None:
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    first = _validated_version(handle, _upload(handle, tmp_path, "slow.csv", SLOW_ROWS, seed=1))
    interrupted = _wait(lambda: _running_in(handle, first, "TrainModel"), 300, "the training job started")
    (job,) = _wait(lambda: _train_processes(workdir), 120, "train.py running")

    assert (_lock(handle) or {}).get("execution_id") == interrupted["arn"]  # the lock names its owner

    pid = int(handle.state["pid"])
    os.kill(pid, signal.SIGKILL)  # the fault: no shutdown, no last step, no release
    os.waitpid(pid, 0)
    assert _alive(job), "train.py outlives the killed twin (the state the restart must clean up)"

    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    # the execution is failed, with its cause, and described as such through the API
    sfn = handle.client("stepfunctions")
    described = sfn.describe_execution(executionArn=interrupted["arn"])
    assert described["status"] == "FAILED" and described.get("cause"), described
    # no orphan: the job's process did not survive the restart
    _wait(lambda: not _alive(job) and not _train_processes(workdir), 30, "the orphaned train.py stopped")

    # the lock names an execution that is not RUNNING: the next upload trains at once
    second = _validated_version(handle, _upload(handle, tmp_path, "after-restart.csv", 1500, seed=2))
    training = _training_of(handle, second)
    assert training["status"] == "SUCCEEDED", training.get("cause")
    assert "TrainModel" in entered_states(training["history"])
    assert entered_states(training["history"])[-1] == "ModelRegistered"
    assert _lock(handle) is None  # released by the run that finished

    fates = _fates(handle)
    assert fates[first]["state"] == Fate.FAILED
    assert "did not finish" in fates[first]["detail"] and "FAILED" in fates[first]["detail"]
    assert fates[second]["state"] == Fate.TRAINED


def test_a_stopped_training_does_not_keep_the_model_locked(cdk_out: Path, workdir: Path, tmp_path: Path) -> None:
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    first = _validated_version(handle, _upload(handle, tmp_path, "slow.csv", SLOW_ROWS // 2, seed=3))
    running = _wait(lambda: _running_in(handle, first, "TrainModel"), 300, "the training job started")
    handle.client("stepfunctions").stop_execution(
        executionArn=running["arn"], error="Operator", cause="stopped to test the lock"
    )
    second = _validated_version(handle, _upload(handle, tmp_path, "next.csv", 1500, seed=4))
    training = _training_of(handle, second)
    assert training["status"] == "SUCCEEDED", training.get("cause")
    assert "TrainModel" in entered_states(training["history"])
    assert _fates(handle)[first]["state"] == Fate.FAILED  # taken over: recorded with why


def test_a_burst_of_uploads_trains_the_newest_once_the_running_training_ends(
    cdk_out: Path, workdir: Path, tmp_path: Path
) -> None:
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    first = _validated_version(handle, _upload(handle, tmp_path, "first.csv", SLOW_ROWS // 2, seed=5))
    _wait(lambda: _running_in(handle, first, "TrainModel"), 300, "the first training job started")

    keys: list[str] = []
    uploads = [
        threading.Thread(target=lambda i=i: keys.append(_upload(handle, tmp_path, f"burst-{i}.csv", 1500, 10 + i)))
        for i in range(5)
    ]
    for thread in uploads:
        thread.start()
    for thread in uploads:
        thread.join()
    burst = sorted(_validated_version(handle, key) for key in keys)
    queued = [_training_of(handle, version) for version in burst]
    for execution in queued:
        assert execution["status"] == "SUCCEEDED", execution.get("cause")
        assert entered_states(execution["history"])[-1] == "TrainingQueued", "uploaded while the model trained"
    assert _training_of(handle, first)["status"] == "SUCCEEDED"

    def follow_ups() -> list[dict[str, Any]]:
        found = [e for e in control.load_executions(workdir, "Training") if "follow-up" in e["name"]]
        return found if found and all(e["status"] != "RUNNING" for e in found) else []

    (follow_up,) = _wait(follow_ups, 600, "the follow-up run")
    assert follow_up["status"] == "SUCCEEDED", follow_up.get("cause")
    assert follow_up["input"]["trigger"] == "follow-up" and "TrainModel" in entered_states(follow_up["history"])
    newest = burst[-1]
    fates = _fates(handle)
    assert fates[first]["state"] == Fate.TRAINED
    assert fates[newest]["state"] == Fate.TRAINED
    assert fates[newest]["runs"][-1]["execution"] == follow_up["arn"]  # the follow-up trained the newest
    for version in burst[:-1]:
        assert fates[version]["state"] == Fate.SUPERSEDED and fates[version]["superseded_by"] == newest
    trainings = [
        e for e in control.load_executions(workdir, "Training") if "TrainModel" in entered_states(e["history"])
    ]
    assert len(trainings) == 2, "the first upload and one follow-up: nothing trained twice, nothing newer lost"
    assert _lock(handle) is None


def _registry(handle: control.TwinHandle) -> list[dict[str, Any]]:
    sm = handle.client("sagemaker")
    found = sm.list_model_packages(ModelPackageGroupName=MODEL, SortBy="CreationTime", SortOrder="Ascending")
    keep = ("ModelPackageArn", "ModelPackageVersion", "ModelApprovalStatus", "CustomerMetadataProperties")
    described = [
        sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in found["ModelPackageSummaryList"]
    ]
    return [{k: d.get(k) for k in keep} for d in described]


def test_a_restart_keeps_the_registry_and_the_endpoint_serving(cdk_out: Path, workdir: Path, tmp_path: Path) -> None:
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    version = _validated_version(handle, _upload(handle, tmp_path, "good.csv", 1500, seed=21))
    training = _training_of(handle, version)
    assert training["status"] == "SUCCEEDED", training.get("cause")
    assert entered_states(training["history"])[-1] == "ModelRegistered"
    (deploy,) = _wait(
        lambda: [e for e in control.load_executions(workdir, "Deploy") if e["status"] != "RUNNING"], 300, "deployed"
    )
    assert deploy["status"] == "SUCCEEDED", deploy.get("cause")
    rows = feature_frame(generate(MODEL, "good", 5, seed=22), model_config(MODEL)).to_csv(header=False, index=False)

    def predict() -> Any:
        answer = runtime_client(handle).invoke_endpoint(
            EndpointName=MODEL, ContentType="text/csv", Accept="application/json", Body=rows
        )
        return json.loads(answer["Body"].read())

    registry, endpoint, predictions = (
        _registry(handle),
        handle.client("sagemaker").describe_endpoint(EndpointName=MODEL),
        predict(),
    )
    assert registry and registry[0]["ModelApprovalStatus"] == "Approved"

    for restart in ("graceful", "kill -9"):
        if restart == "graceful":
            assert control.stop(workdir)
        else:
            pid = int(handle.state["pid"])
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
        assert _registry(handle) == registry, restart
        described = handle.client("sagemaker").describe_endpoint(EndpointName=MODEL)
        assert (described["EndpointStatus"], described["EndpointConfigName"]) == (
            "InService",
            endpoint["EndpointConfigName"],
        ), restart
        assert predict() == predictions, restart  # the same model serves, with no new deployment
        shown = CliRunner().invoke(app, ["models", MODEL, "--workdir", str(workdir)], env={"COLUMNS": "250"})
        assert shown.exit_code == 0 and "Approved" in shown.output, shown.output
    assert len(control.load_executions(workdir, "Deploy")) == 1


def _approve_copy(handle: control.TwinHandle, of: dict[str, Any]) -> str:
    """A new Approved version of the same model (the registry emits its state-change event)."""
    sm = handle.client("sagemaker")
    described = sm.describe_model_package(ModelPackageName=of["ModelPackageArn"])
    return str(
        sm.create_model_package(
            ModelPackageGroupName=MODEL,
            InferenceSpecification=described["InferenceSpecification"],
            ModelApprovalStatus="Approved",
            CustomerMetadataProperties=described["CustomerMetadataProperties"],
        )["ModelPackageArn"]
    )


def _deploys(workdir: Path) -> list[dict[str, Any]]:
    return control.load_executions(workdir, "Deploy")


def _package_of(execution: dict[str, Any]) -> str:
    return str((execution.get("input") or {}).get("detail", {}).get("ModelPackageArn"))


def test_racing_approvals_deploy_one_at_a_time_and_leave_true_statuses(
    cdk_out: Path, workdir: Path, tmp_path: Path
) -> None:
    handle = control.start(cdk_out, workdir, port=0, time_scale=TIME_SCALE)
    training = _training_of(handle, _validated_version(handle, _upload(handle, tmp_path, "good.csv", 1500, seed=31)))
    assert training["status"] == "SUCCEEDED", training.get("cause")
    (first,) = _wait(lambda: [e for e in _deploys(workdir) if e["status"] != "RUNNING"], 300, "v1 deployed")
    assert first["status"] == "SUCCEEDED", first.get("cause")
    (v1,) = _registry(handle)

    # two approvals close together: both deployments find the endpoint InService
    v2, v3 = _approve_copy(handle, v1), _approve_copy(handle, v1)
    # SageMaker may deliver v3's state-change event twice: the same event, a second execution
    (v3_event,) = _wait(
        lambda: [e["input"] for e in _deploys(workdir) if _package_of(e) == v3], 60, "v3's deployment started"
    )
    machine = next(
        m["stateMachineArn"]
        for m in handle.client("stepfunctions").list_state_machines()["stateMachines"]
        if "Deploy" in m["name"]
    )
    handle.client("stepfunctions").start_execution(stateMachineArn=machine, input=json.dumps(v3_event))
    ended = _wait(
        lambda: (lambda found: found if len(found) == 4 and all(e["status"] != "RUNNING" for e in found) else None)(
            _deploys(workdir)
        ),
        600,
        "the three deployments ended",
    )
    assert [e["status"] for e in ended] == ["SUCCEEDED"] * 4, [(e["name"], e.get("cause")) for e in ended]
    runs = {arn: [entered_states(e["history"]) for e in ended if _package_of(e) == arn] for arn in (v2, v3)}
    assert any("WaitForTurn" in states for states in runs[v2] + runs[v3]), runs  # they did race for the endpoint
    # v3 deployed once; its duplicate deployed nothing
    assert sorted(states[-1] for states in runs[v3]) == ["ModelDeployed", "NothingToDeploy"], runs[v3]
    assert sum("UpdateEndpoint" in states for states in runs[v3]) == 1
    # v2: deployed and then replaced by v3, or superseded before its turn; never failed, never rolled back
    (v2_run,) = runs[v2]
    assert v2_run[-1] in ("ModelDeployed", "DeploymentSuperseded"), v2_run
    sm = handle.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=MODEL)
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert endpoint["EndpointStatus"] == "InService" and tags["mlops:model-package-arn"] == v3
    statuses = {p["ModelPackageArn"]: p["ModelApprovalStatus"] for p in _registry(handle)}
    assert statuses == {v1["ModelPackageArn"]: "Approved", v2: "Approved", v3: "Approved"}
    notices = [json.loads(line)["message"] for line in (workdir / "notifications.jsonl").read_text().splitlines()]
    assert not [m for m in notices if "rolled back" in m or "failed" in m or "rejected" in m], notices
    if v2_run[-1] == "DeploymentSuperseded":
        assert any("v2 not deployed: superseded" in m for m in notices), notices
    s3 = handle.client()
    assert not s3.list_objects_v2(Bucket=handle.bucket("artifacts"), Prefix="locks/deployment/").get("KeyCount")
