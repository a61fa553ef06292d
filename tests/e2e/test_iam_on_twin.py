"""Strict IAM on the twin catches each permission the stacks once lacked.

For each fix, the statement that carries it is removed from the synthesized templates (as
reverting the fix in the stack would) and the twin is made to run the state that needs
it: the state fails with AccessDenied naming the action. With the statement back, the
same state passes. One twin serves the module, in file order; only its policies change.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.generate_data import generate, write_csv
from mlops.twin import control
from mlops.twin.assembly import Assembly
from mlops.twin.daemon import outputs
from mlops.twin.iam import IamAuthorizer, PolicyStore
from mlops.twin.runtime import Twin
from mlops.twin.stepfunctions.asl.history import entered_states

from .conftest import TIME_SCALE

pytestmark = pytest.mark.e2e
MODEL = "tumor-classifier"


@pytest.fixture(scope="module")
def twin(cdk_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    twin = Twin(cdk_out, tmp_path_factory.mktemp("iam") / "twin", time_scale=TIME_SCALE)
    twin.start()
    try:
        yield twin
    finally:
        twin.stop()


def revoke(assembly: Assembly, role: str, action: str, where: str = "") -> PolicyStore:
    """The app's policies without ``action`` in the statements of ``role`` (part of its id) mentioning ``where``."""
    changed = copy.deepcopy(assembly)
    removed = 0
    for res in changed.resources("AWS::IAM::Policy"):
        if role not in json.dumps(res.properties.get("Roles")):
            continue
        for statement in res.properties["PolicyDocument"]["Statement"]:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if action in listed and where in json.dumps(statement):
                statement["Action"] = [a for a in listed if a != action] or ["twin:Nothing"]
                removed += 1
    assert removed, f"no statement of {role} grants {action}"
    return PolicyStore.from_assembly(changed)


class Policies:
    """Swaps the policies the twin enforces, and puts the app's own back."""

    def __init__(self, twin: Twin) -> None:
        assert isinstance(twin.iam, IamAuthorizer)
        self.iam = twin.iam
        self.original = twin.iam.policies
        self.assembly = twin.assembly

    def without(self, role: str, action: str, where: str = "") -> None:
        self.iam.policies = revoke(self.assembly, role, action, where)

    def restore(self) -> None:
        self.iam.policies = self.original


@pytest.fixture
def policies(twin: Twin) -> Iterator[Policies]:
    swap = Policies(twin)
    try:
        yield swap
    finally:
        swap.restore()


def _executions(twin: Twin, machine: str) -> list[dict[str, Any]]:
    return control.load_executions(twin.workdir, machine)


def _next_execution(twin: Twin, machine: str, start: Callable[[], Any], timeout_s: float = 300) -> dict[str, Any]:
    """Run ``start`` and wait for the new execution of ``machine`` it leads to, to end."""
    before = {e["name"] for e in _executions(twin, machine)}
    start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = [e for e in _executions(twin, machine) if e["name"] not in before and e["status"] != "RUNNING"]
        if new:
            return new[0]
        time.sleep(0.3)
    raise AssertionError(f"no finished {machine} execution within {timeout_s:.0f} s")


def _upload(twin: Twin, seed: int) -> Callable[[], None]:
    def start() -> None:
        bucket = next(v for k, v in outputs(twin).items() if k.endswith("IncomingBucketName"))
        path = write_csv(generate(MODEL, "good", 1500, seed=seed), twin.workdir / f"good-{seed}.csv")
        twin.client("s3").upload_file(str(path), bucket, f"incoming/{MODEL}/good-{seed}.csv")

    return start


def _train(twin: Twin, seed: int) -> dict[str, Any]:
    return _next_execution(twin, "Training", _upload(twin, seed))


def _approve_copy(twin: Twin) -> Callable[[], None]:
    """A new Approved version of the newest package (same model): a deployment."""

    def start() -> None:
        sm = twin.client("sagemaker")
        listing = sm.list_model_packages(ModelPackageGroupName=MODEL, SortBy="CreationTime", SortOrder="Descending")
        newest = sm.describe_model_package(ModelPackageName=listing["ModelPackageSummaryList"][0]["ModelPackageArn"])
        sm.create_model_package(
            ModelPackageGroupName=MODEL,
            InferenceSpecification=newest["InferenceSpecification"],
            ModelApprovalStatus="Approved",
            CustomerMetadataProperties=newest["CustomerMetadataProperties"],
        )

    return start


