"""SNS on the twin: the assembly's topics and subscriptions; what would be sent to the
subscribers is kept in a JSON Lines file (``notifications.jsonl``), one message a line."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops.twin.assembly import Assembly

# Protocols whose endpoints must confirm a subscription (the twin cannot reach them to confirm).
CONFIRMED_BY_ENDPOINT = {"email", "email-json", "http", "https"}


@dataclass(frozen=True)
class Subscription:
    topic: str
    protocol: str
    endpoint: str
    arn: str  # "PendingConfirmation" until the endpoint confirms


class Notifications:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.topics: set[str] = set()
        self.subscriptions: list[Subscription] = []
        self._lock = threading.Lock()

    def add_topic(self, arn: str) -> None:
        self.topics.add(arn)

    def subscribe(self, topic: str, protocol: str, endpoint: str) -> Subscription:
        if protocol in CONFIRMED_BY_ENDPOINT:
            arn = "PendingConfirmation"
        else:
            digest = hashlib.sha256(f"{topic}\0{protocol}\0{endpoint}".encode()).hexdigest()
            arn = f"{topic}:{uuid.UUID(digest[:32])}"
        found = Subscription(topic, protocol, endpoint, arn)
        self.subscriptions.append(found)
        return found

    def install(self, assembly: Assembly) -> None:
        """The topics (with inline subscriptions) and ``AWS::SNS::Subscription`` resources of an assembly."""
        for res in assembly.resources("AWS::SNS::Topic"):
            if not assembly.included(res):
                continue
            self.add_topic(res.arn)
            props = assembly.resolve(res.properties, res.stack)
            for sub in props.get("Subscription", []):
                self.subscribe(res.arn, str(sub["Protocol"]), str(sub["Endpoint"]))
        for res in assembly.resources("AWS::SNS::Subscription"):
            if assembly.included(res):
                props = assembly.resolve(res.properties, res.stack)
                self.subscribe(str(props["TopicArn"]), str(props["Protocol"]), str(props.get("Endpoint", "")))

    def publish(self, params: dict[str, Any]) -> dict[str, Any]:
        """``sns:Publish`` parameters in, the API's response out."""
        topic = str(params.get("TopicArn") or params.get("TargetArn") or "")
        if topic not in self.topics:
            raise KeyError(f"topic {topic} is not in the assembly")
        message = params.get("Message")
        entry = {
            "time": time.time(),
            "topic": topic,
            "subject": params.get("Subject"),
            "message": message if isinstance(message, str) else json.dumps(message),
            "id": str(uuid.uuid4()),
        }
        if params.get("MessageAttributes"):
            entry["attributes"] = params["MessageAttributes"]
        if params.get("MessageStructure"):
            entry["structure"] = params["MessageStructure"]
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
        return {"MessageId": entry["id"]}

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
