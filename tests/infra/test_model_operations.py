"""ModelOperations: one model's schedule, alarms, retrain rule and dashboard, composed by MlopsServing,
under the logical IDs they had as the stack's own children; its batch slot builds below it."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlops.config import ModelConfig, load_configs
from mlops.naming import alarm_name
from stacks.logical_ids import make_unique_id
from stacks.model_operations import ModelOperations, ModelOperationsProps, model_id

from ..conftest import ROOT
from .conftest import Synthesized, resources

CONFIGS = load_configs(ROOT / "configs")


def _ids(template: dict[str, Any], rtype: str) -> set[str]:
    return set(resources(template, rtype))


def test_each_model_keeps_its_stack_level_logical_ids(synthesized: Synthesized) -> None:
    serving = synthesized.template_json("MlopsServing")
    alarms, rules = _ids(serving, "AWS::CloudWatch::Alarm"), _ids(serving, "AWS::Events::Rule")
    dashboards = _ids(serving, "AWS::CloudWatch::Dashboard")
    for name, config in CONFIGS.items():
        pid = model_id(name)
        assert make_unique_id([f"{pid}Dashboard", "Resource"]) in dashboards
        for kind in ("5xx", "latency"):
            lid = make_unique_id([f"{pid}{kind.capitalize()}Alarm", "Resource"])
            assert lid in alarms
            assert serving["Resources"][lid]["Properties"]["AlarmName"] == alarm_name(name, kind)
        monitored = make_unique_id([f"Monitor{pid}", "Resource"]) in rules
        retrained = make_unique_id([f"Retrain{pid}", "Resource"]) in rules
        assert monitored == retrained == (config.endpoint.data_capture_percent > 0), name
    assert any(c.endpoint.data_capture_percent > 0 for c in CONFIGS.values())


def _props(stack: cdk.Stack, config: ModelConfig, batch: Any = None) -> ModelOperationsProps:
    monitor = lambda_.Function.from_function_name(stack, "Monitor", "monitor")
    machine = sfn.StateMachine.from_state_machine_name(stack, "Training", "training")
    topic = sns.Topic.from_topic_arn(stack, "Topic", "arn:aws:sns:us-east-1:111111111111:topic")
    return ModelOperationsProps(config=config, monitor=monitor, training_machine=machine, topic=topic, batch=batch)


def test_the_batch_slot_builds_below_the_model() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    config = next(c for c in CONFIGS.values() if c.endpoint.data_capture_percent > 0)
    seen: list[tuple[Construct, ModelConfig]] = []

    def batch(scope: Construct, model: ModelConfig) -> Construct:
        seen.append((scope, model))
        return sqs.Queue(scope, "BatchQueue")

    ops = ModelOperations(stack, model_id(config.name), _props(stack, config, batch))
    assert seen == [(ops, config)] and ops.batch is not None
    assert ops.batch.node.scope is ops
    assert ops.monitor_rule is not None and ops.retrain_rule is not None


def test_without_capture_no_monitor_nor_retrain() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    captured = next(c for c in CONFIGS.values() if c.endpoint.data_capture_percent > 0)
    data = captured.model_dump()
    data["endpoint"] = {**data["endpoint"], "data_capture_percent": 0}
    data["monitoring"]["alarms"]["quality_metric_threshold"] = None
    config = ModelConfig.model_validate(data)
    ops = ModelOperations(stack, "M", _props(stack, config))
    assert ops.monitor_rule is None and ops.retrain_rule is None and ops.batch is None
    assert sorted(ops.alarms) == ["5xx", "latency"]
