"""Task state integrations on the twin: one adapter per service integration.

The ASL engine calls ``TaskDispatcher(resource, parameters, ctx)`` for every Task
state; the adapters reproduce what the Step Functions service integration returns in
AWS (result shape, error names), against the twin's resources. Resources without an
adapter are reported when the twin starts (``is_supported_task``) and fail the state
with ``States.Runtime`` if reached.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from mlops.twin.api import ApiError
from mlops.twin.sagemaker.jobs import JobFailed
from mlops.twin.stepfunctions.asl import ExecutionAlreadyExists, TaskContext, TaskFailed

if TYPE_CHECKING:
    from mlops.twin.runtime import Twin

LAMBDA_ARN_RE = re.compile(r"^arn:aws:lambda:[^:]+:\d+:function:[^:]+(:[^:]+)?$")
SDK_RE = re.compile(r"^arn:aws:states:::aws-sdk:(?P<service>[a-z0-9]+):(?P<action>[A-Za-z0-9]+)$")
OPTIMIZED = {
    "arn:aws:states:::lambda:invoke",
    "arn:aws:states:::sagemaker:createTrainingJob.sync",
    "arn:aws:states:::sagemaker:createProcessingJob.sync",
    "arn:aws:states:::sagemaker:createTransformJob.sync",
    "arn:aws:states:::events:putEvents",
    "arn:aws:states:::states:startExecution",
    "arn:aws:states:::states:startExecution.sync",
    "arn:aws:states:::states:startExecution.sync:2",
}
# Request-response SageMaker integrations: the request goes to the twin's SageMaker API.
SAGEMAKER_RE = re.compile(r"^arn:aws:states:::sagemaker:(?P<action>[A-Za-z]+)$")
SAGEMAKER_ACTIONS = {"createModel", "createEndpointConfig", "createEndpoint", "updateEndpoint", "addTags"}
SDK_SERVICES = {"s3", "sagemaker"}
SNS_PUBLISH = "arn:aws:states:::sns:publish"
# Step Functions' SageMaker integrations (request-response and .sync alike) name SageMaker's
# modelled exceptions after their SDK classes and every other error (ValidationException,
# ThrottlingException, AccessDeniedException, ...) SageMaker.AmazonSageMakerException, the
# SDK's base class: the error code is only in the cause (stacks/sagemaker_retries.py).
SAGEMAKER_MODELLED = {
    "ConflictException": "ConflictException",
    "ResourceInUse": "ResourceInUseException",
    "ResourceLimitExceeded": "ResourceLimitExceededException",
    "ResourceNotFound": "ResourceNotFoundException",
}


def sagemaker_task_error(code: str, message: str, status: int = 400) -> TaskFailed:
    """A SageMaker error as a SageMaker integration reports it: name, and the SDK's message as the cause."""
    name = SAGEMAKER_MODELLED.get(code, "AmazonSageMakerException")
    cause = (
        f"{message} (Service: AmazonSageMaker; Status Code: {status}; Error Code: {code}; "
        f"Request ID: {uuid.uuid4()}; Proxy: null)"
    )
    return TaskFailed(f"SageMaker.{name}", cause)


def is_supported_task(resource: str) -> bool:
    if resource in OPTIMIZED or resource == SNS_PUBLISH or LAMBDA_ARN_RE.match(resource):
        return True
    sagemaker = SAGEMAKER_RE.match(resource)
    if sagemaker:
        return sagemaker["action"] in SAGEMAKER_ACTIONS
    match = SDK_RE.match(resource)
    return bool(match and match["service"] in SDK_SERVICES)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "read"):  # streaming bodies come back as text, as the SDK integration does
        return value.read().decode("utf-8", errors="replace")
    return value


