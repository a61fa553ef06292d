"""IAM on the twin: who calls (principals) and whether they may (the authorizer).

Every request the gateway serves, and every call the twin makes on a role's behalf
(a state machine invoking a Lambda, a job reading its inputs, a rule starting an
execution), goes through one :class:`Authorizer`.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from mlops.twin.iam.principals import Credentials, Principals

__all__ = ["Authorizer", "Credentials", "Principals", "Unenforced"]

log = logging.getLogger("mlops.twin.iam")


class Authorizer(Protocol):
    def authorize(self, principal: str, service: str, operation: str, params: dict[str, Any]) -> None:
        """Return if the principal may make the call; raise ``ApiError("AccessDenied", ...)`` if not."""
        ...


class Unenforced:
    """Lets every call through and logs it at debug level (what runs before policies are loaded)."""

    def authorize(self, principal: str, service: str, operation: str, params: dict[str, Any]) -> None:
        log.debug("unenforced: %s %s:%s", principal, service, operation)
