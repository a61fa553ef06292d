"""The twin's IAM: every call a role of the app makes is authorized against its policies.

:class:`IamAuthorizer` is what the gateway calls for every request and what the twin
calls for the requests services make on a role's behalf (a state machine's integration,
a job reading its inputs, a rule starting an execution). For a call it takes the
requests from :mod:`.actions` (the one table), the caller's identity policies and the
resource policy AWS consults for the resource (bucket policy, key policy, topic policy,
function permissions) from :mod:`.policies`, and decides with :mod:`.evaluation`.
A denial raises :class:`~mlops.twin.api.ApiError` shaped as the service answers it:

    User: arn:aws:sts::<acct>:assumed-role/<role>/<session> is not authorized to perform:
    <action> on resource: <arn> because no identity-based policy allows the <action> action

The operator (any key the twin did not issue) is the account's administrator and is not
checked. ``aws:SecureTransport`` is ``true``: the twin stands in for AWS's HTTPS endpoints
(every SDK uses TLS against AWS), so the SSL-only bucket policies deny nothing on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.twin.api import ApiError
from mlops.twin.iam import actions
from mlops.twin.iam.evaluation import Caller, Decision, Document, Request, decide
from mlops.twin.iam.lookups import AssemblyLookups
from mlops.twin.iam.policies import PolicyStore

log = logging.getLogger("mlops.twin.iam")

# How each service names and sends an access denial (code, HTTP status).
DENIALS: dict[str, tuple[str, int]] = {
    "s3": ("AccessDenied", 403),
    "sagemaker": ("AccessDeniedException", 400),
    "sagemaker-runtime": ("AccessDeniedException", 403),
    "stepfunctions": ("AccessDeniedException", 400),
    "lambda": ("AccessDeniedException", 403),
    "events": ("AccessDeniedException", 400),
    "cloudwatch": ("AccessDenied", 403),
    "logs": ("AccessDeniedException", 400),
    "sns": ("AuthorizationError", 403),
    "kms": ("AccessDeniedException", 400),
    "application-autoscaling": ("AccessDeniedException", 400),
    "sts": ("AccessDenied", 403),
    "iam": ("AccessDenied", 403),
}


class AccessDenied(ApiError):
    """A request the caller's policies do not allow; ``request`` names the action and resource."""

    def __init__(self, code: str, message: str, status: int, request: Request, caller: Caller) -> None:
        super().__init__(code, message, status)
        self.request = request
        self.caller = caller


@dataclass(frozen=True)
class Denial:
    """One denied request, as recorded (the twin keeps the list: ``mlops`` shows it)."""

    principal: str
    service: str
    operation: str
    action: str
    resource: str
    reason: str


@dataclass
class IamAuthorizer:
    policies: PolicyStore
    operator: str  # the administrator's principal: not checked
    lookups: actions.Lookups | None = None
    denials: list[Denial] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def account(self) -> str:
        return self.policies.account

    # -- the Authorizer protocol (the gateway's hook) ---------------------------------------
    def authorize(self, principal: str, service: str, operation: str, params: Mapping[str, Any]) -> None:
        if principal == self.operator:
            return
        self.authorize_as(principal, service, operation, params)

    def authorize_as(
        self,
        principal: str,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Authorize one call of ``principal`` (a role ARN or a service principal); raise AccessDenied.

        ``context``: condition keys of the call beyond the global ones (``aws:SourceArn`` ...).
        """
        call = actions.Call(
            service,
            operation,
            params,
            self.account,
            self.policies.region,
            self.lookups or AssemblyLookups(self.policies),
        )
        caller = Caller(principal, self.account)
        requests = actions.requests_for(call)
        if requests is None:
            self._deny(
                caller,
                service,
                operation,
                Request(f"{service}:{operation}", "*"),
                "the twin's action table (mlops/twin/iam/actions.py) has no row for this operation",
            )
        for request in requests or []:
            request = Request(
                request.action, request.resource, {**self._global_context(caller), **(context or {}), **request.context}
            )
            decision = self.decide(caller, request)
            if not decision.allowed:
                self._deny(caller, service, operation, request, decision.reason)

    def decide(self, caller: Caller, request: Request) -> Decision:
        identity = [] if caller.is_service else self.policies.identity.get(caller.arn)
        if identity is None:
            return Decision(False, f"the role {caller.arn} is not in the assembly")
        resource_policy, is_key = self._resource_policy(request)
        return decide(caller, request, identity, resource_policy, key_policy=is_key)

    def _resource_policy(self, request: Request) -> tuple[Document | None, bool]:
        service = request.action.split(":", 1)[0]
        arn = request.resource
        if service == "s3" and arn.startswith("arn:aws:s3:::"):
            return self.policies.buckets.get(arn[len("arn:aws:s3:::") :].split("/", 1)[0]), False
        if service == "kms":
            return self.policies.keys.get(arn) or None, arn in self.policies.keys
        if service == "sns":
            return self.policies.topics.get(arn), False
        if service == "lambda" and arn.startswith("arn:aws:lambda:"):
            return self.policies.functions.get(self.policies.function_arn(arn)), False
        return None, False

    def _global_context(self, caller: Caller) -> dict[str, Any]:
        context: dict[str, Any] = {"aws:SecureTransport": "true", "aws:PrincipalAccount": self.account}
        if caller.is_service:
            context["aws:SourceAccount"] = self.account
        else:
            context["aws:PrincipalArn"] = caller.arn
            context["aws:userid"] = f"{caller.arn.rsplit('/', 1)[-1]}:{caller.session}"
        return context

    def _deny(self, caller: Caller, service: str, operation: str, request: Request, reason: str) -> None:
        code, status = DENIALS.get(service, ("AccessDeniedException", 400))
        resource = f'"{request.resource}"' if service == "s3" else request.resource
        joint = " " if reason.startswith("with ") else " because "
        message = (
            f"User: {caller.session_arn} is not authorized to perform: {request.action} on resource: {resource}"
            f"{joint}{reason}"
        )
        if service == "application-autoscaling" and not request.action.startswith("application-autoscaling:"):
            # Application Auto Scaling validates the caller's permissions on the target and on
            # CloudWatch before it acts, and reports a missing one as a ValidationException
            code, status = "ValidationException", 400
            message = f"Permissions validation on the scalable target failed: {message}"
        with self._lock:
            self.denials.append(Denial(caller.arn, service, operation, request.action, request.resource, reason))
        log.warning("access denied: %s:%s by %s: %s", service, operation, caller.arn, message)
        raise AccessDenied(code, message, status, request, caller)
