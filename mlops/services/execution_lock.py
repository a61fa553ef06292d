"""One state machine execution at a time per model: a lock that names its owner execution and cannot strand.

One implementation for every such lock: one training per model (``mlops.naming.TRAINING_LOCKS``), one
deployment per endpoint (``DEPLOYMENT_LOCKS``). A lock is ``s3://<artifacts>/<prefix>/<model>.json``,
created with an S3 conditional write (``If-None-Match: *``) and holding the ARN of the
execution that owns it. A lock is held only while its owner is RUNNING: when the owner has
ended in any way (succeeded without releasing, failed, timed out, aborted, or never existed),
the lock is stale at once, whatever its age, and the next execution replaces it with a
conditional write on the ETag it read (two executions taking over the same stale lock: one
wins). Whether the owner runs is asked of Step Functions (``DescribeExecution``), so a killed
worker, an aborted execution or a restarted twin never keeps a model from training or
deploying for hours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlops.s3io import S3Location, error_code, get_json, put_json, put_json_if_absent, replace_json_if_unchanged

_GONE = ("ExecutionDoesNotExist", "InvalidArn")  # an owner that cannot be running


@dataclass(frozen=True)
class Acquired:
    """The outcome of :meth:`ExecutionLock.acquire`."""

    taken: bool
    holder: dict[str, Any] | None = None  # not taken: the live owner's claim
    stale: dict[str, Any] | None = None  # taken over: the dead owner's claim (its run may need recording)
    stale_status: str | None = None  # the dead owner's execution status


class ExecutionLock:
    def __init__(self, s3: Any, stepfunctions: Any, bucket: str, prefix: str) -> None:
        self.s3 = s3
        self.sfn = stepfunctions
        self.bucket = bucket
        self.prefix = prefix

    def location(self, model: str) -> S3Location:
        return S3Location(self.bucket, f"{self.prefix}/{model}.json")

    def holder(self, model: str) -> dict[str, Any] | None:
        found = get_json(self.s3, self.location(model))
        return None if found is None else found[0]

    def execution_status(self, execution_arn: str) -> str:
        """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, ... or GONE when there is no such execution."""
        if not execution_arn.startswith("arn:"):
            return "GONE"
        try:
            return str(self.sfn.describe_execution(executionArn=execution_arn)["status"])
        except ClientError as exc:
            if error_code(exc) in _GONE:
                return "GONE"
            raise  # AccessDenied, throttling after the SDK's retries: never guess

    def acquire(self, model: str, execution_id: str) -> Acquired:
        loc = self.location(model)
        claim = {"execution_id": execution_id, "model": model, "started_at": time.time()}
        for _ in range(3):
            if put_json_if_absent(self.s3, loc, claim):
                return Acquired(taken=True)
            found = get_json(self.s3, loc)
            if found is None:
                continue  # released between our two calls
            held, etag = found
            owner = str(held.get("execution_id") or "")
            if owner == execution_id:
                return Acquired(taken=True)  # our own retry
            status = self.execution_status(owner)
            if status == "RUNNING":
                return Acquired(taken=False, holder=held)
            if replace_json_if_unchanged(self.s3, loc, claim, etag):
                return Acquired(taken=True, stale=held, stale_status=status)
        found = get_json(self.s3, loc)
        return Acquired(taken=False, holder=found[0] if found else {"execution_id": "unknown"})

    def annotate(self, model: str, execution_id: str, **info: Any) -> None:
        """Add what the owner works on (run id, dataset version) to its lock, for whoever finds it stale."""
        found = get_json(self.s3, self.location(model))
        if found is None or found[0].get("execution_id") != execution_id:
            raise RuntimeError(f"lock {self.prefix}/{model} is not held by {execution_id}")
        put_json(self.s3, self.location(model), {**found[0], **info})

    def release(self, model: str, execution_id: str) -> bool:
        """Free the lock if ``execution_id`` owns it (never someone else's). True if freed."""
        found = get_json(self.s3, self.location(model))
        if found is None or found[0].get("execution_id") != execution_id:
            return False
        self.s3.delete_object(Bucket=self.bucket, Key=self.location(model).key)
        return True

    def free_for(self, model: str) -> bool:
        """True when no live execution holds the lock (absent, or its owner has ended)."""
        held = self.holder(model)
        return held is None or self.execution_status(str(held.get("execution_id") or "")) != "RUNNING"
