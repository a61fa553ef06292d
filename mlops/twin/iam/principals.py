"""Who is calling: credentials the twin issues to each role of the app, and back.

In AWS a Lambda function, a state machine or a SageMaker job calls other services with
temporary credentials of its role. The twin does the same: every role of the
assembly gets its own access key (deterministic, so a restarted twin recognises keys
handed out before), which the twin puts into the function's environment or uses for
the calls it makes on a role's behalf. A request signed with any other key comes from
the **operator** (you, the CLI, the tests): an administrator of the account, as the
credentials you would run ``cdk deploy`` with. Signatures are not verified on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass

SECRET = "twin-secret-access-key"  # not checked: signatures are not verified on loopback


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


def _access_key(role_arn: str) -> str:
    digest = base64.b32encode(hashlib.sha256(role_arn.encode()).digest()).decode()
    return "ASIA" + digest[:16]  # the shape of an STS session key: 20 upper-case characters


class Principals:
    def __init__(self, account: str) -> None:
        self.account = account
        self.operator = f"arn:aws:iam::{account}:root"
        self._roles: dict[str, str] = {}  # access key id -> role ARN
        self._lock = threading.Lock()

    def credentials(self, role_arn: str) -> Credentials:
        """The credentials a role's session uses on the twin."""
        key = _access_key(role_arn)
        with self._lock:
            self._roles[key] = role_arn
        return Credentials(key, SECRET, f"twin-session-{key}")

    def principal(self, access_key_id: str) -> str:
        """The role ARN behind a key the twin issued; the operator for any other key."""
        return self._roles.get(access_key_id, self.operator)

    def is_operator(self, principal: str) -> bool:
        return principal == self.operator
