"""The SNS API of the twin: the assembly's topics and subscriptions; Publish records the message."""

from __future__ import annotations

import json
from typing import Any

from mlops.twin.api import ApiError, Call, not_implemented, page
from mlops.twin.sns.topics import Notifications

MAX_MESSAGE_BYTES = 256 * 1024
MAX_SUBJECT = 100


def _invalid(what: str) -> ApiError:
    return ApiError("InvalidParameter", f"Invalid parameter: {what}")


class SnsApi:
    service = "sns"

    def __init__(self, notifications: Notifications, *, account: str) -> None:
        self.notifications = notifications
        self.account = account

    def operations(self) -> set[str]:
        return {"ListTopics", "ListSubscriptionsByTopic", "Publish"}

    def handle(self, call: Call) -> dict[str, Any]:
        handler = {
            "ListTopics": self._list_topics,
            "ListSubscriptionsByTopic": self._list_subscriptions_by_topic,
            "Publish": self._publish,
        }.get(call.operation)
        if handler is None:
            raise not_implemented(self.service, call.operation)
        return handler(call.params)

    def _topic(self, arn: str) -> str:
        if arn not in self.notifications.topics:
            raise ApiError("NotFound", "Topic does not exist", 404)
        return arn

    @staticmethod
    def _bad_token() -> ApiError:
        return _invalid("NextToken")

    def _list_topics(self, params: dict[str, Any]) -> dict[str, Any]:
        topics = sorted(self.notifications.topics)
        chosen, token = page(topics, params.get("NextToken"), 100, bad_token=self._bad_token())
        return {"Topics": [{"TopicArn": t} for t in chosen], **({"NextToken": token} if token else {})}

    def _list_subscriptions_by_topic(self, params: dict[str, Any]) -> dict[str, Any]:
        topic = self._topic(params["TopicArn"])
        subs = [s for s in self.notifications.subscriptions if s.topic == topic]
        chosen, token = page(subs, params.get("NextToken"), 100, bad_token=self._bad_token())
        shaped = [
            {
                "SubscriptionArn": s.arn,
                "Owner": self.account,
                "Protocol": s.protocol,
                "Endpoint": s.endpoint,
                "TopicArn": s.topic,
            }
            for s in chosen
        ]
        return {"Subscriptions": shaped, **({"NextToken": token} if token else {})}

    def _publish(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("PhoneNumber"):
            raise not_implemented(self.service, "Publish to a phone number (SMS)")
        if params.get("TopicArn") and params.get("TargetArn"):
            raise _invalid("TopicArn or TargetArn Reason: Only one of TopicArn or TargetArn may be specified")
        topic = self._topic(str(params.get("TopicArn") or params.get("TargetArn") or ""))
        message = params.get("Message")
        if message is None or message == "":
            raise _invalid("Message Reason: Empty message")
        size = len(message.encode()) + sum(
            len(k.encode()) + len(str(v.get("StringValue") or v.get("BinaryValue") or "").encode())
            for k, v in (params.get("MessageAttributes") or {}).items()
        )
        if size > MAX_MESSAGE_BYTES:
            raise _invalid("Message too long")
        subject = params.get("Subject")
        if subject is not None and (
            not subject or len(subject) > MAX_SUBJECT or not subject.isascii() or any(c in subject for c in "\r\n")
        ):
            raise _invalid("Subject")
        if params.get("MessageStructure") not in (None, "json"):
            raise _invalid("MessageStructure")
        if params.get("MessageStructure") == "json":
            try:
                doc = json.loads(message)
            except ValueError:
                raise _invalid("Message Structure - JSON message body failed to parse") from None
            if not isinstance(doc, dict) or "default" not in doc:
                raise _invalid("Message Structure - No default entry in JSON message body")
        fifo = topic.endswith(".fifo")
        if fifo and not params.get("MessageGroupId"):
            raise _invalid("The MessageGroupId parameter is required for FIFO topics")
        if not fifo and params.get("MessageDeduplicationId"):
            raise _invalid(
                "MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter "
                "that is not valid for this topic type"
            )
        return self.notifications.publish(params)
