"""Fixtures of the twin's API tests: the mini app on a twin (see ``mini_app.py``)."""

from tests.unit.twin.mini_app import mini_twin

__all__ = ["mini_twin"]
