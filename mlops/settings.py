"""Where the running code finds its model configs.

In Lambda the core layer ships them as ``/opt/python/mlops_configs`` beside the
``mlops`` package; in a checkout they are the repository's ``configs/``.
``MLOPS_CONFIG_DIR`` overrides both.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from mlops.config import ConfigError, ModelConfig, load_config
from mlops.env_names import MLOPS_CONFIG_DIR

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    if os.environ.get(MLOPS_CONFIG_DIR):
        return Path(os.environ[MLOPS_CONFIG_DIR])
    bundled = _PACKAGE_DIR.parent / "mlops_configs"
    return bundled if bundled.is_dir() else _PACKAGE_DIR.parent / "configs"


@cache
def model_config(name: str) -> ModelConfig:
    """The config of one model, by name; KeyError if there is none."""
    directory = config_dir()
    for suffix in (".yaml", ".yml", ".json"):
        path = directory / f"{name}{suffix}"
        if path.is_file():
            return load_config(path)
    if not name or "/" in name or name.startswith("."):
        raise KeyError(f"invalid model name {name!r}")
    known = sorted(p.stem for p in directory.glob("*.y*ml"))
    raise KeyError(f"unknown model {name!r}; configured models: {', '.join(known) or 'none'}")


__all__ = ["ConfigError", "config_dir", "model_config"]
