"""IAM on the twin: who calls (principals) and whether they may (the authorizer).

Every request the gateway serves, and every call the twin makes on a role's behalf
(a state machine invoking a Lambda, a job reading its inputs, a rule starting an
execution), goes through one :class:`Authorizer`. :class:`IamAuthorizer` enforces the
assembly's policies (the default); :class:`Unenforced` lets everything through and
exists for debugging only (``mlops local up --iam off``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from mlops.twin.iam.authorizer import AccessDenied, IamAuthorizer
from mlops.twin.iam.policies import PolicyStore
from mlops.twin.iam.principals import Credentials, Principals

__all__ = ["AccessDenied", "Authorizer", "Credentials", "IamAuthorizer", "PolicyStore", "Principals", "Unenforced"]

log = logging.getLogger("mlops.twin.iam")


class Authorizer(Protocol):
    def authorize(self, principal: str, service: str, operation: str, params: dict[str, Any]) -> None:
        """Return if the principal may make the call; raise ``ApiError("AccessDenied", ...)`` if not."""
        ...

    def authorize_as(
        self,
        principal: str,
        service: str,
        operation: str,
        params: dict[str, Any],
        context: dict[str, Any] | None = None,
    ) -> None:
        """The same for a call the twin makes on a role's (or a service principal's) behalf."""
        ...


class Unenforced:
    """Lets every call through and logs it at debug level (``--iam off``: debugging only)."""

    def authorize(self, principal: str, service: str, operation: str, params: dict[str, Any]) -> None:
        log.debug("unenforced: %s %s:%s", principal, service, operation)

    def authorize_as(
        self,
        principal: str,
        service: str,
        operation: str,
        params: dict[str, Any],
        context: dict[str, Any] | None = None,
    ) -> None:
        log.debug("unenforced: %s %s:%s", principal, service, operation)
