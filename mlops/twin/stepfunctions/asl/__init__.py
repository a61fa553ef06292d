"""The local twin's Amazon States Language (Step Functions) engine.

Decision (moto's parser vs. our own): DESIGN asked to evaluate ``moto.stepfunctions.parser``
first (moto 5.2, ``moto/stepfunctions/parser``, a port of LocalStack's interpreter). It is
not a usable base here: its Task states are resolved by a factory of per-service classes
(``state_task_service_factory``: lambda, sns, sqs, events, aws-sdk, ...) that call boto
clients aimed at moto's own backends, there is no SageMaker ``.sync`` integration, and
there is no hook to route a Task resource to our dispatcher short of patching that factory
and mocking AWS around it; its history comes from its own event manager in its own types.
We therefore run a small purpose-built interpreter: synchronous dispatch through our
callable, a scaled clock, and AWS-shaped history.

Modules: ``paths`` (JSONPath, ResultPath), ``intrinsics`` (States.* functions and their
parser), ``payload`` (Parameters/ResultSelector/ItemSelector templates), ``choice``
(Choice rules), ``retry`` (Retry/Catch), ``history`` (events), ``execution`` (record),
``interpreter`` (state semantics), ``timing`` (what the time scale applies to),
``validation`` and ``diagnostics`` (what CreateStateMachine refuses, in its words),
``engine`` (API).

Error naming: bad InputPath/OutputPath/ItemsPath/Choice Variable paths raise
States.Runtime, which (per the AWS error-handling docs) neither Retry nor Catch ever
handles; States.ALL does not match States.Runtime or States.DataLimitExceeded (the latter can
be caught by naming it). Parameters/ResultSelector/ItemSelector path failures raise the
catchable States.ParameterPathFailure, ResultPath failures States.ResultPathMatchFailure.
In ErrorEquals, States.TaskFailed matches every error but States.Timeout (and never one
States.ALL cannot match).
"""

from mlops.twin.stepfunctions.asl.diagnostics import Diagnostic, InvalidDefinition
from mlops.twin.stepfunctions.asl.engine import AslEngine
from mlops.twin.stepfunctions.asl.errors import ExecutionAlreadyExists, ExecutionDoesNotExist, StatesError, TaskFailed
from mlops.twin.stepfunctions.asl.execution import Execution
from mlops.twin.stepfunctions.asl.interpreter import TaskContext

__all__ = [
    "AslEngine",
    "Diagnostic",
    "Execution",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "InvalidDefinition",
    "StatesError",
    "TaskContext",
    "TaskFailed",
]
