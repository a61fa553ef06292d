"""Keeping CloudFormation logical IDs when resources move into a construct.

A named resource (an alarm, a dashboard) whose logical ID changes is created again under
the same name before the old one is deleted, which fails or deletes the new one's name;
a stateful one loses its data. ``keep_logical_ids`` gives the resources under a construct the
IDs they had as the stack's direct children, computed as CDK computes them (``makeUniqueId``
in aws-cdk-lib's ``core/lib/private/uniqueid.ts``; ``tests/infra/test_logical_ids.py`` checks
the two agree).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from constructs import Construct

_HIDDEN_ID = "Default"  # left out of the path entirely
_HIDDEN_FROM_HUMAN_ID = "Resource"  # left out of the readable part only
_HASH_LEN = 8
_MAX_HUMAN_LEN = 240
_MAX_ID_LEN = 255


def _alphanumeric(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)


def make_unique_id(components: Sequence[str]) -> str:
    """The logical ID CDK gives a resource at this path below its stack."""
    path = [c for c in components if c != _HIDDEN_ID]
    if not path:
        raise ValueError("a logical ID needs at least one path component")
    if len(path) == 1 and len(_alphanumeric(path[0])) <= _MAX_ID_LEN:
        return _alphanumeric(path[0])
    digest = hashlib.md5("/".join(path).encode(), usedforsecurity=False).hexdigest()[:_HASH_LEN].upper()
    human: list[str] = []
    for component in path:  # a component that ends the previous one adds nothing readable
        if not human or not human[-1].endswith(component):
            human.append(component)
    readable = "".join(_alphanumeric(c) for c in human if c != _HIDDEN_FROM_HUMAN_ID)
    return readable[:_MAX_HUMAN_LEN] + digest


def keep_logical_ids(construct: Construct, stack_level_ids: Mapping[str, str]) -> None:
    """Each CloudFormation element under ``construct``'s child ``c`` (a key of ``stack_level_ids``)
    gets the logical ID it would have if ``c`` were the stack's child ``stack_level_ids[c]``.

    Call it once the children are complete (rule targets add permissions below their rule).
    Children not named in the mapping keep the IDs CDK gives them under the construct.
    """
    depth = len(construct.node.scopes)
    for node in construct.node.find_all():
        if not isinstance(node, cdk.CfnElement):
            continue
        path = [scope.node.id for scope in node.node.scopes[depth:]]
        if path[0] in stack_level_ids:
            node.override_logical_id(make_unique_id([stack_level_ids[path[0]], *path[1:]]))
