"""Every state machine of the app is one CreateStateMachine accepts (checked as the twin checks it)."""

from __future__ import annotations

from pathlib import Path

from mlops.twin.assembly import Assembly
from mlops.twin.stepfunctions.service import StepFunctions

from .conftest import Synthesized


def test_each_definition_passes_create_state_machine(synthesized: Synthesized, tmp_path: Path) -> None:
    assembly = Assembly(synthesized.outdir)
    sfn = StepFunctions(tmp_path, lambda *args: None)
    machines = assembly.resources("AWS::StepFunctions::StateMachine")
    assert len(machines) == 4
    for res in machines:
        machine, _unsupported = sfn.create_from_assembly(assembly, res)  # raises StateMachineRejected
        assert machine.role_arn.startswith("arn:aws:iam::")
