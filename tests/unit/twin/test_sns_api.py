"""The SNS API of the twin: the assembly's topics and subscriptions; Publish records what would be sent."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from mlops.twin.runtime import Twin
from tests.unit.twin.mini_app import aws_cli, aws_json

TOPIC = "arn:aws:sns:us-east-1:000000000000:mini-alerts"


def test_topics_and_subscriptions_are_the_assembly_s(mini_twin: Twin) -> None:
    sns = mini_twin.client("sns")
    assert sns.list_topics()["Topics"] == [{"TopicArn": TOPIC}]
    (sub,) = sns.list_subscriptions_by_topic(TopicArn=TOPIC)["Subscriptions"]
    assert sub == {
        "SubscriptionArn": "PendingConfirmation",  # an email endpoint confirms; the twin cannot reach it
        "Owner": "000000000000",
        "Protocol": "email",
        "Endpoint": "ops@example.com",
        "TopicArn": TOPIC,
    }
    with pytest.raises(ClientError) as caught:
        sns.list_subscriptions_by_topic(TopicArn=TOPIC + "-nope")
    assert caught.value.response["Error"]["Code"] == "NotFound"


def test_publish_records_the_message(mini_twin: Twin) -> None:
    body = f"hello {time.time_ns()}"
    got = mini_twin.client("sns").publish(
        TopicArn=TOPIC,
        Subject="greeting",
        Message=body,
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )
    (sent,) = [n for n in mini_twin.notifications.read() if n["message"] == body]
    assert sent["id"] == got["MessageId"] and sent["subject"] == "greeting" and sent["topic"] == TOPIC
    assert sent["attributes"]["kind"]["StringValue"] == "test"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ({"TopicArn": TOPIC + "-nope", "Message": "x"}, "NotFound"),
        ({"TopicArn": TOPIC, "Message": "x", "Subject": "s" * 101}, "InvalidParameter"),
        ({"TopicArn": TOPIC, "Message": "x" * (256 * 1024 + 1)}, "InvalidParameter"),
        ({"TopicArn": TOPIC, "Message": json.dumps({"email": "x"}), "MessageStructure": "json"}, "InvalidParameter"),
        ({"PhoneNumber": "+15555550100", "Message": "x"}, "NotImplemented"),
    ],
)
def test_publish_refuses_what_sns_refuses(mini_twin: Twin, call: dict[str, str], code: str) -> None:
    with pytest.raises(ClientError) as caught:
        mini_twin.client("sns").publish(**call)
    assert caught.value.response["Error"]["Code"] == code


def test_the_cli_lists_and_publishes(mini_twin: Twin) -> None:
    assert aws_json(mini_twin, "sns", "list-topics")["Topics"] == [{"TopicArn": TOPIC}]
    got = aws_json(mini_twin, "sns", "publish", "--topic-arn", TOPIC, "--message", "from the CLI")
    assert any(n["id"] == got["MessageId"] for n in mini_twin.notifications.read())
    done = aws_cli(mini_twin, "sns", "create-topic", "--name", "another", check=False)
    assert done.returncode != 0 and "sns:CreateTopic is not implemented by the local twin" in done.stderr
