"""The approval gate: config thresholds AND "no worse than the current champion".

Pure logic so that the gate Lambda, the CLI and the tests share one decision table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.config import LOWER_IS_BETTER, Approval, Gate

APPROVED = "Approved"
PENDING = "PendingManualApproval"
REJECTED = "Rejected"


@dataclass(frozen=True)
class Check:
    name: str  # "threshold" or "champion"
    metric: str
    value: float | None
    bound: float | None
    ok: bool
    detail: str


@dataclass
class GateDecision:
    passed: bool
    approval_status: str
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "approval_status": self.approval_status,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
            "summary": self.summary(),
        }

    def summary(self) -> str:
        if self.passed:
            return f"gate passed ({len(self.checks)} checks); status {self.approval_status}"
        return "gate failed: " + "; ".join(self.reasons)


def _threshold_checks(gate: Gate, metrics: dict[str, float]) -> list[Check]:
    checks = []
    for metric, threshold in sorted(gate.thresholds.items()):
        value = metrics.get(metric)
        if value is None:
            checks.append(Check("threshold", metric, None, None, False, f"{metric} was not reported by the evaluation"))
            continue
        if threshold.min is not None:
            ok = value >= threshold.min
            checks.append(
                Check("threshold", metric, value, threshold.min, ok, f"{metric} {value:.4f} < min {threshold.min}")
            )
        if threshold.max is not None:
            ok = value <= threshold.max
            checks.append(
                Check("threshold", metric, value, threshold.max, ok, f"{metric} {value:.4f} > max {threshold.max}")
            )
    return checks


def _champion_check(gate: Gate, candidate: dict[str, float], champion: dict[str, float] | None) -> Check | None:
    metric = gate.primary_metric
    if not champion or champion.get(metric) is None:
        return None  # first model of its kind: thresholds alone decide
    cand, champ = candidate.get(metric), float(champion[metric])
    if cand is None:
        return Check("champion", metric, None, champ, False, f"{metric} was not reported for the candidate")
    tol = gate.champion_tolerance
    if metric in LOWER_IS_BETTER:
        bound, ok, rel = champ + tol, cand <= champ + tol, "above"
    else:
        bound, ok, rel = champ - tol, cand >= champ - tol, "below"
    detail = f"{metric} {cand:.4f} is worse than the champion's {champ:.4f} ({rel} it by more than tolerance {tol})"
    return Check("champion", metric, cand, bound, ok, detail)


def decide(
    gate: Gate, approval: Approval, candidate: dict[str, float], champion: dict[str, float] | None
) -> GateDecision:
    checks = _threshold_checks(gate, candidate)
    champion_check = _champion_check(gate, candidate, champion)
    if champion_check is not None:
        checks.append(champion_check)
    passed = all(c.ok for c in checks)
    if passed:
        return GateDecision(True, APPROVED if approval is Approval.AUTO else PENDING, checks)
    return GateDecision(False, REJECTED, checks)