def _failed_in(execution: dict[str, Any], state: str) -> bool:
    """The execution went from ``state`` to its error path (the Catch; a SageMaker call's error passes
    its throttling check first, as SageMaker.AmazonSageMakerException)."""
    states = [s for s in entered_states(execution["history"]) if s != f"{state}Throttled?"]
    return "NotifyFailure" in states and states[states.index("NotifyFailure") - 1] == state


def _denied(execution: dict[str, Any], action: str) -> None:
    cause = str(execution.get("cause"))
    assert execution["status"] == "FAILED", execution.get("cause")
    assert "AccessDenied" in cause and f"perform: {action} on resource" in cause, cause


def test_prepare_frees_its_own_lock_when_it_fails(twin: Twin, policies: Policies) -> None:
    machine = twin.state_machine("MlopsTraining").arn
    bucket = next(v for k, v in outputs(twin).items() if k.endswith("ArtifactsBucketName"))
    lock = {"Bucket": bucket, "Key": "locks/training/diabetes-progression.json"}

    def retrain_without_data() -> None:  # no validated dataset: prepare fails after taking the lock
        twin.start_execution(machine, {"model": "diabetes-progression", "trigger": "manual"})

    def lock_left() -> bool:
        return bool(twin.client("s3").list_objects_v2(Bucket=bucket, Prefix=lock["Key"]).get("KeyCount"))

    for _ in range(2):  # the lock is freed each time: the second run is not skipped as busy
        failed = _next_execution(twin, "Training", retrain_without_data)
        assert failed["status"] == "FAILED" and "no validated dataset" in str(failed.get("cause")), failed
        assert "AccessDenied" not in str(failed.get("cause")) and not lock_left()

    policies.without("PrepareRole", "s3:DeleteObject")
    denied = _next_execution(twin, "Training", retrain_without_data)
    _denied(denied, "s3:DeleteObject")
    assert entered_states(denied["history"])[:2] == ["PrepareTraining", "RecordFailure"]
    # The lock object stays, but its owner has ended: it holds nothing and the next run is not skipped.
    policies.restore()
    after = _next_execution(twin, "Training", retrain_without_data)
    assert after["status"] == "FAILED" and "no validated dataset" in str(after.get("cause")), after
    assert not lock_left()


def test_training_machine_reads_its_jobs_tags(twin: Twin, policies: Policies) -> None:
    policies.without("TrainingStateMachineRole", "sagemaker:ListTags")
    training = _train(twin, seed=1)
    _denied(training, "sagemaker:ListTags")
    # as Step Functions names it: SageMaker's base exception, the code in the cause
    assert "SageMaker.AmazonSageMakerException" in training["cause"]
    assert "Error Code: AccessDeniedException" in training["cause"]
    states = entered_states(training["history"])
    assert "TrainModel" in states and "EvaluateModel" not in states


def test_evaluation_job_lists_its_code_input(twin: Twin, policies: Policies) -> None:
    policies.without("SageMakerJobRole", "s3:ListBucket", where="s3:prefix")
    training = _train(twin, seed=2)
    _denied(training, "s3:ListBucket")
    states = entered_states(training["history"])
    assert states.index("EvaluateModel") == states.index("TrainModel") + 1 and "ApplyGate" not in states


def test_endpoint_creation_grants_on_the_data_key(twin: Twin, policies: Policies) -> None:
    policies.without("DeployStateMachineRole", "kms:CreateGrant")
    deployment = _next_execution(twin, "Deploy", lambda: _train(twin, seed=3))
    _denied(deployment, "kms:CreateGrant")
    assert _failed_in(deployment, "CreateEndpoint")

    policies.restore()  # the same version again, with the app's own policies: deployed
    deployed = _next_execution(twin, "Deploy", _approve_copy(twin))
    assert deployed["status"] == "SUCCEEDED", deployed.get("cause")
    assert "CreateEndpoint" in entered_states(deployed["history"])
    scaling = twin.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    assert [t["ResourceId"] for t in scaling["ScalableTargets"]] == [f"endpoint/{MODEL}/variant/AllTraffic"]


def test_update_reads_its_rollback_alarms(twin: Twin, policies: Policies) -> None:
    policies.without("DeployStateMachineRole", "cloudwatch:DescribeAlarms")
    deployment = _next_execution(twin, "Deploy", _approve_copy(twin))
    _denied(deployment, "cloudwatch:DescribeAlarms")
    assert _failed_in(deployment, "UpdateEndpoint")


