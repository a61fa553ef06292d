"""The app's own events, put on the default bus by its state machines (EventBridge PutEvents)."""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

PUT_EVENTS_RETRY_ERRORS = ["EventBridge.EventBridgeException", "States.Timeout"]


def put_event(
    scope: Construct, construct_id: str, source: str, detail_type: str, detail_path: str
) -> sfn.TaskStateBase:
    """A PutEvents task whose detail is the state at ``detail_path``, retried on EventBridge's errors;
    the state's output stays its input."""
    task = tasks.EventBridgePutEvents(
        scope,
        construct_id,
        entries=[
            tasks.EventBridgePutEventsEntry(
                source=source, detail_type=detail_type, detail=sfn.TaskInput.from_json_path_at(detail_path)
            )
        ],
        result_path=sfn.JsonPath.DISCARD,
    )
    task.add_retry(errors=PUT_EVENTS_RETRY_ERRORS, max_attempts=3)
    return task
