"""Every moto name the twin extends still exists in the pinned moto (an upgrade that renames one fails here)."""

from __future__ import annotations

import importlib.metadata
import inspect
from pathlib import Path

import pytest

from mlops.twin import moto_ext


@pytest.mark.parametrize("owner, name", moto_ext.PATCHED, ids=lambda x: getattr(x, "__name__", str(x)))
def test_each_patched_name_exists(owner: object, name: str) -> None:
    assert callable(getattr(owner, name, None)), f"moto no longer has {owner}.{name}"


def test_added_actions_are_still_missing_from_moto() -> None:
    # if moto gains one of these, the twin's addition should be reviewed against it
    for owner, name in moto_ext.ADDED:
        assert name not in vars(owner) or inspect.getsourcefile(getattr(owner, name)) == inspect.getsourcefile(
            moto_ext.add_update_endpoint
        )


def test_moto_is_pinned_to_one_minor_version() -> None:
    requirements = Path(__file__).parents[3] / "requirements.txt"
    pins = [line for line in requirements.read_text().splitlines() if line.startswith("moto")]
    assert pins and ("~=5.2." in pins[0] or "==5.2." in pins[0]), pins
    assert importlib.metadata.version("moto").startswith("5.2.")
