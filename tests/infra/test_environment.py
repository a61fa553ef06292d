"""Each Lambda's code reads only the environment variables its stack sets (or Lambda itself sets),
and its stack sets no variable that nothing reads: checked on the synthesized templates, by
running each function's settings reader on a mapping that records every name it looks up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mlops import env_names as E
from mlops.naming import STACKS
from mlops.services.batch import BatchSettings
from mlops.services.deployment import DeploySettings
from mlops.services.monitoring import MonitorSettings
from mlops.services.training import TrainingSettings
from mlops.services.validation import Buckets

from ..conftest import ROOT
from .conftest import Synthesized, resources

# Each function, by its Powertools service: the handler file and the reader it calls on os.environ.
READERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "mlops-validation": ("functions/validate/handler.py", Buckets.from_env),
    "mlops-training": ("functions/training/handler.py", TrainingSettings.from_env),
    "mlops-deploy": ("functions/deploy/handler.py", DeploySettings.from_env),
    "mlops-monitor": ("functions/monitor/handler.py", MonitorSettings.from_env),
    "mlops-batch": ("functions/batch/handler.py", BatchSettings.from_env),
}


class RecordingEnv(dict[str, str]):
    """A dict that remembers which names were looked up, present or not."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(name)
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)


def _functions(synthesized: Synthesized) -> dict[str, dict[str, str]]:
    """Every Lambda function of the app: ``stack/logical id`` -> its environment (tokens as placeholders)."""
    found = {}
    for stack in STACKS.values():
        for lid, fn in resources(synthesized.template_json(stack), "AWS::Lambda::Function").items():
            variables = fn["Properties"].get("Environment", {}).get("Variables", {})
            found[f"{stack}/{lid}"] = {k: v if isinstance(v, str) else "<token>" for k, v in variables.items()}
    return found


def test_every_function_has_a_known_reader(synthesized: Synthesized) -> None:
    functions = _functions(synthesized)
    assert len(functions) >= len(READERS)
    services = {name: env.get(E.POWERTOOLS_SERVICE_NAME) for name, env in functions.items()}
    assert {n: s for n, s in services.items() if s not in READERS} == {}
    assert set(services.values()) == set(READERS)  # no reader left without a function


@pytest.mark.parametrize("service", sorted(READERS))
def test_the_handler_reads_its_settings_through_the_reader(service: str) -> None:
    path, reader = READERS[service]
    assert f"{reader.__qualname__}(" in (ROOT / path).read_text()


def test_functions_read_only_what_their_stack_sets(synthesized: Synthesized) -> None:
    for name, env in _functions(synthesized).items():
        _, reader = READERS[env[E.POWERTOOLS_SERVICE_NAME]]
        recorder = RecordingEnv(env)
        reader(recorder)  # raises when a required variable is missing
        assert recorder.read, name
        unset = recorder.read - set(env) - E.LAMBDA_RUNTIME_VARIABLES
        assert not unset, f"{name} reads {sorted(unset)}, which its stack does not set"
        unread = set(env) - recorder.read - E.POWERTOOLS_VARIABLES
        assert not unread, f"{name}'s stack sets {sorted(unread)}, which its code does not read"


def test_the_recorder_sees_a_missing_variable() -> None:
    """The check above can fail: a reader asked for a variable that is not set says so."""
    recorder = RecordingEnv({E.ARTIFACTS_BUCKET: "a", E.CAPTURE_BUCKET: "c"})
    with pytest.raises(RuntimeError, match=E.INCOMING_BUCKET):
        MonitorSettings.from_env(recorder)
    assert E.INCOMING_BUCKET in recorder.read
