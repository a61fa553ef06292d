"""docs/ holds the config reference generated from the schema; it must be in sync with mlops/config.py."""

from __future__ import annotations

from mlops import config_reference as ref
from mlops.config import ModelConfig

from ..conftest import ROOT


def test_generated_reference_is_up_to_date() -> None:
    message = "docs/ is out of date with mlops/config.py: run `python -m mlops.config_reference`"
    assert ref.REFERENCE.read_text(encoding="utf-8") == ref.reference(), message
    assert ref.SCHEMA.read_text(encoding="utf-8") == ref.schema_text(), message


def test_every_field_is_listed_with_a_description() -> None:
    text = ref.reference()
    defs = ref.schema()["$defs"]
    shown = {name for _, name, _ in ref.SECTIONS if name}
    nested = {n for n, d in defs.items() if "properties" in d}
    assert nested == shown, f"sections missing from the reference: {sorted(nested - shown)}"
    for _, name, path in ref.SECTIONS:
        model = ref.schema() if name is None else defs[name]
        for field, prop in model["properties"].items():
            assert f"| `{path}{field}` |" in text, f"{path}{field}"
            assert prop.get("description"), f"{path}{field} has no description in mlops/config.py"
    assert set(ModelConfig.model_fields) <= set(ref.schema()["properties"])


def test_reference_lists_types_problem_types_algorithms_and_metrics() -> None:
    text = ref.reference()
    for word in ("`int`", "`float`", "`bool`", "`string`", "`binary_classification`", "`regression`"):
        assert word in text
    for word in ("`gradient_boosting`", "`ridge`", "`roc_auc`", "`rmse`", "`log_loss`", "unsupported format"):
        assert word in text


def test_readme_links_the_reference() -> None:
    assert "docs/config-reference.md" in (ROOT / "README.md").read_text(encoding="utf-8")
