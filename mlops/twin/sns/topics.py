"""SNS on the twin: what would be sent to the topics' subscribers, kept in a JSON Lines file."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any


class Notifications:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.topics: set[str] = set()
        self._lock = threading.Lock()

    def add_topic(self, arn: str) -> None:
        self.topics.add(arn)

    def publish(self, params: dict[str, Any]) -> dict[str, Any]:
        """``sns:Publish`` parameters in, the API's response out."""
        topic = str(params.get("TopicArn", ""))
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
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        return {"MessageId": entry["id"]}

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
