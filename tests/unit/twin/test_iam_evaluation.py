"""Policy evaluation as AWS does it for same-account calls: statements, conditions, resource policies."""

from __future__ import annotations

from typing import Any

import pytest

from mlops.twin.iam import conditions
from mlops.twin.iam.evaluation import Caller, Request, Statement, decide

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app-role"
CALLER = Caller(ROLE, ACCOUNT)
BUCKET = "arn:aws:s3:::data"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_wildcards_in_actions_are_case_insensitive_and_in_resources_are_literal_otherwise() -> None:
    s = Statement(allow("S3:get*", f"{BUCKET}/in?oming/*.csv"))
    assert s.applies(Request("s3:GetObject", f"{BUCKET}/incoming/a.csv"))
    assert not s.applies(Request("s3:GetObject", f"{BUCKET}/incoming/aXcsv"))  # the dot is a dot
    assert not s.applies(Request("s3:GetObject", f"{BUCKET}/INCOMING/a.csv"))  # resources are case-sensitive
    assert not s.applies(Request("s3:PutObject", f"{BUCKET}/incoming/a.csv"))


def test_not_action_and_not_resource() -> None:
    s = Statement({"Effect": "Deny", "NotAction": "s3:Get*", "NotResource": f"{BUCKET}/public/*"})
    assert s.applies(Request("s3:PutObject", f"{BUCKET}/private/x"))
    assert not s.applies(Request("s3:GetObject", f"{BUCKET}/private/x"))
    assert not s.applies(Request("s3:PutObject", f"{BUCKET}/public/x"))


def test_an_allow_whose_condition_fails_does_not_apply_where_moto_would_deny() -> None:
    statement = allow(
        "iam:PassRole", ROLE, Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    )
    identity = [policy(statement)]
    to_sagemaker = Request("iam:PassRole", ROLE, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    to_lambda = Request("iam:PassRole", ROLE, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert decide(CALLER, to_sagemaker, identity).allowed
    denied = decide(CALLER, to_lambda, identity)
    assert not denied.allowed and denied.reason == "no identity-based policy allows the iam:PassRole action"
    # moto's own entry point answers the same now: not applicable, rather than DENIED
    assert (
        Statement(statement).is_action_permitted("iam:PassRole", ROLE, None, dict(to_lambda.context)).name == "NEUTRAL"
    )


@pytest.mark.parametrize(
    ("block", "context", "expected"),
    [
        ({"StringLike": {"s3:prefix": ["home/*", "shared"]}}, {"s3:prefix": "home/ann"}, True),
        ({"StringLike": {"s3:prefix": ["home/*"]}}, {"s3:prefix": "other"}, False),
        ({"StringEquals": {"s3:prefix": "a"}}, {}, False),  # absent key: a positive operator is false
        ({"StringNotEquals": {"s3:prefix": "a"}}, {}, True),  # ... and a negated one true
        ({"StringEqualsIfExists": {"s3:prefix": "a"}}, {}, True),
        ({"StringEqualsIfExists": {"s3:prefix": "a"}}, {"s3:prefix": "b"}, False),
        ({"StringNotLike": {"cloudwatch:namespace": "AWS/*"}}, {"cloudwatch:namespace": "Mlops"}, True),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": False}, True),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:events:*:111122223333:rule/*"}},
            {"aws:SourceArn": "arn:aws:events:us-east-1:111122223333:rule/r"},
            True,
        ),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:events:*:999999999999:rule/*"}},
            {"aws:SourceArn": "arn:aws:events:us-east-1:111122223333:rule/r"},
            False,
        ),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"}, True),
        (
            {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
            {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
            True,
        ),
        ({"Null": {"kms:ViaService": "true"}}, {}, True),
        ({"Null": {"kms:ViaService": "false"}}, {}, False),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["c", "b"]}, True),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["c", "b"]}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}, True),
        ({"StringEquals": {"S3:Prefix": "x"}}, {"s3:prefix": "x"}, True),  # keys are case-insensitive
        # several operators, and several keys under one: all must match
        (
            {"StringEquals": {"a:x": "1", "a:y": "2"}, "Bool": {"a:z": "true"}},
            {"a:x": "1", "a:y": "2", "a:z": "true"},
            True,
        ),
        ({"StringEquals": {"a:x": "1", "a:y": "2"}}, {"a:x": "1", "a:y": "3"}, False),
    ],
)
def test_condition_operators(block: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    assert conditions.evaluate(block, context) is expected


def test_an_unknown_operator_is_an_error_not_a_pass() -> None:
    with pytest.raises(conditions.UnknownConditionOperator, match="StringSortOf"):
        conditions.evaluate({"StringSortOf": {"a:b": "c"}}, {"a:b": "c"})


def test_explicit_deny_in_a_bucket_policy_wins_over_an_identity_allow() -> None:
    identity = [policy(allow("s3:GetObject", f"{BUCKET}/*"))]
    bucket_policy = policy(
        {
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": [BUCKET, f"{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    over_tls = Request("s3:GetObject", f"{BUCKET}/k", {"aws:SecureTransport": "true"})
    plain = Request("s3:GetObject", f"{BUCKET}/k", {"aws:SecureTransport": "false"})
    assert decide(CALLER, over_tls, identity, bucket_policy).allowed
    denied = decide(CALLER, plain, identity, bucket_policy)
    assert not denied.allowed and "explicit deny in a resource-based policy" in denied.reason


def test_a_bucket_policy_naming_the_role_allows_without_an_identity_policy() -> None:
    bucket_policy = policy({**allow("s3:GetObject", f"{BUCKET}/*"), "Principal": {"AWS": ROLE}})
    assert decide(CALLER, Request("s3:GetObject", f"{BUCKET}/k"), [], bucket_policy).allowed
    other = Caller(f"arn:aws:iam::{ACCOUNT}:role/other", ACCOUNT)
    assert not decide(other, Request("s3:GetObject", f"{BUCKET}/k"), [], bucket_policy).allowed


KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234"
ROOT_DELEGATION = {**allow("kms:*", "*"), "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}


def test_a_key_policy_that_delegates_to_the_account_lets_identity_policies_decide() -> None:
    request = Request("kms:Decrypt", KEY)
    key_policy = policy(ROOT_DELEGATION)
    assert decide(CALLER, request, [policy(allow("kms:Decrypt", KEY))], key_policy, key_policy=True).allowed
    denied = decide(CALLER, request, [], key_policy, key_policy=True)
    assert not denied.allowed and denied.reason == "no identity-based policy allows the kms:Decrypt action"


def test_without_delegation_an_identity_policy_alone_does_not_open_a_key() -> None:
    key_policy = policy({**allow("kms:Decrypt", "*"), "Principal": {"Service": "logs.amazonaws.com"}})
    denied = decide(CALLER, Request("kms:Decrypt", KEY), [policy(allow("kms:*", KEY))], key_policy, key_policy=True)
    assert not denied.allowed and "no resource-based policy allows" in denied.reason


def test_a_service_principal_is_judged_by_the_resource_policy_alone() -> None:
    events = Caller("events.amazonaws.com", ACCOUNT)
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:t"
    topic_policy = policy({**allow("sns:Publish", topic), "Principal": {"Service": "events.amazonaws.com"}})
    assert decide(events, Request("sns:Publish", topic), [], topic_policy).allowed
    assert not decide(events, Request("sns:Publish", topic), [], None).allowed
    assert events.session_arn == "events.amazonaws.com"


def test_the_caller_is_named_as_its_role_session() -> None:
    assert CALLER.session_arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/app-role/twin"
