"""Shared fixtures: fake AWS credentials (nothing here ever talks to AWS) and moto S3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent

# Set before any boto3 client exists: no test may reach a real account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "mlops-tests",
        "POWERTOOLS_METRICS_NAMESPACE": "MlopsTests",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("MLOPS_CONFIG_DIR", None)


@pytest.fixture
def s3() -> Iterator[object]:
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")
