"""The one front door: routing by signing name and model, the caller from the access key, one authorizer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mlops.twin.api import ApiError, Call
from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/App-FnRole"


class Topics:
    """A ServiceApi serving one SNS operation, recording who called."""

    service = "sns"

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def operations(self) -> set[str]:
        return {"ListTopics"}

    def handle(self, call: Call) -> dict[str, Any]:
        self.calls.append(call)
        return {"Topics": [{"TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts"}]}


class DenyPublishers:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def authorize(self, principal: str, service: str, operation: str, params: dict[str, Any]) -> None:
        self.seen.append((principal, service, operation))
        if principal == ROLE:
            raise ApiError("AuthorizationError", f"{principal} may not {service}:{operation}", 403)


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, Topics, DenyPublishers, Principals]]:
    principals = Principals(ACCOUNT)
    authorizer = DenyPublishers()
    gw = Gateway(principals, authorizer=authorizer)
    topics = Topics()
    gw.mount_api(topics)
    gw.start()
    yield gw, topics, authorizer, principals
    gw.stop()


def _client(url: str, service: str, key: str = "operator", token: str | None = None) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key="x",
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )


def test_a_served_operation_answers_from_the_service_as_the_operator(gateway) -> None:
    gw, topics, authorizer, principals = gateway
    out = _client(gw.url, "sns").list_topics()
    assert out["Topics"] == [{"TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts"}]
    assert topics.calls[0].principal == principals.operator
    assert authorizer.seen == [(principals.operator, "sns", "ListTopics")]


def test_a_role_signs_with_its_own_key_and_the_authorizer_decides(gateway) -> None:
    gw, topics, _, principals = gateway
    creds = principals.credentials(ROLE)
    client = _client(gw.url, "sns", creds.access_key_id, creds.session_token)
    with pytest.raises(ClientError) as info:
        client.list_topics()
    assert info.value.response["Error"]["Code"] == "AuthorizationError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not topics.calls


def test_an_operation_nothing_serves_names_itself(gateway) -> None:
    gw, *_ = gateway
    with pytest.raises(ClientError) as info:
        _client(gw.url, "sns").publish(TopicArn="arn:aws:sns:us-east-1:1:x", Message="m")
    assert info.value.response["Error"]["Code"] == "NotImplemented"
    assert "sns:Publish is not implemented by the local twin" in info.value.response["Error"]["Message"]


def test_a_service_nothing_serves_says_so_instead_of_answering_empty(gateway) -> None:
    gw, *_ = gateway
    with pytest.raises(ClientError) as info:
        _client(gw.url, "stepfunctions").list_state_machines()
    assert info.value.response["Error"]["Code"] == "NotImplemented"
    assert "stepfunctions:ListStateMachines" in info.value.response["Error"]["Message"]
