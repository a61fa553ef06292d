"""Error names and exceptions of the ASL engine (Amazon States Language, appendix A)."""

from __future__ import annotations

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
RUNTIME = "States.Runtime"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"

HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"

# Per the AWS error-handling docs: States.ALL matches neither of these; States.Runtime is
# never retried or caught (it always fails the execution); States.DataLimitExceeded can only
# be handled by naming it explicitly.
NOT_MATCHED_BY_ALL = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})
TERMINAL = frozenset({RUNTIME})
# "States.TaskFailed acts as a wildcard that matches any known error name except for
# States.Timeout" (AWS error-handling docs). A heartbeat timeout is a States.Timeout too (the
# docs define States.Timeout as either), so it stays out; and TaskFailed is never wider than
# States.ALL, so the errors ALL cannot match stay out as well.
NOT_MATCHED_BY_TASK_FAILED = NOT_MATCHED_BY_ALL | {TIMEOUT, HEARTBEAT_TIMEOUT}


class StatesError(Exception):
    """An ASL error: ``error`` is the name Retry/Catch match on, ``cause`` the detail."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class TaskFailed(StatesError):
    """Raised by a task dispatcher; ``error``/``cause`` are what the Task state reports."""


class ExecutionAlreadyExists(Exception):
    """StartExecution with a name already used on the same state machine."""


class ExecutionDoesNotExist(KeyError):
    """No execution with that ARN."""


def error_matches(names: list[str], error: str) -> bool:
    """True when a Retrier/Catcher ``ErrorEquals`` list handles ``error``."""
    if error in TERMINAL:
        return False
    if error in names:
        return True
    if TASK_FAILED in names and error not in NOT_MATCHED_BY_TASK_FAILED:
        return True
    return ALL in names and error not in NOT_MATCHED_BY_ALL
