"""Policy evaluation for calls within one account, as AWS evaluates them.

Built on moto's evaluator (``moto.iam.access_control.IAMPolicyStatement``), extended by
subclassing where moto is incomplete for what the app's policies say:

- ``Condition`` blocks are evaluated (:mod:`.conditions`); moto checks only
  ``StringEquals`` and answers *Deny* for an *Allow* whose condition fails, where IAM
  answers "this statement does not apply";
- ``NotResource`` and the ``?`` wildcard; actions match case-insensitively, resources
  case-sensitively, and regex characters in ARNs are literal;
- ``Principal`` / ``NotPrincipal`` of resource policies (``AWS`` ARNs and account ids,
  ``Service``, ``*``).

The decision (IAM User Guide, "Policy evaluation logic", same-account requests): an
explicit Deny in any applicable policy wins; otherwise an Allow in an identity-based
policy or in the resource-based policy allows. KMS is the exception: the key policy is
the authority, and identity policies count only where the key policy delegates to the
account (a statement whose principal is the account root).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from mlops.twin.iam import conditions

Document = Mapping[str, Any]  # a policy document: {"Version": ..., "Statement": [...]}


@dataclass(frozen=True)
class Caller:
    """Who makes a request: a role session of the app, or a service principal."""

    arn: str  # role ARN (arn:aws:iam::<acct>:role/<name>) or a service principal (events.amazonaws.com)
    account: str
    session: str = "twin"

    @property
    def is_service(self) -> bool:
        return not self.arn.startswith("arn:")

    @property
    def session_arn(self) -> str:
        """The ARN AWS names in errors: ``arn:aws:sts::<acct>:assumed-role/<role>/<session>``."""
        if self.is_service:
            return self.arn
        name = self.arn.rsplit("/", 1)[-1]
        return f"arn:aws:sts::{self.account}:assumed-role/{name}/{self.session}"


@dataclass(frozen=True)
class Request:
    """One IAM action on one resource, with its request context (condition keys)."""

    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    context: Mapping[str, Any] = field(default_factory=dict)


class Effect(Enum):
    ALLOW = "allow"
    DENY = "deny"  # explicit
    NONE = "none"  # no statement applies: implicitly denied


class Statement(IAMPolicyStatement):
    """One statement of a policy, with the parts of the grammar moto leaves out."""

    def __init__(self, statement: Mapping[str, Any]) -> None:
        super().__init__(dict(statement))

    def applies(self, request: Request, caller: Caller | None = None) -> bool:
        """Action, resource, principal (for resource policies) and condition all match."""
        s = self._statement
        if "NotAction" in s:
            if self._check_element_matches("NotAction", request.action):
                return False
        elif not self._check_element_matches("Action", request.action):
            return False
        if "NotResource" in s:
            if self._check_element_matches("NotResource", request.resource):
                return False
        elif "Resource" in s and not self._check_element_matches("Resource", request.resource):
            return False
        if caller is not None and not self._principal_matches(caller):
            return False
        return conditions.evaluate(s.get("Condition") or {}, request.context)

    @property
    def effect(self) -> Effect:
        return Effect.ALLOW if self._statement.get("Effect") == "Allow" else Effect.DENY

    # -- moto's hooks, overridden ---------------------------------------------------------
    def is_action_permitted(  # moto's entry point, with IAM's semantics
        self,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> PermissionResult:
        request = Request(action, resource, incoming_condition_values or {})
        if not self.applies(request):
            return PermissionResult.NEUTRAL
        return PermissionResult.PERMITTED if self.effect is Effect.ALLOW else PermissionResult.DENIED

    def _check_element_matches(self, statement_element: Any, value: str) -> bool:
        patterns = self._statement[statement_element]
        ignore_case = statement_element in ("Action", "NotAction")
        return any(
            conditions.glob_match(p, value, ignore_case=ignore_case)
            for p in (patterns if isinstance(patterns, list) else [patterns])
        )

    # -- principals of resource policies -------------------------------------------------
    def _principal_matches(self, caller: Caller) -> bool:
        s = self._statement
        if "NotPrincipal" in s:
            return not _principal_in(s["NotPrincipal"], caller)
        if "Principal" not in s:
            return True  # an identity policy's statement
        return _principal_in(s["Principal"], caller)

    def names_account(self, account: str) -> bool:
        """The statement's principal is the account itself (``arn:aws:iam::<acct>:root`` or the id)."""
        principal = self._statement.get("Principal")
        values = _principal_values(principal, "AWS")
        return any(v in (account, f"arn:aws:iam::{account}:root") for v in values)


def _principal_values(principal: Any, kind: str) -> list[str]:
    if principal == "*":
        return ["*"]
    if not isinstance(principal, Mapping):
        return []
    value = principal.get(kind, [])
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _principal_in(principal: Any, caller: Caller) -> bool:
    if principal == "*" or _principal_values(principal, "AWS") == ["*"]:
        return True
    if caller.is_service:
        return caller.arn in _principal_values(principal, "Service")
    role_name = caller.arn.rsplit("/", 1)[-1]
    for value in _principal_values(principal, "AWS"):
        if value in (caller.arn, caller.session_arn):
            return True
        if value.endswith(f":assumed-role/{role_name}/*"):
            return True
    return False


def statements(document: Document) -> list[Statement]:
    raw = document.get("Statement", [])
    return [Statement(s) for s in (raw if isinstance(raw, list) else [raw])]


def _effect(documents: Sequence[Document], request: Request, caller: Caller | None) -> Effect:
    effect = Effect.NONE
    for document in documents:
        for statement in statements(document):
            if statement.applies(request, caller):
                if statement.effect is Effect.DENY:
                    return Effect.DENY
                effect = Effect.ALLOW
    return effect


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # how AWS words it: "no identity-based policy allows the s3:GetObject action"


def decide(
    caller: Caller,
    request: Request,
    identity: Sequence[Document],
    resource_policy: Document | None = None,
    *,
    key_policy: bool = False,
) -> Decision:
    """Allow or deny one request (same account). ``key_policy``: ``resource_policy`` is a KMS key policy."""
    action = request.action
    identity_effect = Effect.NONE if caller.is_service else _effect(identity, request, None)
    if identity_effect is Effect.DENY:
        return Decision(False, "with an explicit deny in an identity-based policy")
    resource_effect = Effect.NONE
    delegates = False
    if resource_policy is not None:
        resource_effect = _effect([resource_policy], request, caller)
        if resource_effect is Effect.DENY:
            return Decision(False, "with an explicit deny in a resource-based policy")
        # a statement granting the account hands the decision to the account's IAM policies
        delegates = any(
            s.effect is Effect.ALLOW
            and s.names_account(caller.account)
            and s.applies(Request(request.action, request.resource, request.context))
            for s in statements(resource_policy)
        )
    if resource_effect is Effect.ALLOW:  # the caller itself (or everyone) is named
        return Decision(True, "allowed by a resource-based policy")
    if key_policy:
        if delegates and identity_effect is Effect.ALLOW:
            return Decision(True, "allowed by an identity-based policy (the key policy delegates to IAM)")
        if not delegates:
            return Decision(False, f"no resource-based policy allows the {action} action")
        return Decision(False, f"no identity-based policy allows the {action} action")
    if identity_effect is Effect.ALLOW:
        return Decision(True, "allowed by an identity-based policy")
    return Decision(False, f"no identity-based policy allows the {action} action")