def test_the_deployment_lock_asks_whether_its_owner_still_runs(twin: Twin, policies: Policies) -> None:
    """Issue 9.6: a lock left by a deployment that ended holds nothing, which only DescribeExecution on
    the deploy machine's executions can tell; without it plan never guesses, and the failure path
    leaves someone else's lock alone."""
    machine = next(arn for arn in twin.state_machines if "Deploy" in arn)
    owner = machine.replace(":stateMachine:", ":execution:") + ":ended-long-ago"
    bucket = next(v for k, v in outputs(twin).items() if k.endswith("ArtifactsBucketName"))
    lock = {"Bucket": bucket, "Key": f"locks/deployment/{MODEL}.json"}
    twin.client("s3").put_object(**lock, Body=json.dumps({"execution_id": owner, "model": MODEL}).encode())

    policies.without("PlanRole", "states:DescribeExecution")
    denied = _next_execution(twin, "Deploy", _approve_copy(twin))
    _denied(denied, "states:DescribeExecution")
    assert _failed_in(denied, "PlanDeployment") and "ReleaseDeployment" in entered_states(denied["history"])
    held = json.loads(twin.client("s3").get_object(**lock)["Body"].read())
    assert held["execution_id"] == owner  # not the failed execution's to release

    policies.restore()  # its owner is no execution at all: the lock is stale at once
    deployed = _next_execution(twin, "Deploy", _approve_copy(twin))
    assert deployed["status"] == "SUCCEEDED", deployed.get("cause")
    assert "UpdateEndpoint" in entered_states(deployed["history"])
    assert not twin.client("s3").list_objects_v2(Bucket=bucket, Prefix=lock["Key"]).get("KeyCount")


def test_autoscaling_registration_is_validated_on_the_endpoint(twin: Twin, policies: Policies) -> None:
    policies.without("RecordRole", "sagemaker:DescribeEndpointConfig")
    deployment = _next_execution(twin, "Deploy", _approve_copy(twin))
    assert deployment["status"] == "FAILED"
    assert "sagemaker:DescribeEndpointConfig" in deployment["cause"] and "ValidationException" in deployment["cause"]
    assert _failed_in(deployment, "RecordDeployment")

    policies.restore()  # with the app's own policies the canary update is recorded as deployed
    deployed = _next_execution(twin, "Deploy", _approve_copy(twin))
    assert deployed["status"] == "SUCCEEDED", deployed.get("cause")
    assert "UpdateEndpoint" in entered_states(deployed["history"])
    denials = [d for d in twin.iam.denials if d.principal in policies.original.identity]
    assert {d.action for d in denials} == {
        "s3:DeleteObject",
        "sagemaker:ListTags",
        "s3:ListBucket",
        "kms:CreateGrant",
        "cloudwatch:DescribeAlarms",
        "states:DescribeExecution",
        "sagemaker:DescribeEndpointConfig",
    }, "the app's own policies were never denied"


def _batch_file(twin: Twin, name: str) -> Callable[[], None]:
    def start() -> None:
        bucket = next(v for k, v in outputs(twin).items() if k.endswith("IncomingBucketName"))
        path = write_csv(generate(MODEL, "good", 300, seed=9), twin.workdir / name)
        twin.client("s3").upload_file(str(path), bucket, f"batch/{MODEL}/{name}")

    return start


def test_the_batch_transform_needs_its_tags_and_its_output_prefix(twin: Twin, policies: Policies) -> None:
    policies.without("BatchStateMachineRole", "sagemaker:ListTags")
    run = _next_execution(twin, "Batch", _batch_file(twin, "tags.csv"))
    assert run["status"] == "FAILED" and run["error"] == "BatchScoringFailed"
    assert "sagemaker:ListTags" in run["cause"] and "AccessDenied" in run["cause"], run["cause"]
    states = entered_states(run["history"])
    assert states[states.index("TransformBatch") + 1] == "RecordBatchFailure"

    policies.restore()
    policies.without("SageMakerJobRole", "s3:PutObject", where="/batch/*")  # the job writes its output as the model
    run = _next_execution(twin, "Batch", _batch_file(twin, "output.csv"))
    assert run["status"] == "FAILED" and "AccessDenied" in run["cause"], run["cause"]
    assert "ClientError" in run["cause"]  # the job failed uploading its output, named as SageMaker names it

    policies.restore()
    run = _next_execution(twin, "Batch", _batch_file(twin, "scored.csv"))
    assert run["status"] == "SUCCEEDED", run.get("cause")
    assert entered_states(run["history"])[-1] == "BatchScored"
