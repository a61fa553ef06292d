"""Payload templates (Parameters, ResultSelector, ItemSelector): keys ending in ``.$`` take
a path or an intrinsic function; everything else is copied, recursing into objects/arrays."""

from __future__ import annotations

import json
from typing import Any

from mlops.twin.stepfunctions.asl import intrinsics, paths
from mlops.twin.stepfunctions.asl.errors import PARAMETER_PATH_FAILURE, StatesError


def render(template: Any, data: Any, context: Any, *, error: str = PARAMETER_PATH_FAILURE) -> Any:
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = expression(value, data, context, field=key, error=error)
            else:
                out[key] = render(value, data, context, error=error)
        return out
    if isinstance(template, list):
        return [render(item, data, context, error=error) for item in template]
    return template


def expression(value: Any, data: Any, context: Any, *, field: str, error: str = PARAMETER_PATH_FAILURE) -> Any:
    """The value of a ``.$`` field: an intrinsic function call or a path."""
    if not isinstance(value, str):
        raise StatesError(error, f"The value for the field {field!r} must be a path or an intrinsic function")
    if intrinsics.is_intrinsic(value):
        return intrinsics.evaluate(value, data, context)
    try:
        return paths.get(data, value, context)
    except (paths.PathNotFound, paths.PathSyntaxError) as exc:
        source = "context object" if value.startswith("$$") else "input"
        shown = json.dumps(context if value.startswith("$$") else data, default=str)[:500]
        raise StatesError(
            error,
            f"The JSONPath {value!r} specified for the field {field!r} could not be found in the {source} {shown!r}",
        ) from exc


def expression_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string path or intrinsic function"
    if intrinsics.is_intrinsic(value):
        try:
            intrinsics.parse(value)
        except intrinsics.IntrinsicSyntaxError as exc:
            return str(exc)
        return None
    return paths.validate(value)
