"""``make_unique_id`` agrees with CDK's own logical IDs, and ``keep_logical_ids`` applies them."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.logical_ids import keep_logical_ids, make_unique_id


def _logical_id(stack: cdk.Stack, element: cdk.CfnElement) -> str:
    return str(stack.resolve(element.logical_id))


def test_make_unique_id_matches_cdk() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    top = sns.Topic(stack, "Top-Level")  # one readable component, "Resource" hidden, hashed
    # "Group" ends "AlarmGroup": left out of the readable part, kept in the hash
    nested = sns.Topic(Construct(Construct(stack, "AlarmGroup"), "Group"), "Topic")
    default = sns.CfnTopic(Construct(stack, "Wrapper"), "Default")
    lone = sns.CfnTopic(stack, "Lone_Topic")
    cases = {
        top.node.default_child: ["Top-Level", "Resource"],
        nested.node.default_child: ["AlarmGroup", "Group", "Topic", "Resource"],
        default: ["Wrapper", "Default"],
        lone: ["Lone_Topic"],
    }
    assert make_unique_id(["AlarmGroup", "Group", "Topic", "Resource"]).startswith("AlarmGroupTopic")
    for element, path in cases.items():
        assert isinstance(element, cdk.CfnElement)
        assert _logical_id(stack, element) == make_unique_id(path), path


def test_keep_logical_ids_gives_stack_level_ids() -> None:
    app = cdk.App()
    before = cdk.Stack(app, "Before")
    kept = sns.Topic(before, "TumorClassifierTopic")
    after = cdk.Stack(app, "After")
    group = Construct(after, "TumorClassifier")
    moved = sns.Topic(group, "Topic")
    other = sns.Topic(group, "Other")
    keep_logical_ids(group, {"Topic": "TumorClassifierTopic"})
    moved_id = _logical_id(after, moved.node.default_child)  # type: ignore[arg-type]
    assert moved_id == _logical_id(before, kept.node.default_child)  # type: ignore[arg-type]
    assert _logical_id(after, other.node.default_child) == make_unique_id(["TumorClassifier", "Other", "Resource"])  # type: ignore[arg-type]
