from __future__ import annotations

import pytest

from mlops.config import Approval, Gate
from mlops.core.gate import APPROVED, PENDING, REJECTED, decide

AUC_GATE = Gate.model_validate(
    {
        "primary_metric": "roc_auc",
        "thresholds": {"roc_auc": {"min": 0.9}, "f1": {"min": 0.85}},
        "champion_tolerance": 0.01,
    }
)
RMSE_GATE = Gate.model_validate(
    {"primary_metric": "rmse", "thresholds": {"rmse": {"max": 75}, "r2": {"min": 0.2}}, "champion_tolerance": 1.0}
)


@pytest.mark.parametrize(
    ("gate", "approval", "candidate", "champion", "status", "reason"),
    [
        # first model: thresholds alone decide
        (AUC_GATE, Approval.AUTO, {"roc_auc": 0.95, "f1": 0.9}, None, APPROVED, None),
        (AUC_GATE, Approval.MANUAL, {"roc_auc": 0.95, "f1": 0.9}, None, PENDING, None),
        (AUC_GATE, Approval.AUTO, {"roc_auc": 0.85, "f1": 0.9}, None, REJECTED, "roc_auc 0.8500 < min 0.9"),
        (AUC_GATE, Approval.AUTO, {"roc_auc": 0.95}, None, REJECTED, "f1 was not reported"),
        # champion/challenger, higher is better, within and beyond tolerance
        (AUC_GATE, Approval.AUTO, {"roc_auc": 0.955, "f1": 0.9}, {"roc_auc": 0.96}, APPROVED, None),
        (AUC_GATE, Approval.AUTO, {"roc_auc": 0.94, "f1": 0.9}, {"roc_auc": 0.96}, REJECTED, "worse than the champion"),
        # edge: exactly at the bound passes
        (AUC_GATE, Approval.AUTO, {"roc_auc": 0.9, "f1": 0.85}, {"roc_auc": 0.91}, APPROVED, None),
        # manual mode never approves a failing candidate
        (AUC_GATE, Approval.MANUAL, {"roc_auc": 0.94, "f1": 0.9}, {"roc_auc": 0.99}, REJECTED, "champion"),
        # lower is better (rmse): max threshold and champion + tolerance
        (RMSE_GATE, Approval.AUTO, {"rmse": 60.0, "r2": 0.4}, {"rmse": 59.5}, APPROVED, None),
        (RMSE_GATE, Approval.AUTO, {"rmse": 61.0, "r2": 0.4}, {"rmse": 59.5}, REJECTED, "above it by more than"),
        (RMSE_GATE, Approval.AUTO, {"rmse": 80.0, "r2": 0.4}, None, REJECTED, "rmse 80.0000 > max 75"),
        (RMSE_GATE, Approval.AUTO, {"rmse": 50.0, "r2": 0.1}, None, REJECTED, "r2 0.1000 < min 0.2"),
    ],
)
def test_gate_decision_table(gate, approval, candidate, champion, status, reason) -> None:
    decision = decide(gate, approval, candidate, champion)
    assert decision.approval_status == status
    assert decision.passed is (status != REJECTED)
    if reason:
        assert any(reason in r for r in decision.reasons), decision.reasons
    else:
        assert decision.reasons == []
    out = decision.to_dict()
    assert out["approval_status"] == status and isinstance(out["summary"], str)


def test_every_failed_check_is_listed() -> None:
    decision = decide(AUC_GATE, Approval.AUTO, {"roc_auc": 0.5, "f1": 0.5}, {"roc_auc": 0.99})
    assert len(decision.reasons) == 3
    assert decision.summary().startswith("gate failed: ")
