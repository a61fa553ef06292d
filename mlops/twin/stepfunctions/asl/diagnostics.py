"""What CreateStateMachine answers for a definition it refuses.

AWS answers ``InvalidDefinition`` with one message listing every problem as
``<CODE>: <message> at <location>`` (``/States/<state>/<field>``, or ``null`` when the
problem has no place), joined by ``", "`` inside ``Invalid State Machine Definition: '...'``.
Codes are those of ValidateStateMachineDefinitionDiagnostic (SCHEMA_VALIDATION_FAILED,
MISSING_TRANSITION_TARGET, MISSING_END_STATE, DUPLICATE_STATE_NAME, INVALID_STATE_NAME,
INVALID_RESOURCE). Messages follow the wording AWS is known to use ("These fields are
required: [Choices]", "Field 'TimeoutSeconds' is not supported", "The value for the field
'JobName.$' must be a valid JSONPath", "Missing 'Next' target: X", "State \"X\" is not
reachable.", "Workflow has no terminal state"); AWS documents that the wording may change,
so callers (and tests) should rely on the code and the location.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "SCHEMA_VALIDATION_FAILED"
MISSING_TRANSITION_TARGET = "MISSING_TRANSITION_TARGET"
MISSING_END_STATE = "MISSING_END_STATE"
DUPLICATE_STATE_NAME = "DUPLICATE_STATE_NAME"
INVALID_STATE_NAME = "INVALID_STATE_NAME"
INVALID_RESOURCE = "INVALID_RESOURCE"


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    location: str | None = None  # /States/X/Field; None where AWS reports no location

    def __str__(self) -> str:
        return f"{self.code}: {self.message} at {self.location or 'null'}"


class InvalidDefinition(ValueError):
    """CreateStateMachine's ``InvalidDefinition`` error, with every diagnostic."""

    code = "InvalidDefinition"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        self.message = "Invalid State Machine Definition: '" + ", ".join(map(str, diagnostics)) + "'"
        super().__init__(self.message)


def schema(message: str, location: str | None) -> Diagnostic:
    return Diagnostic(SCHEMA, message, location or None)


def required(fields: list[str], location: str | None) -> Diagnostic:
    return schema(f"These fields are required: [{', '.join(fields)}]", location)


def not_supported(field: str, location: str | None) -> Diagnostic:
    return schema(f"Field '{field}' is not supported", location)


def invalid_value(field: str, expected: str, location: str | None) -> Diagnostic:
    return schema(f"The value for the field '{field}' must be {expected}", location)


def invalid_path(field: str, location: str | None) -> Diagnostic:
    return invalid_value(field, "a valid JSONPath", location)


def jsonata_only(field: str, location: str | None) -> Diagnostic:
    message = f"The QueryLanguage is set to 'JSONPath', but field '{field}' is only supported for the 'JSONata' "
    return schema(message + "QueryLanguage", location)
