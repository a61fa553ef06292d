"""Everything one model needs around its endpoint, as one construct with explicit props.

- its drift and quality monitor's schedule (a rule invoking the shared monitor Lambda with
  ``{"model": name}``), when its requests are captured (not serverless);
- its alarms: 5XX and latency (the deployment's auto-rollback alarms), drift and quality
  (when captured; quality when the config sets a threshold);
- its retrain rule: a drift or quality alarm going to ALARM starts the training state
  machine and tells people (the training's prepare step debounces one episode into one retrain);
- its dashboard;
- its batch trigger: the slot ``ModelOperationsProps.batch`` (``stacks/batch_stack.py``).

The resources keep the logical IDs they had when the serving stack created them itself
(``stacks.logical_ids``): alarms and dashboards are named, and a named resource must not be
created again under a new ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlops.config import ModelConfig, ProblemType
from mlops.naming import METRICS_NAMESPACE, RETRAIN_ALARM_KINDS, alarm_name, endpoint_name
from stacks.logical_ids import keep_logical_ids

# The monitor Lambda's Powertools service: Powertools Metrics adds it as a dimension of every metric.
MONITOR_SERVICE = "mlops-monitor"

# Builds a model's batch trigger below ``scope`` (this construct); see stacks/batch_stack.py.
BatchTrigger = Callable[[Construct, ModelConfig], Construct]


def model_id(name: str) -> str:
    """A model's name as a construct id: ``tumor-classifier`` -> ``TumorClassifier``."""
    return "".join(p.capitalize() for p in name.split("-"))


@dataclass(frozen=True)
class ModelOperationsProps:
    config: ModelConfig
    monitor: lambda_.IFunction  # the shared drift/quality monitor, invoked with {"model": name}
    training_machine: sfn.IStateMachine  # started by the retrain rule
    topic: sns.ITopic  # told when an alarm retrains
    batch: BatchTrigger | None = None  # the model's batch scoring trigger, when the app has one


class ModelOperations(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: ModelOperationsProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        name, pid = config.name, model_id(config.name)
        mon = config.monitoring
        # drift and quality read captured requests: a model without capture (serverless) has neither
        captures = config.endpoint.data_capture_percent > 0
        self.monitor_rule = (
            events.Rule(
                self,
                "Monitor",
                description=f"Drift and quality monitor for {name}",
                schedule=events.Schedule.rate(cdk.Duration.minutes(mon.schedule_minutes)),
                targets=[
                    targets.LambdaFunction(props.monitor, event=events.RuleTargetInput.from_object({"model": name}))
                ],
            )
            if captures
            else None
        )
        metrics = self._metrics(config, captures)
        a = mon.alarms
        self.alarms = {
            kind: cw.Alarm(
                self,
                f"{kind.capitalize()}Alarm",
                alarm_name=alarm_name(name, kind),
                alarm_description=f"{name}: {kind}",
                metric=metric,
                threshold=threshold,
                comparison_operator=comparison,
                evaluation_periods=a.evaluation_periods,
                datapoints_to_alarm=a.datapoints_to_alarm,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
            for kind, (metric, threshold, comparison) in metrics.items()
        }
        self.retrain_rule = self._retrain_rule(name, props)
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"mlops-{name}",
            widgets=[
                [
                    cw.GraphWidget(title="invocations and errors", left=[metrics["5xx"][0]], width=12),
                    cw.GraphWidget(title="model latency p99 (µs)", left=[metrics["latency"][0]], width=12),
                ],
                [
                    *(
                        [cw.GraphWidget(title="drifted feature share", left=[metrics["drift"][0]], width=12)]
                        if "drift" in metrics
                        else []
                    ),
                    cw.AlarmStatusWidget(title="alarms", alarms=list(self.alarms.values()), width=12),
                ],
            ],
        )
        keep_logical_ids(
            self,
            {
                "Monitor": f"Monitor{pid}",
                "Retrain": f"Retrain{pid}",
                "Dashboard": f"{pid}Dashboard",
                **{f"{kind.capitalize()}Alarm": f"{pid}{kind.capitalize()}Alarm" for kind in self.alarms},
            },
        )
        # -- batch scoring: composed here, under this construct (new resources, new IDs) --------
        self.batch = props.batch(self, config) if props.batch is not None else None

    @staticmethod
    def _metrics(config: ModelConfig, captures: bool) -> dict[str, tuple[cw.Metric, float, cw.ComparisonOperator]]:
        """Each alarm's metric, threshold and comparison, by alarm kind."""
        name, mon = config.name, config.monitoring
        a = mon.alarms
        endpoint_dims = {"EndpointName": endpoint_name(name), "VariantName": "AllTraffic"}
        # Powertools Metrics adds the service as a dimension; CloudWatch matches the exact set
        model_dims = {"model": name, "service": MONITOR_SERVICE}
        period = cdk.Duration.minutes(mon.schedule_minutes)
        metrics = {
            "5xx": (
                cw.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="Invocation5XXErrors",
                    dimensions_map=endpoint_dims,
                    statistic="Average",
                    period=cdk.Duration.minutes(1),
                ),
                a.error_5xx_rate,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            ),
            "latency": (
                cw.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="ModelLatency",
                    dimensions_map=endpoint_dims,
                    statistic="p99",
                    period=cdk.Duration.minutes(1),
                ),
                a.latency_p99_ms * 1000,  # ModelLatency is in microseconds
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            ),
        }
        if captures:
            metrics["drift"] = (
                cw.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name="DriftedFeatureShare",
                    dimensions_map=model_dims,
                    statistic="Maximum",
                    period=period,
                ),
                a.drifted_feature_share,
                cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )
        if a.quality_metric_threshold is not None:  # the config requires capture for it
            lower_is_worse = config.problem_type is not ProblemType.REGRESSION  # accuracy falls, RMSE rises
            metrics["quality"] = (
                cw.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name="ModelQuality",
                    dimensions_map=model_dims,
                    statistic="Average",
                    period=period,
                ),
                a.quality_metric_threshold,
                cw.ComparisonOperator.LESS_THAN_THRESHOLD
                if lower_is_worse
                else cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            )
        return metrics

    def _retrain_rule(self, name: str, props: ModelOperationsProps) -> events.Rule | None:
        retrain_alarms = [alarm_name(name, k) for k in RETRAIN_ALARM_KINDS if k in self.alarms]
        if not retrain_alarms:  # none without captured requests
            return None
        return events.Rule(
            self,
            "Retrain",
            description=f"Retrain {name} when its drift or quality alarm fires",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": retrain_alarms, "state": {"value": ["ALARM"]}},
            ),
            targets=[
                targets.SfnStateMachine(
                    props.training_machine,
                    input=events.RuleTargetInput.from_object(
                        {
                            "model": name,
                            "trigger": "alarm",
                            "alarm": events.EventField.from_path("$.detail.alarmName"),
                            "alarm_time": events.EventField.time,
                        }
                    ),
                    retry_attempts=3,
                ),
                targets.SnsTopic(
                    props.topic,
                    message=events.RuleTargetInput.from_text(
                        f"alarm {events.EventField.from_path('$.detail.alarmName')} is in ALARM: retraining {name} "
                        "if there is new labelled data"
                    ),
                ),
            ],
        )
