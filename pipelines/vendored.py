"""Puts the source dir's ``vendor/`` on ``sys.path``: what the code needs that the image lacks.

``vendor/`` is built at synth time (``stacks/sagemaker_code.py``: ``pipelines/requirements.txt``
installed as wheels for the image's Python and platform), so no job or model server installs anything
when it starts. Each entry point imports this module before anything else of its own. Appended after
the image's own packages; in a checkout (no ``vendor/`` beside this file) it does nothing.
"""

from __future__ import annotations

import site
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"

if VENDOR.is_dir():
    site.addsitedir(str(VENDOR))
