"""How state lists are shown."""

from __future__ import annotations

from mlops.twin.stepfunctions.asl.history import compress_states


def test_repeated_polling_cycles_are_folded() -> None:
    polled = ["Plan", "Update", *(["Wait", "Describe", "Settled?"] * 4), "Record"]
    assert compress_states(polled) == ["Plan", "Update", "Wait → Describe → Settled? (4 times)", "Record"]
    assert compress_states(["Retry", "Retry", "Done"]) == ["Retry (2 times)", "Done"]
    assert compress_states(["A", "B", "C"]) == ["A", "B", "C"]
