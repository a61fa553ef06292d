"""The model config reference, generated from the schema (``mlops.config``).

    python -m mlops.config_reference          # writes docs/config-reference.md and docs/model-config.schema.json

Every field of every section with its type, default, allowed values and description
comes from pydantic's JSON Schema of ``ModelConfig``; the lists of column types,
problem types, algorithms and metric names come from the code that uses them.
``tests/unit/test_config_reference.py`` fails when the files are out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mlops.config import CLASSIFIERS, LOWER_IS_BETTER, REGRESSORS, ModelConfig, ProblemType
from mlops.core.formats import ACCEPTED
from mlops.core.metrics import METRIC_DESCRIPTIONS, metric_names
from mlops.core.types import DEFAULT_NA_VALUES, FALSE_WORDS, TRUE_WORDS, ColumnType, describe

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE, SCHEMA = DOCS / "config-reference.md", DOCS / "model-config.schema.json"
# sections in reading order: (title, $defs name or None for the top level, path shown)
SECTIONS = [
    ("Top level", None, ""),
    ("dataset", "DatasetContract", "dataset."),
    ("dataset.columns[]", "Column", "dataset.columns[i]."),
    ("training", "Training", "training."),
    ("training.split", "Split", "training.split."),
    ("gate", "Gate", "gate."),
    ("gate.thresholds.<metric>", "Threshold", "gate.thresholds.<metric>."),
    ("endpoint", "Endpoint", "endpoint."),
    ("endpoint.serverless", "Serverless", "endpoint.serverless."),
    ("endpoint.autoscaling", "Autoscaling", "endpoint.autoscaling."),
    ("endpoint.canary", "Canary", "endpoint.canary."),
    ("monitoring", "Monitoring", "monitoring."),
    ("monitoring.alarms", "Alarms", "monitoring.alarms."),
]
_PROBLEM_TEXT = {
    ProblemType.BINARY: "two classes; the target is int, string or bool (an int target with `allowed` lists both)",
    ProblemType.MULTICLASS: "three or more classes; the target is int, string or bool",
    ProblemType.REGRESSION: "a number; the target is int or float",
}


def schema() -> dict[str, Any]:
    return ModelConfig.model_json_schema()


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        target = defs[name]
        return " \\| ".join(f"`{v}`" for v in target["enum"]) if "enum" in target else f"object ({name})"
    if "anyOf" in prop:
        return " or ".join(_type(p, defs) for p in prop["anyOf"])
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return f"mapping of name to {_type(extra, defs)}" if isinstance(extra, dict) else "mapping"
    return {"integer": "int", "number": "float", "boolean": "bool", "string": "string", "null": "null"}.get(kind, kind)


def _limits(prop: dict[str, Any]) -> str:
    parts = []
    for p in [prop, *prop.get("anyOf", [])]:
        for key, text in (("minimum", ">= {}"), ("exclusiveMinimum", "> {}"), ("maximum", "<= {}"),
                          ("exclusiveMaximum", "< {}"), ("minLength", "at least {} characters"),
                          ("maxLength", "at most {} characters"), ("minItems", "at least {} items"),
                          ("pattern", "matches `{}`")):  # fmt: skip
            if key in p:
                parts.append(text.format(p[key]))
    return ", ".join(dict.fromkeys(parts))


def _default(name: str, prop: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "**required**"
    if "default" in prop:
        value = prop["default"]
        return f"`{json.dumps(value)}`" if not isinstance(value, dict) else "(section defaults)"
    return "(section defaults)"


def _table(model: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    lines = ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]
    required = set(model.get("required", []))
    for name, prop in model["properties"].items():
        description = " ".join(prop.get("description", "").split()).replace("|", "\\|")
        lines.append(
            f"| `{path}{name}` | {_type(prop, defs)} | {_default(name, prop, required)} | {_limits(prop) or '-'} "
            f"| {description} |"
        )
    return lines


def _types_section() -> list[str]:
    na = ", ".join(f"`{json.dumps(v)}`" for v in DEFAULT_NA_VALUES)
    lines = [
        "## Column types",
        "",
        "One definition (`mlops/core/types.py`) for validation, training and serving alike.",
        f"A value is *missing* when it is empty or equals one of `dataset.na_values` (default: {na}; "
        'matched exactly, so an R export declares `na_values: ["", "NA"]`). In int, float and bool '
        "columns surrounding spaces are ignored, a blank cell is missing too, and so is `NaN`/`nan` in int "
        "and float columns. A missing value is allowed only in a `nullable` column.",
        "",
        "| type | accepts | refuses |",
        "|---|---|---|",
        f"| `int` | {describe(ColumnType.INT)}: `181`, `+7`, and numbers with an integral value below 2**53 "
        "(`181.0`, `1e3`: how pandas writes an int column that had missing values) | `181.5`, `inf`, booleans |",
        f"| `float` | {describe(ColumnType.FLOAT)}: `1.5`, `-2e-3`, `7` | `inf`, `-inf`, `1,5` |",
        f"| `bool` | {', '.join(TRUE_WORDS)} / {', '.join(FALSE_WORDS)} in any case, and the numbers 1 and 0 "
        "(`1.0` too) | any other text or number |",
        "| `string` | any text, kept verbatim (spaces included); numbers and booleans of typed sources "
        "(Parquet, JSON) become their text | nested JSON values |",
        "",
        "`missing_target: drop` leaves rows whose target is missing out of the validated data and the profile "
        "and reports how many (`rows_dropped.missing_target`); rows whose target is present but not of its "
        "type are still type errors.",
    ]
    return lines


def _formats_section() -> list[str]:
    return [
        "## Dataset formats",
        "",
        f"Detected by content, never by file name: {ACCEPTED}. Anything else is quarantined with "
        '"unsupported format: detected <what it is>; accepted: ...". A dataset is one object under '
        "`incoming/<model>/`, or the part files of a folder `incoming/<model>/<dataset>/` committed by a "
        "`_SUCCESS` marker (every part under the folder; names starting with `_` or `.` are not parts) or a "
        '`_manifest.json` (`{"files": ["part-0.parquet", ...]}`, or Redshift\'s `{"entries": [{"url": '
        '"s3://..."}]}`). Parts without a marker are reported after `dataset.commit_timeout_minutes`. '
        "The validated copy is canonical CSV (UTF-8, comma, header, empty = missing) whatever the upload was.",
    ]


def _problems_section() -> list[str]:
    lines = ["## Problem types, algorithms and metrics", "", "| problem_type | predicts | algorithms | metrics |"]
    lines.append("|---|---|---|---|")
    for problem in ProblemType:
        algorithms = REGRESSORS if problem is ProblemType.REGRESSION else CLASSIFIERS
        shown = ", ".join(f"`{a.value}`" for a in sorted(algorithms, key=lambda a: a.value))
        metrics = ", ".join(f"`{m}`" for m in sorted(metric_names(problem)))
        lines.append(f"| `{problem.value}` | {_PROBLEM_TEXT[problem]} | {shown} | {metrics} |")
    lines += ["", "Metric names are what `gate.primary_metric` and `gate.thresholds` use:", ""]
    lines += ["| metric | better | meaning |", "|---|---|---|"]
    for name, text in METRIC_DESCRIPTIONS.items():
        lines.append(f"| `{name}` | {'lower' if name in LOWER_IS_BETTER else 'higher'} | {text} |")
    return lines


def reference() -> str:
    full = schema()
    defs = full.get("$defs", {})
    lines = [
        "# Model config reference",
        "",
        "<!-- generated by `python -m mlops.config_reference` from mlops/config.py; do not edit by hand -->",
        "",
        "One YAML file per model in `configs/` (file name = model name); "
        "the JSON Schema is [`model-config.schema.json`](model-config.schema.json). An invalid config is "
        "refused with one line per problem naming the file and the field, e.g. "
        "`configs/m.yaml: dataset.columns[12].nullable: the target 'diagnosis' must not be nullable; ...`.",
        "",
    ]
    for title, name, path in SECTIONS:
        model = full if name is None else defs[name]
        lines += [f"## `{title}`" if name else f"## {title}", "", model.get("description", "").strip(), ""]
        lines += _table(model, defs, path)
        lines.append("")
    lines += [*_types_section(), "", *_formats_section(), "", *_problems_section()]
    return "\n".join(lines).rstrip() + "\n"


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    DOCS.mkdir(exist_ok=True)
    REFERENCE.write_text(reference(), encoding="utf-8")
    SCHEMA.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {REFERENCE} and {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
