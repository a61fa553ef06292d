"""SageMaker calls from Step Functions: integration ARNs, and retrying only what was throttled.

Step Functions reports SageMaker's unmodelled errors (throttling, validation, ...) under one
name, ``SageMaker.AmazonSageMakerException``, with the SDK's message as the cause: "...
(Service: AmazonSageMaker; Status Code: 400; Error Code: X; ...)". A Retry on that name would
also repeat deterministic errors such as a ValidationException, so the calls catch it instead
and a Choice sends only a throttled request round again (no resource exists then, so the same
name is free), up to THROTTLE_RETRIES times with a doubling wait; anything else goes on to
the machine's failure path at once.
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

SAGEMAKER_SERVICE_ERROR = "SageMaker.AmazonSageMakerException"
THROTTLED_CAUSE = "*Error Code: ThrottlingException*"
THROTTLE_RETRIES = 5
THROTTLE_FIRST_WAIT_S = 10
RETRIES_PATH = "$.retries"


def state_arn(integration: str) -> str:
    """A Step Functions service integration ARN in the stack's partition (aws, aws-cn, aws-us-gov)."""
    return f"arn:{cdk.Aws.PARTITION}:states:::{integration}"


def retry_counters(scope: Construct, construct_id: str, calls: Iterable[sfn.State]) -> sfn.Pass:
    """The Pass state that starts each call's throttling counter (put it before the first call)."""
    return sfn.Pass(
        scope,
        construct_id,
        comment="attempts and next wait of each SageMaker call's throttling retries",
        result=sfn.Result.from_object({c.state_id: {"count": 0, "wait": THROTTLE_FIRST_WAIT_S} for c in calls}),
        result_path=RETRIES_PATH,
    )


def retry_when_throttled(scope: Construct, call: sfn.CustomState, give_up: sfn.IChainable) -> None:
    """Catch the call's SageMaker.AmazonSageMakerException (the caught error in ``$.error``): wait and
    call again when SageMaker throttled it, else ``give_up``. Add it before any catch-all."""
    name = call.state_id
    counter = f"{RETRIES_PATH}.{name}"
    again = sfn.Wait(scope, f"{name}Backoff", time=sfn.WaitTime.seconds_path(f"{counter}.wait")).next(
        sfn.Pass(
            scope,
            f"Count{name}Retry",
            parameters={
                "count.$": f"States.MathAdd({counter}.count, 1)",
                "wait.$": f"States.MathAdd({counter}.wait, {counter}.wait)",
            },
            result_path=counter,
        ).next(call)
    )
    throttled = (
        sfn.Choice(scope, f"{name}Throttled?")
        .when(
            sfn.Condition.and_(
                sfn.Condition.string_matches("$.error.Cause", THROTTLED_CAUSE),
                sfn.Condition.number_less_than(f"{counter}.count", THROTTLE_RETRIES),
            ),
            again,
        )
        .otherwise(give_up)
    )
    call.add_catch(throttled, errors=[SAGEMAKER_SERVICE_ERROR], result_path="$.error")