class TaskDispatcher:
    def __init__(self, twin: Twin) -> None:
        self.twin = twin
        self._handlers: dict[str, Callable[[Any, TaskContext], Any]] = {
            "arn:aws:states:::lambda:invoke": self._lambda_invoke,
            "arn:aws:states:::events:putEvents": self._put_events,
            "arn:aws:states:::sagemaker:createTrainingJob.sync": self._training_job,
            "arn:aws:states:::sagemaker:createProcessingJob.sync": self._processing_job,
            "arn:aws:states:::sagemaker:createTransformJob.sync": self._transform_job,
            "arn:aws:states:::states:startExecution": self._start_execution,
            "arn:aws:states:::states:startExecution.sync": self._start_execution_sync,
            "arn:aws:states:::states:startExecution.sync:2": self._start_execution_sync_parsed,
        }

    def __call__(self, resource: str, parameters: Any, ctx: TaskContext) -> Any:
        handler = self._handlers.get(resource)
        if handler is not None:
            self._authorize(ctx, resource, parameters or {})
            return handler(parameters or {}, ctx)
        if LAMBDA_ARN_RE.match(resource):
            self._authorize(ctx, "arn:aws:states:::lambda:invoke", {"FunctionName": resource})
            return self._invoke(resource, parameters, ctx)["Payload"]
        if resource == SNS_PUBLISH:
            self._authorize(ctx, resource, parameters or {})
            return self.twin.notifications.publish(parameters or {})
        role = self._role(ctx)  # request-response and SDK integrations call the API as the machine's role
        sagemaker = SAGEMAKER_RE.match(resource)
        if sagemaker and sagemaker["action"] in SAGEMAKER_ACTIONS:
            return self._sagemaker(sagemaker["action"], parameters or {}, role)
        sdk = SDK_RE.match(resource)
        if sdk and sdk["service"] in SDK_SERVICES:
            return self._aws_sdk(sdk["service"], sdk["action"], parameters or {}, role)
        raise TaskFailed("States.Runtime", f"the twin has no integration for Task resource {resource}")

    # -- IAM: integrations act as the state machine's role -------------------------------------
    def _role(self, ctx: TaskContext) -> str:
        machine_arn = ctx.execution_arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        machine = self.twin.state_machines.get(machine_arn)
        if machine is None or not machine.role_arn:
            raise TaskFailed("States.Runtime", f"no role for the state machine of {ctx.execution_arn}")
        return machine.role_arn

    def _authorize(self, ctx: TaskContext, resource: str, params: dict[str, Any]) -> None:
        """What the integration needs of the role (the policies AWS documents per integration pattern)."""
        integration = resource.removeprefix("arn:aws:states:::")
        try:
            self.twin.iam.authorize_as(self._role(ctx), "states-integration", integration, params)
        except ApiError as exc:
            prefix = {"lambda": "Lambda", "sns": "SNS", "events": "EventBridge"}
            service = integration.split(":", 1)[0]
            if service == "sagemaker":
                raise sagemaker_task_error(exc.code, exc.message, exc.status) from None
            raise TaskFailed(f"{prefix.get(service, 'StepFunctions')}.{exc.code}", exc.message) from None

    # -- Lambda ------------------------------------------------------------------------
    def _invoke(self, function: str, payload: Any, ctx: TaskContext) -> dict[str, Any]:
        try:
            result = self.twin.invoke(function, payload)
        except KeyError as exc:
            raise TaskFailed("Lambda.ResourceNotFoundException", str(exc)) from None
        if result.function_error:
            body = result.payload if isinstance(result.payload, dict) else {}
            # As in AWS: the error is the function's errorType, the cause its JSON error payload.
            raise TaskFailed(str(body.get("errorType", "Lambda.Unknown")), json.dumps(result.payload))
        return {
            "ExecutedVersion": "$LATEST",
            "Payload": result.payload,
            "StatusCode": result.status_code,
            "SdkHttpMetadata": {"HttpStatusCode": result.status_code},
            "SdkResponseMetadata": {"RequestId": result.request_id},
        }

    def _lambda_invoke(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        if "FunctionName" not in params:
            raise TaskFailed("States.Runtime", "lambda:invoke needs Parameters.FunctionName")
        payload = params.get("Payload", {})
        if isinstance(payload, str):
            with contextlib.suppress(json.JSONDecodeError):
                payload = json.loads(payload)
        return self._invoke(str(params["FunctionName"]), payload, ctx)

    # -- SageMaker -----------------------------------------------------------------------
    def _training_job(self, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return self._job("CreateTrainingJob", self.twin.jobs.as_role(params).train, params)

    def _processing_job(self, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return self._job("CreateProcessingJob", self.twin.jobs.as_role(params).process, params)

    def _transform_job(self, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        def run(request: dict[str, Any]) -> dict[str, Any]:
            model = self.twin.sagemaker_model(request["ModelName"])  # it exists: the rules checked
            # the job reads its input and writes its output as the model's execution role
            return self.twin.jobs.as_role({"RoleArn": model.get("ExecutionRoleArn")}).transform(request, model)

        return self._job("CreateTransformJob", run, params)

    def _job(
        self, operation: str, run: Callable[[dict[str, Any]], dict[str, Any]], params: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            self.twin.sagemaker_rules(operation, params)  # the request SageMaker receives: its rules apply
        except ApiError as exc:
            raise sagemaker_task_error(exc.code, exc.message, exc.status) from None
        try:
            return run(params)
        except JobFailed as exc:
            # As the .sync integration reports it: the Describe*Job output is the cause.
            raise TaskFailed("States.TaskFailed", json.dumps(exc.describe, default=str)) from None
        except KeyError as exc:
            raise sagemaker_task_error("ValidationException", f"missing parameter {exc}") from None

    def _sagemaker(self, action: str, params: dict[str, Any], role: str) -> Any:
        """A request-response SageMaker integration (createModel, updateEndpoint, ...) as ``role``."""
        method = getattr(self.twin.client("sagemaker", role), _snake(action))
        try:
            return _jsonable(method(**params))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
            raise sagemaker_task_error(
                str(error.get("Code", "Unknown")), str(error.get("Message", "")), status
            ) from None
        except (TypeError, ValueError) as exc:  # botocore's parameter validation
            raise sagemaker_task_error("ValidationException", str(exc)) from None

    # -- EventBridge -----------------------------------------------------------------
    def _put_events(self, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        entries = params.get("Entries", [])
        for entry in entries:
            if isinstance(entry.get("Detail"), dict | list):
                entry["Detail"] = json.dumps(entry["Detail"])
        results = self.twin.bus.put_events(entries)
        failed = [r for r in results if r.get("ErrorCode")]
        if failed:
            raise TaskFailed(
                "EventBridge.FailedEntry", json.dumps({"Entries": results, "FailedEntryCount": len(failed)})
            )
        return {"Entries": results, "FailedEntryCount": 0}

    # -- Step Functions --------------------------------------------------------------
    def _start_execution(self, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        execution = self._start_child(params)
        return {"ExecutionArn": execution.arn, "StartDate": execution.start_date}

    def _start_execution_sync_parsed(self, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        result = self._start_execution_sync(params, ctx)
        return {**result, "Output": json.loads(result["Output"])}  # .sync:2 returns the output as JSON

    def _start_execution_sync(self, params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        execution = self._start_child(params)
        execution.wait(ctx.timeout_s)
        if execution.status != "SUCCEEDED":
            raise TaskFailed("States.TaskFailed", json.dumps({"Error": execution.error, "Cause": execution.cause}))
        return {
            "ExecutionArn": execution.arn,
            "Output": json.dumps(execution.output),
            "Status": execution.status,
            "StartDate": execution.start_date,
            "StopDate": execution.stop_date,
        }

    def _start_child(self, params: dict[str, Any]) -> Any:
        payload = params.get("Input", {})
        if isinstance(payload, str):
            payload = json.loads(payload)
        try:
            return self.twin.start_execution(params["StateMachineArn"], payload, params.get("Name"))
        except KeyError as exc:
            raise TaskFailed("StepFunctions.StateMachineDoesNotExistException", str(exc)) from None
        except ExecutionAlreadyExists as exc:  # a reused Name, as the integration names the API error
            raise TaskFailed("StepFunctions.ExecutionAlreadyExistsException", str(exc)) from None

    # -- AWS SDK integrations ----------------------------------------------------------
    def _aws_sdk(self, service: str, action: str, params: dict[str, Any], role: str) -> Any:
        return self._call(service, action, params, {"s3": "S3", "sagemaker": "SageMaker"}.get(service, service), role)

    def _call(self, service: str, action: str, params: dict[str, Any], error_prefix: str, role: str) -> Any:
        """One API call against the twin as ``role``; errors named ``<Service>.<Code>``, as integrations name them."""
        method = getattr(self.twin.client(service, role), _snake(action), None)
        if method is None:
            raise TaskFailed("States.Runtime", f"{service} has no action {action}")
        try:
            return _jsonable(method(**params))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise TaskFailed(f"{error_prefix}.{code}", str(exc)) from None
        except (TypeError, ValueError) as exc:  # botocore's parameter validation
            raise TaskFailed(f"{error_prefix}.ValidationException", str(exc)) from None
