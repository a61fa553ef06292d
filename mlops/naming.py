"""Names shared by the stacks (which create the resources) and the code (which refers to them)."""

from __future__ import annotations

ALARM_KINDS = ("5xx", "latency", "drift", "quality")
RETRAIN_ALARM_KINDS = ("drift", "quality")
ROLLBACK_ALARM_KINDS = ("5xx", "latency")
METRICS_NAMESPACE = "Mlops"
CAPTURE_PREFIX = "datacapture"
# Execution locks in the artifacts bucket (mlops.services.execution_lock), one object per model.
TRAINING_LOCKS = "locks/training"  # one training per model
DEPLOYMENT_LOCKS = "locks/deployment"  # one deployment per endpoint (one endpoint per model)
# The app's stacks by role; the CDK app creates them under these names and the CLI finds them by them.
STACKS = {
    "data": "MlopsData",
    "validation": "MlopsValidation",
    "training": "MlopsTraining",
    "serving": "MlopsServing",
    "batch": "MlopsBatch",
}
# Batch scoring: files uploaded under batch/<model>/ in the incoming bucket (as datasets go under
# incoming/<model>/); each run's transform input, predictions and report under batch/<model>/<run>/
# in the artifacts bucket; its events on the default bus.
BATCH_PREFIX = "batch/"
BATCH_EVENT_SOURCE = "mlops.batch"
BATCH_SCORED = "Batch Scoring Completed"
BATCH_REFUSED = "Batch Scoring Refused"
BATCH_FAILED = "Batch Scoring Failed"


def alarm_name(model: str, kind: str) -> str:
    if kind not in ALARM_KINDS:
        raise ValueError(f"unknown alarm kind {kind!r}; one of {ALARM_KINDS}")
    return f"mlops-{model}-{kind}"


def endpoint_name(model: str) -> str:
    return model  # one endpoint per model, named after it


# The training job's entry point for a model with its own code (pipelines/train_own_code.py): it runs the
# model's train.py and checks the contract (mlops.core.model_code); the prepare step names it.
OWN_CODE_PROGRAM = "train_own_code.py"


def batch_upload_prefix(model: str) -> str:
    """Where a model's batch files are uploaded, in the incoming bucket."""
    return f"{BATCH_PREFIX}{model}/"


def batch_run_prefix(model: str, run: str) -> str:
    """Where one batch run's files go, in the artifacts bucket."""
    return f"{BATCH_PREFIX}{model}/{run}/"
