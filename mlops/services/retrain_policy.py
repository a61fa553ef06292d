"""When an alarm-triggered retrain may run: one per cooldown window, and only with something new to learn.

- Cooldown: a conditional write on ``s3://<artifacts>/monitoring/<model>/retrain.json`` makes
  duplicate alarm events (or two alarms of one drift episode) start a single retrain. Its
  time is the function's clock: the wall clock in AWS; on the twin, the twin's timeline
  (which continues across restarts and time scales), so a marker keeps its age.
- New information: retraining on the champion's own inputs (same validated dataset, no
  newly labelled captured request) with the same seed reproduces the champion, so such a
  retrain is not run; the alarm is recorded and notified instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from mlops.s3io import S3Location, get_json, put_json_if_absent, replace_json_if_unchanged


class RetrainCooldown:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def location(self, model: str) -> S3Location:
        return S3Location(self.bucket, f"monitoring/{model}/retrain.json")

    def _blocked(self, last: dict[str, Any], minutes: int, execution_id: str) -> str | None:
        if last.get("execution_id") == execution_id:
            return None  # our own retry
        age = time.time() - float(last.get("started_at", 0))
        if age < minutes * 60:
            return (
                f"retrain cooldown: the last one started {max(age, 0) / 60:.0f} min ago by {last.get('alarm')}; "
                f"cooldown is {minutes} min"
            )
        return None

    def check(self, model: str, minutes: int, execution_id: str) -> str | None:
        """The reason a retrain may not start now, without claiming anything."""
        found = get_json(self.s3, self.location(model))
        return None if found is None else self._blocked(found[0], minutes, execution_id)

    def claim(self, model: str, minutes: int, execution_id: str, alarm: str | None) -> str | None:
        """Start a cooldown window for this retrain; the reason not to retrain if another claimed it first."""
        loc = self.location(model)
        claim = {
            "started_at": time.time(),
            "started": datetime.now(UTC).isoformat(),
            "execution_id": execution_id,
            "alarm": alarm,
        }
        found = get_json(self.s3, loc)
        if found is None:
            return None if put_json_if_absent(self.s3, loc, claim) else "another alarm started this retrain"
        last, etag = found
        blocked = self._blocked(last, minutes, execution_id)
        if blocked is not None or last.get("execution_id") == execution_id:
            return blocked
        return None if replace_json_if_unchanged(self.s3, loc, claim, etag) else "another alarm started this retrain"


def new_information(
    champion: dict[str, Any] | None, dataset_version: str, labelled_ids: set[str], champion_ids: set[str] | None
) -> str | None:
    """What a retrain would learn that the champion did not; None when it has the champion's inputs.

    ``champion_ids``: the captured requests the champion was trained with (None if its
    lineage does not say: then any labelled request counts as new).
    """
    if champion is None:
        return "no approved model yet"
    if not champion.get("dataset_version"):
        return "the champion's training dataset is not recorded"
    if champion["dataset_version"] != dataset_version:
        return f"validated dataset {dataset_version} is newer than the champion's {champion['dataset_version']}"
    fresh = labelled_ids - (champion_ids or set())
    if fresh:
        return f"{len(fresh)} newly labelled captured requests"
    return None
