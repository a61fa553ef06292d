"""EventBridge pattern semantics, table-driven from the AWS documentation examples.

Expected results come from the EventBridge user guide (event patterns, content filtering, null values and empty
strings, arrays, input transformation), the InputTransformer API reference, the SNS filter-policy page for the shared
anything-but semantics, and the README of aws/event-ruler (the matcher behind EventBridge).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.twin.events.patterns import (
    PatternError,
    apply_input_path,
    apply_input_transformer,
    matches,
    validate_pattern,
)

# The EC2 example event of the "Event patterns" page.
EC2_EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"},
}

# The event of the event-ruler README "Ruler by Example" section.
RULER_EVENT = {
    "version": "0",
    "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "012345679012",
    "time": "2017-10-02T16:24:49Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
    "detail": {
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.33",
        "instance-id": "i-000000aaaaaa00000",
        "state": "running",
    },
}

# The "Matching null values and empty strings" example event.
NULL_EVENT = {
    "version": "0",
    "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
    "detail-type": "EC2 Instance Launch Successful",
    "source": "aws.autoscaling",
    "account": "123456789012",
    "time": "2015-11-11T21:31:47Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"eventVersion": "", "responseElements": None},
}

# S3 "Object Created" as delivered to EventBridge (S3 user guide, EventBridge message structure).
S3_OBJECT_CREATED = {
    "version": "0",
    "id": "17793124-05d4-b198-2fde-7ededc63b103",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": "111122223333",
    "time": "2021-11-12T00:00:00Z",
    "region": "ca-central-1",
    "resources": ["arn:aws:s3:::DOC-EXAMPLE-BUCKET1"],
    "detail": {
        "version": "0",
        "bucket": {"name": "DOC-EXAMPLE-BUCKET1"},
        "object": {
            "key": "incoming/churn/2021-11-12.csv",
            "size": 5,
            "etag": "b1946ac92492d2347c6235b4d2611184",
            "sequencer": "00617F08299329D189",
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": "PutObject",
    },
}

SAGEMAKER_MODEL_PACKAGE = {
    "version": "0",
    "id": "844e2571-85d4-695f-b930-0153b71dcb42",
    "detail-type": "SageMaker Model Package State Change",
    "source": "aws.sagemaker",
    "account": "123456789012",
    "time": "2021-02-24T17:00:14Z",
    "region": "us-east-1",
    "resources": ["arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"],
    "detail": {
        "ModelPackageGroupName": "churn",
        "ModelPackageVersion": 3,
        "ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3",
        "ModelApprovalStatus": "Approved",
        "ModelPackageStatus": "Completed",
    },
}

CLOUDWATCH_ALARM = {
    "version": "0",
    "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
    "detail-type": "CloudWatch Alarm State Change",
    "source": "aws.cloudwatch",
    "account": "123456789012",
    "time": "2019-10-02T17:04:40Z",
    "region": "us-east-1",
    "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:churn-endpoint-5xx"],
    "detail": {
        "alarmName": "churn-endpoint-5xx",
        "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": "2019-10-02T17:04:40.985+0000"},
        "previousState": {
            "value": "OK",
            "reason": "Threshold not crossed",
            "timestamp": "2019-10-02T17:03:40.985+0000",
        },
        "configuration": {"metrics": [{"id": "m1", "metricStat": {"metric": {"name": "Invocation5XXErrors"}}}]},
    },
}


def _detail(**fields: Any) -> dict:
    return {"detail": fields}


# (id, pattern, event, expected)
CASES: list[tuple[str, Any, dict, bool]] = [
    # --- exact values, multiple values (OR), nesting -----------------------------------------------------------
    (
        "ec2-terminated",
        {
            "source": ["aws.ec2"],
            "detail-type": ["EC2 Instance State-change Notification"],
            "detail": {"state": ["terminated"]},
        },
        EC2_EVENT,
        True,
    ),
    ("ec2-other-state", {"source": ["aws.ec2"], "detail": {"state": ["running"]}}, EC2_EVENT, False),
    ("or-values", {"source": ["aws.ec2", "aws.fargate"]}, EC2_EVENT, True),
    ("or-values-none", {"source": ["aws.s3", "aws.fargate"]}, EC2_EVENT, False),
    ("missing-field", {"detail": {"instance-type": ["t3.micro"]}}, EC2_EVENT, False),
    ("exact-is-case-sensitive", {"source": ["AWS.EC2"]}, EC2_EVENT, False),
    ("ruler-simple", {"detail": {"state": ["initializing", "running"]}}, RULER_EVENT, True),
    ("number-exact", {"detail": {"c-count": [5]}}, RULER_EVENT, True),
    ("number-exact-other-form", {"detail": {"x-limit": [3.018e2]}}, RULER_EVENT, True),
    ("number-never-equals-string", {"detail": {"c-count": ["5"]}}, RULER_EVENT, False),
    ("string-never-equals-number", {"detail": {"c-count": [5]}}, _detail(**{"c-count": "5"}), False),
    ("bool-exact", {"detail": {"ok": [True]}}, _detail(ok=True), True),
    ("bool-is-not-number", {"detail": {"ok": [1]}}, _detail(ok=True), False),
    # --- arrays in events ----------------------------------------------------------------------------------------
    (
        "arrays-intersection",
        {
            "resources": [
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
                "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
            ]
        },
        {
            "resources": [
                "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:"
                "autoScalingGroupName/ASGTerminate",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            ]
        },
        True,
    ),
    ("arrays-no-intersection", {"resources": ["arn:x"]}, {"resources": ["arn:y", "arn:z"]}, False),
    (
        "array-of-objects",
        {"employees": {"firstName": ["Anna"]}},
        {"employees": [{"firstName": "John"}, {"firstName": "Anna"}, {"firstName": "Peter"}]},
        True,
    ),
    (
        "array-consistent-matching",
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        {
            "employees": [
                [{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}],
                [{"firstName": "Peter", "lastName": "Jones"}],
            ]
        },
        False,
    ),
    (
        "array-consistent-same-element",
        {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}},
        {"employees": [[{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}]]},
        True,
    ),
    # --- null vs empty string -----------------------------------------------------------------------------------
    ("empty-string", {"detail": {"eventVersion": [""]}}, NULL_EVENT, True),
    ("null", {"detail": {"responseElements": [None]}}, NULL_EVENT, True),
    ("empty-string-does-not-match-null", {"detail": {"responseElements": [""]}}, NULL_EVENT, False),
    ("null-does-not-match-empty-string", {"detail": {"eventVersion": [None]}}, NULL_EVENT, False),
    ("null-does-not-match-missing", {"detail": {"nothing": [None]}}, NULL_EVENT, False),
    # --- prefix / suffix -----------------------------------------------------------------------------------------
    ("prefix", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-02T18:43:48Z"}, True),
    ("prefix-no", {"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-03T18:43:48Z"}, False),
    ("prefix-not-on-numbers", {"detail": {"n": [{"prefix": "1"}]}}, _detail(n=12), False),
    ("region-prefix", {"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, True),
    (
        "prefix-ignore-case",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        _detail(service="eventbridge"),
        True,
    ),
    (
        "prefix-ignore-case-upper",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        _detail(service="EVENTBRIDGE"),
        True,
    ),
    (
        "prefix-ignore-case-no",
        {"detail": {"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}},
        _detail(service="sns"),
        False,
    ),
    ("suffix", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.png"}, True),
    ("suffix-no", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.jpg"}, False),
    ("suffix-is-case-sensitive", {"FileName": [{"suffix": ".png"}]}, {"FileName": "image.PNG"}, False),
    (
        "suffix-ignore-case",
        {"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}},
        _detail(FileName="IMAGE.PNG"),
        True,
    ),
    ("suffix-source", {"source": [{"suffix": "ec2"}]}, RULER_EVENT, True),
    # --- anything-but ------------------------------------------------------------------------------------------
    ("anything-but-string", {"detail": {"state": [{"anything-but": "initializing"}]}}, RULER_EVENT, True),
    (
        "anything-but-string-no",
        {"detail": {"state": [{"anything-but": "initializing"}]}},
        _detail(state="initializing"),
        False,
    ),
    ("anything-but-number", {"detail": {"x-limit": [{"anything-but": 123}]}}, RULER_EVENT, True),
    ("anything-but-number-no", {"detail": {"x-limit": [{"anything-but": 123}]}}, _detail(**{"x-limit": 123}), False),
    (
        "anything-but-list",
        {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
        _detail(state="running"),
        True,
    ),
    (
        "anything-but-list-no",
        {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
        _detail(state="overloaded"),
        False,
    ),
    (
        "anything-but-numbers",
        {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}},
        _detail(**{"x-limit": 301.8}),
        True,
    ),
    (
        "anything-but-numbers-no",
        {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}},
        _detail(**{"x-limit": 200}),
        False,
    ),
    ("anything-but-missing-field", {"detail": {"state": [{"anything-but": "initializing"}]}}, _detail(), False),
    (
        "anything-but-prefix",
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        _detail(state="running"),
        True,
    ),
    (
        "anything-but-prefix-no",
        {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}},
        _detail(state="initializing"),
        False,
    ),
    ("anything-but-region", {"Region": [{"anything-but": {"prefix": "us-"}}]}, {"Region": "eu-west-1"}, True),
    ("anything-but-suffix", {"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.txt"}, True),
    ("anything-but-suffix-no", {"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.png"}, False),
    (
        "anything-but-ignore-case-no",
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "INITIALIZING"},
        False,
    ),
    (
        "anything-but-ignore-case",
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "running"},
        True,
    ),
    (
        "anything-but-wildcard-no",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/lib/libc.so"},
        False,
    ),
    (
        "anything-but-wildcard",
        {"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]},
        {"FilePath": "/usr/bin/env"},
        True,
    ),
    # SNS filter-policy examples (same matcher): arrays where no element is excluded vs all elements excluded
    (
        "anything-but-wildcard-array",
        {"customer_interests": [{"anything-but": {"wildcard": "*ball"}}]},
        {"customer_interests": ["hockey", "rugby", "soccer"]},
        True,
    ),
    (
        "anything-but-wildcard-array-no",
        {"customer_interests": [{"anything-but": {"wildcard": "*ball"}}]},
        {"customer_interests": ["baseball", "basketball"]},
        False,
    ),
    (
        "anything-but-suffix-array-no",
        {"customer_interests": [{"anything-but": {"suffix": "ball"}}]},
        {"customer_interests": ["baseball", "basketball"]},
        False,
    ),
    # --- numeric ------------------------------------------------------------------------------------------------
    (
        "numeric-doc-example",
        {
            "detail": {
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"numeric": ["=", 3.018e2]}],
            }
        },
        RULER_EVENT,
        True,
    ),
    (
        "numeric-range-low-open",
        {"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}},
        _detail(**{"c-count": 0}),
        False,
    ),
    ("numeric-range-high", {"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, _detail(**{"c-count": 6}), False),
    ("numeric-lt-no", {"detail": {"d-count": [{"numeric": ["<", 10]}]}}, _detail(**{"d-count": 10}), False),
    ("numeric-ge", {"n": [{"numeric": [">=", 10]}]}, {"n": 10}, True),
    ("numeric-le", {"n": [{"numeric": ["<=", 10]}]}, {"n": 10.5}, False),
    ("numeric-float-vs-int", {"n": [{"numeric": ["=", 5]}]}, {"n": 5.0}, True),
    (
        "numeric-string-value",
        {"detail": {"x-limit": [{"numeric": ["=", 301.8]}]}},
        _detail(**{"x-limit": "301.8"}),
        False,
    ),
    ("numeric-array-any", {"n": [{"numeric": [">", 100]}]}, {"n": [1, 2, 300]}, True),
    # --- exists -------------------------------------------------------------------------------------------------
    (
        "exists-true",
        {"detail": {"state": [{"exists": True}]}},
        {**EC2_EVENT, "detail": {"instance-id": "i-abcd1111", "state": "pending"}},
        True,
    ),
    (
        "exists-true-missing",
        {"detail": {"state": [{"exists": True}]}},
        {"detail": {"c-count": {"c1": 100}}},
        False,
    ),
    (
        "exists-false-missing",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"state": ["initializing", "running"]}},
        True,
    ),
    (
        "exists-false-intermediate-node",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"state": ["initializing", "running"], "c-count": {"c1": 100}}},
        True,
    ),
    ("exists-false-present", {"detail": {"c-count": [{"exists": False}]}}, RULER_EVENT, False),
    (
        "exists-true-intermediate-node",
        {"detail": {"c-count": [{"exists": True}]}},
        {"detail": {"c-count": {"c1": 1}}},
        False,
    ),
    ("exists-true-null", {"detail": {"responseElements": [{"exists": True}]}}, NULL_EVENT, True),
    ("exists-false-whole-parent-missing", {"detail": {"c-count": [{"exists": False}]}}, {"source": "x"}, True),
    # --- equals-ignore-case -------------------------------------------------------------------------------------
    ("equals-ignore-case", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Alice"}, True),
    ("equals-ignore-case-no", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Alicia"}, False),
    ("equals-ignore-case-source", {"source": [{"equals-ignore-case": "EC2"}]}, {"source": "ec2"}, True),
    # --- wildcard -----------------------------------------------------------------------------------------------
    ("wildcard", {"source": [{"wildcard": "Simple*Service"}]}, {"source": "SimpleQueueService"}, True),
    ("wildcard-zero-chars", {"source": [{"wildcard": "Simple*Service"}]}, {"source": "SimpleService"}, True),
    ("wildcard-no", {"source": [{"wildcard": "Simple*Service"}]}, {"source": "SimpleQueueServices"}, False),
    (
        "wildcard-event-bus-arn",
        {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:us-east-1:123456789012:event-bus/default"},
        True,
    ),
    (
        "wildcard-event-bus-arn-no",
        {"EventBusArn": [{"wildcard": "arn:aws:events:us-east-1:*:event-bus/*"}]},
        {"EventBusArn": "arn:aws:events:us-west-2:123456789012:event-bus/default"},
        False,
    ),
    ("wildcard-suffix-form", {"key": [{"wildcard": "*.png"}]}, {"key": "dir/a.png"}, True),
    ("wildcard-middle", {"title": [{"wildcard": "*Title*"}]}, {"title": "My Title Here"}, True),
    ("wildcard-escaped-star", {"v": [{"wildcard": "a\\*b"}]}, {"v": "a*b"}, True),
    ("wildcard-escaped-star-literal", {"v": [{"wildcard": "a\\*b"}]}, {"v": "axxb"}, False),
    ("wildcard-escaped-backslash", {"v": [{"wildcard": "a\\\\*"}]}, {"v": "a\\bc"}, True),
    ("wildcard-regex-chars-literal", {"v": [{"wildcard": "a.c*"}]}, {"v": "abcd"}, False),
    # --- cidr -----------------------------------------------------------------------------------------------------
    ("cidr", {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}}, _detail(sourceIPAddress="10.0.0.255"), True),
    ("cidr-no", {"detail": {"sourceIPAddress": [{"cidr": "10.0.0.0/24"}]}}, _detail(sourceIPAddress="10.0.1.1"), False),
    ("cidr-ruler", {"detail": {"source-ip": [{"cidr": "10.0.0.0/8"}]}}, RULER_EVENT, True),
    ("cidr-ipv6", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8:1234::1"}, True),
    ("cidr-ipv6-no", {"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db9::1"}, False),
    ("cidr-not-an-ip", {"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "hello"}, False),
    # --- $or ----------------------------------------------------------------------------------------------------
    (
        "or-second-branch",
        {
            "source": ["aws.cloudwatch"],
            "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}],
        },
        {"source": "aws.cloudwatch", "metricName": "Errors", "namespace": "AWS/EC2"},
        True,
    ),
    (
        "or-neither-branch",
        {
            "source": ["aws.cloudwatch"],
            "$or": [{"metricName": ["CPUUtilization", "ReadLatency"]}, {"namespace": ["AWS/EC2", "AWS/ES"]}],
        },
        {"source": "aws.cloudwatch", "metricName": "Errors", "namespace": "AWS/Lambda"},
        False,
    ),
    (
        "or-and-still-required",
        {"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]},
        {"source": "aws.ec2", "metricName": "CPUUtilization"},
        False,
    ),
    (
        "or-nested-and",
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization", "ReadLatency"]},
                {
                    "metricType": ["MetricType"],
                    "namespace": ["AWS/EC2", "AWS/ES"],
                    "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
                },
                {"scope": ["Service"]},
            ],
        },
        {"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/ES", "spaceId": 1000},
        True,
    ),
    (
        "or-nested-and-inner-fails",
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization", "ReadLatency"]},
                {
                    "metricType": ["MetricType"],
                    "namespace": ["AWS/EC2", "AWS/ES"],
                    "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
                },
                {"scope": ["Service"]},
            ],
        },
        {"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/ES", "spaceId": 7},
        False,
    ),
    (
        "or-parallel-in-detail",
        {
            "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
            "detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]},
        },
        {"namespace": "AWS/EC2", "detail": {"detail-type": "CloudWatch Alarm State Change"}},
        True,
    ),
    (
        "or-as-plain-field-name",
        {"source": ["aws.cloudwatch"], "$or": {"metricType": ["MetricType"]}},
        {"source": "aws.cloudwatch", "$or": {"metricType": "MetricType"}},
        True,
    ),
    # --- the complex example of the content-filtering page ------------------------------------------------------
    (
        "complex",
        {
            "time": [{"prefix": "2017-10-02"}],
            "detail": {
                "state": [{"anything-but": "initializing"}],
                "c-count": [{"numeric": [">", 0, "<=", 5]}],
                "d-count": [{"numeric": ["<", 10]}],
                "x-limit": [{"anything-but": [100, 200, 300]}],
                "source-ip": [{"cidr": "10.0.0.0/8"}],
            },
        },
        RULER_EVENT,
        True,
    ),
    # a repeated key: only the last occurrence counts (only expressible as JSON text)
    (
        "duplicate-key-last-wins",
        '{"detail": {"location": [{"prefix": "us-"}], "location": [{"anything-but": "us-east"}]}}',
        _detail(location="eu-west"),
        True,
    ),
    # --- AWS service events used by the platform ----------------------------------------------------------------
    (
        "s3-object-created-prefix",
        {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["DOC-EXAMPLE-BUCKET1"]}, "object": {"key": [{"prefix": "incoming/"}]}},
        },
        S3_OBJECT_CREATED,
        True,
    ),
    (
        "s3-object-created-other-prefix",
        {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["DOC-EXAMPLE-BUCKET1"]}, "object": {"key": [{"prefix": "validated/"}]}},
        },
        S3_OBJECT_CREATED,
        False,
    ),
    (
        "s3-object-created-other-bucket",
        {"source": ["aws.s3"], "detail": {"bucket": {"name": ["other-bucket"]}}},
        S3_OBJECT_CREATED,
        False,
    ),
    (
        "s3-object-deleted-type",
        {"source": ["aws.s3"], "detail-type": ["Object Deleted"]},
        S3_OBJECT_CREATED,
        False,
    ),
    (
        "s3-csv-suffix-and-size",
        {"detail": {"object": {"key": [{"suffix": ".csv"}], "size": [{"numeric": [">", 0]}]}}},
        S3_OBJECT_CREATED,
        True,
    ),
    (
        "sagemaker-approved",
        {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelPackageGroupName": ["churn"], "ModelApprovalStatus": ["Approved"]},
        },
        SAGEMAKER_MODEL_PACKAGE,
        True,
    ),
    (
        "sagemaker-rejected-only",
        {"source": ["aws.sagemaker"], "detail": {"ModelApprovalStatus": ["Rejected"]}},
        SAGEMAKER_MODEL_PACKAGE,
        False,
    ),
    (
        "sagemaker-not-pending",
        {"detail": {"ModelApprovalStatus": [{"anything-but": "PendingManualApproval"}]}},
        SAGEMAKER_MODEL_PACKAGE,
        True,
    ),
    (
        "cloudwatch-alarm",
        {
            "source": ["aws.cloudwatch"],
            "detail-type": ["CloudWatch Alarm State Change"],
            "detail": {"alarmName": [{"prefix": "churn-"}], "state": {"value": ["ALARM"]}},
        },
        CLOUDWATCH_ALARM,
        True,
    ),
    (
        "cloudwatch-alarm-ok-only",
        {"source": ["aws.cloudwatch"], "detail": {"state": {"value": ["OK"]}}},
        CLOUDWATCH_ALARM,
        False,
    ),
    (
        "cloudwatch-nested-array",
        {"detail": {"configuration": {"metrics": {"metricStat": {"metric": {"name": ["Invocation5XXErrors"]}}}}}},
        CLOUDWATCH_ALARM,
        True,
    ),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches(pattern: Any, event: dict, expected: bool) -> None:
    assert matches(pattern, event) is expected


def test_pattern_given_as_json_text() -> None:
    assert matches(json.dumps({"source": ["aws.ec2"]}), EC2_EVENT)


INVALID: list[tuple[str, Any, str]] = [
    ("leaf-not-array", {"source": "aws.s3"}, "must be an array"),
    ("leaf-number", {"detail": {"size": 5}}, "must be an array"),
    ("operator-not-in-array", {"source": {"prefix": "aws."}}, "inside an array"),
    ("unknown-operator", {"source": [{"contains": "s3"}]}, "Unrecognized match type contains"),
    ("two-keys-in-operator", {"source": [{"prefix": "a", "suffix": "b"}]}, "Only one key"),
    ("nested-array", {"source": [["aws.s3"]]}, "Match value must be"),
    ("empty-array", {"source": []}, "Empty arrays"),
    ("empty-object", {}, "Empty objects"),
    ("empty-nested-object", {"detail": {}}, "Empty objects"),
    ("not-an-object", ["aws.s3"], "not an object"),
    ("invalid-json", '{"source": ["aws.s3"', "not valid JSON"),
    ("prefix-list", {"key": [{"prefix": ["a", "b"]}]}, "must be a string"),
    ("prefix-number", {"key": [{"prefix": 5}]}, "must be a string"),
    ("prefix-unknown-modifier", {"key": [{"prefix": {"wildcard": "a*"}}]}, "Unsupported prefix"),
    ("suffix-number", {"key": [{"suffix": 5}]}, "must be a string"),
    ("equals-ignore-case-list", {"key": [{"equals-ignore-case": ["a"]}]}, "must be a string"),
    ("exists-not-bool", {"key": [{"exists": "yes"}]}, "true or false"),
    ("numeric-not-list", {"n": [{"numeric": 5}]}, "operator/number pairs"),
    ("numeric-missing-value", {"n": [{"numeric": ["<"]}]}, "operator/number pairs"),
    ("numeric-value-is-string", {"n": [{"numeric": ["<", "10"]}]}, "must be numeric"),
    ("numeric-unknown-op", {"n": [{"numeric": ["!=", 10]}]}, "Unrecognized numeric range operator"),
    ("numeric-equals-in-range", {"n": [{"numeric": ["=", 1, "<", 5]}]}, "lower bound"),
    ("numeric-upper-first", {"n": [{"numeric": ["<", 5, ">", 1]}]}, "lower bound"),
    ("numeric-two-lower", {"n": [{"numeric": [">", 1, ">", 5]}]}, "lower bound"),
    ("numeric-empty-range", {"n": [{"numeric": [">", 5, "<", 1]}]}, "Bottom must be less than top"),
    ("numeric-too-many", {"n": [{"numeric": [">", 1, "<", 5, "<", 6]}]}, "Too many terms"),
    ("anything-but-mixed-list", {"s": [{"anything-but": ["a", 1]}]}, "all values must be strings or all numbers"),
    ("anything-but-empty-list", {"s": [{"anything-but": []}]}, "Empty arrays"),
    ("anything-but-prefix-list", {"s": [{"anything-but": {"prefix": ["a", "b"]}}]}, "must be a string"),
    ("anything-but-unknown", {"s": [{"anything-but": {"numeric": [">", 1]}}]}, "Unsupported anything-but"),
    ("anything-but-bool", {"s": [{"anything-but": True}]}, "anything-but must be"),
    ("wildcard-consecutive-stars", {"s": [{"wildcard": "a**b"}]}, "Consecutive wildcard"),
    ("wildcard-bad-escape", {"s": [{"wildcard": "a\\b"}]}, "Invalid escape"),
    ("wildcard-trailing-backslash", {"s": [{"wildcard": "ab\\"}]}, "Invalid escape"),
    ("cidr-invalid", {"ip": [{"cidr": "10.0.0.0/33"}]}, "Nonstandard IP address"),
    ("cidr-not-string", {"ip": [{"cidr": 10}]}, "must be a string"),
    ("or-branch-invalid", {"$or": [{"a": ["x"]}, {"b": "y"}]}, "must be an array"),
]


@pytest.mark.parametrize(("pattern", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_patterns_are_rejected(pattern: Any, message: str) -> None:
    with pytest.raises(PatternError, match="Event pattern is not valid") as info:
        validate_pattern(pattern)
    assert message in str(info.value)
    with pytest.raises(PatternError):
        matches(pattern, EC2_EVENT)


def test_valid_patterns_pass_validation() -> None:
    for _, pattern, _, _ in CASES:
        validate_pattern(pattern)


# --- input transformation --------------------------------------------------------------------------------------

# The example event and InputPathsMap of the "Amazon EventBridge input transformation" page.
TRANSFORM_EVENT = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING"},
}
PATHS = {"timestamp": "$.time", "instance": "$.detail.instance-id", "state": "$.detail.state"}
RULE = {"rule_name": "example", "rule_arn": "arn:aws:events:us-east-2:123456789012:rule/example"}

# (id, template, expected output; JSON outputs are compared after parsing)
TRANSFORMS: list[tuple[str, str, Any]] = [
    ("simple-string", '"instance <instance> is in <state>"', "instance i-0123456789 is in RUNNING"),
    (
        "string-with-escaped-quotes",
        '"instance \\"<instance>\\" is in <state>"',
        'instance "i-0123456789" is in RUNNING',
    ),
    (
        "simple-json",
        '{\n  "instance" : <instance>,\n  "state": <state>\n}',
        {"instance": "i-0123456789", "state": "RUNNING"},
    ),
    (
        "json-with-strings-and-variables",
        '{"instance" : <instance>, "state": "<state>", "instanceStatus": "instance \\"<instance>\\" is in <state>"}',
        {"instance": "i-0123456789", "state": "RUNNING", "instanceStatus": 'instance "i-0123456789" is in RUNNING'},
    ),
    (
        "json-mixed-static",
        '{"instance" : <instance>, "state": [ 9, <state>, true ], "Transformed" : "Yes"}',
        {"instance": "i-0123456789", "state": [9, "RUNNING", True], "Transformed": "Yes"},
    ),
    ("reserved-in-string", '"<aws.events.rule-name> triggered"', "example triggered"),
]


@pytest.mark.parametrize(("template", "expected"), [c[1:] for c in TRANSFORMS], ids=[c[0] for c in TRANSFORMS])
def test_input_transformer_doc_examples(template: str, expected: Any) -> None:
    out = apply_input_transformer(PATHS, template, TRANSFORM_EVENT, **RULE)
    assert json.loads(out) == expected


def test_input_transformer_output_is_minified() -> None:
    out = apply_input_transformer(PATHS, '{\n  "instance" : <instance>,\n  "state": <state>\n}', TRANSFORM_EVENT)
    assert out == '{"instance":"i-0123456789","state":"RUNNING"}'


def test_input_transformer_reserved_variables_as_json_values() -> None:
    template = (
        '{"instance": <instance>, "ruleArn": <aws.events.rule-arn>, "ruleName": <aws.events.rule-name>,'
        ' "originalEvent": <aws.events.event>, "full": <aws.events.event.json>,'
        ' "ingested": <aws.events.event.ingestion-time>}'
    )
    out = json.loads(apply_input_transformer(PATHS, template, TRANSFORM_EVENT, ingestion_time=0.0, **RULE))
    assert out["ruleArn"] == RULE["rule_arn"]
    assert out["ruleName"] == "example"
    # aws.events.event is the payload without "detail"; aws.events.event.json is the whole event
    assert out["originalEvent"] == {k: v for k, v in TRANSFORM_EVENT.items() if k != "detail"}
    assert out["full"] == TRANSFORM_EVENT
    assert out["ingested"] == "1970-01-01T00:00:00Z"


def test_input_transformer_plain_text_template_from_api_reference() -> None:
    paths = {"instance": "$.detail.instance-id", "status": "$.detail.state"}
    assert apply_input_transformer(paths, "<instance> is in state <status>", TRANSFORM_EVENT) == (
        "i-0123456789 is in state RUNNING"
    )


def test_input_transformer_api_reference_json_example() -> None:
    paths = {"instance": "$.detail.instance-id", "status": "$.detail.state"}
    template = '{"myInstance": <instance>,"myStatus": "<instance> is in state \\"<status>\\""}'
    assert json.loads(apply_input_transformer(paths, template, TRANSFORM_EVENT)) == {
        "myInstance": "i-0123456789",
        "myStatus": 'i-0123456789 is in state "RUNNING"',
    }


def test_input_transformer_missing_paths_render_null_or_empty() -> None:
    paths = {"gone": "$.detail.nope", "state": "$.detail.state"}
    out = apply_input_transformer(paths, '{"a": <gone>, "b": "x<gone>y", "c": <state>}', TRANSFORM_EVENT)
    assert json.loads(out) == {"a": None, "b": "xy", "c": "RUNNING"}


def test_input_transformer_values_keep_their_json_types() -> None:
    event = {"detail": {"n": 5, "flag": False, "obj": {"k": "v"}, "arr": [1, "two"], "nil": None}}
    paths = {
        "n": "$.detail.n",
        "flag": "$.detail.flag",
        "obj": "$.detail.obj",
        "arr": "$.detail.arr",
        "nil": "$.detail.nil",
    }
    out = apply_input_transformer(paths, '{"n": <n>, "f": <flag>, "o": <obj>, "a": <arr>, "z": <nil>}', event)
    assert json.loads(out) == {"n": 5, "f": False, "o": {"k": "v"}, "a": [1, "two"], "z": None}
    # inside a string, objects lose their inner quotes so the string stays valid; numbers keep their text
    out = apply_input_transformer(paths, '{"s": "n=<n> o=<obj> a=<arr>"}', event)
    assert json.loads(out) == {"s": "n=5 o={k:v} a=[1,two]"}


def test_input_transformer_s3_object_created() -> None:
    paths = {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key", "size": "$.detail.object.size"}
    template = '{"bucket": <bucket>, "key": <key>, "size": <size>, "uri": "s3://<bucket>/<key>"}'
    out = json.loads(apply_input_transformer(paths, template, S3_OBJECT_CREATED))
    assert out == {
        "bucket": "DOC-EXAMPLE-BUCKET1",
        "key": "incoming/churn/2021-11-12.csv",
        "size": 5,
        "uri": "s3://DOC-EXAMPLE-BUCKET1/incoming/churn/2021-11-12.csv",
    }


def test_input_transformer_whole_event_and_array_index() -> None:
    paths = {"all": "$", "first": "$.resources[0]"}
    out = json.loads(apply_input_transformer(paths, '{"e": <all>, "r": <first>}', TRANSFORM_EVENT))
    assert out == {"e": TRANSFORM_EVENT, "r": TRANSFORM_EVENT["resources"][0]}


def test_input_transformer_unknown_angle_text_is_left_alone() -> None:
    assert apply_input_transformer({}, "a <b> c", TRANSFORM_EVENT) == "a <b> c"


def test_input_transformer_rejects_reserved_names() -> None:
    with pytest.raises(ValueError, match="cannot start with"):
        apply_input_transformer({"aws.mine": "$.id"}, "<aws.mine>", TRANSFORM_EVENT)


def test_apply_input_path() -> None:
    assert apply_input_path("$.detail", TRANSFORM_EVENT) == TRANSFORM_EVENT["detail"]
    assert apply_input_path("$.detail.instance-id", TRANSFORM_EVENT) == "i-0123456789"
    assert apply_input_path("$", TRANSFORM_EVENT) == TRANSFORM_EVENT
    assert apply_input_path("$.resources[0]", TRANSFORM_EVENT) == TRANSFORM_EVENT["resources"][0]
    assert apply_input_path("$.detail.missing", TRANSFORM_EVENT) is None
    event = {"detail": {"items": [{"id": 1}, {"id": 2}, {"other": 3}]}}
    assert apply_input_path("$.detail.items[*].id", event) == [1, 2]
    with pytest.raises(ValueError):
        apply_input_path("detail", TRANSFORM_EVENT)
