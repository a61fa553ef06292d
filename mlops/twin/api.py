"""The contract between the twin's one front door (the gateway) and each service's API.

The gateway receives every AWS request on the twin's one URL, works out the service
(the SigV4 signing name), the operation (from botocore's service model) and the
principal (from the access key), authorizes the call, parses the parameters with the
service model and hands a :class:`Call` to the service's :class:`ServiceApi`. The
result is a ``dict`` shaped like the operation's output shape (``datetime`` for
timestamps, ``bytes`` for blobs), serialized back by the gateway in the service's
protocol. Errors are raised as :class:`ApiError` and leave as AWS-shaped errors.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Protocol


class ApiError(Exception):
    """An AWS error response: ``code`` as the service model names it (``ResourceNotFoundException``)."""

    def __init__(self, code: str, message: str, status: int = 400, *, sender_fault: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.sender_fault = sender_fault


def not_implemented(service: str, operation: str) -> ApiError:
    """What every operation the twin does not serve answers: never an empty default."""
    return ApiError(
        "NotImplemented",
        f"{service}:{operation} is not implemented by the local twin "
        "(see the README's table of the operations each service serves)",
        501,
    )


@dataclass(frozen=True)
class Call:
    service: str  # botocore's service name: "stepfunctions", "logs", "cloudwatch", ...
    operation: str  # the model's operation name: "ListExecutions"
    params: dict[str, Any]  # parsed with the operation's input shape
    principal: str = ""  # ARN of the caller (a role of the app, or the operator)
    headers: dict[str, str] = field(default_factory=dict)


class ServiceApi(Protocol):
    """One AWS service as the twin serves it."""

    service: str  # botocore's service name

    def operations(self) -> set[str]:
        """The operations served; every other one answers :func:`not_implemented`."""
        ...

    def handle(self, call: Call) -> dict[str, Any]:
        """Run one operation; the output shape as a dict, or raise :class:`ApiError`."""
        ...


def page(items: list[Any], token: str | None, limit: int, *, bad_token: ApiError) -> tuple[list[Any], str | None]:
    """One page of ``items`` from an opaque ``token`` (the offset), and the token of the next page, if any.

    ``bad_token`` is the service's own error for a token it did not issue.
    """
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("twin:"))
        except (ValueError, UnicodeDecodeError):
            raise bad_token from None
        if not 0 <= start <= len(items):
            raise bad_token
    end = start + max(1, limit)
    following = base64.urlsafe_b64encode(f"twin:{end}".encode()).decode() if end < len(items) else None
    return items[start:end], following
