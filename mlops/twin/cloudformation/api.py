"""CloudFormation's read API for the stacks the twin runs: what `cdk deploy` would have created.

DescribeStacks (outputs, tags, status), ListStacks and ListStackResources answer from the
synthesized templates, resolved to the twin's physical names, so tools that find an app's
resources through its stacks (the ``mlops`` CLI, scripts, the AWS CLI) work on the twin as
they do in AWS. Stacks are deployed once, when the twin starts: CREATE_COMPLETE.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlops.twin.api import ApiError, Call
from mlops.twin.assembly import Assembly

OPERATIONS = {"DescribeStacks", "ListStacks", "ListStackResources", "DescribeStackResources"}


class CloudFormationApi:
    service = "cloudformation"

    def __init__(self, assembly: Assembly, started: datetime | None = None) -> None:
        self.assembly = assembly
        self.started = started or datetime.now(UTC)

    def operations(self) -> set[str]:
        return OPERATIONS

    def handle(self, call: Call) -> dict[str, Any]:
        params = call.params
        if call.operation == "DescribeStacks":
            names = [self._stack(params["StackName"]).name] if params.get("StackName") else self._names()
            return {"Stacks": [self._describe(name) for name in names]}
        if call.operation == "ListStacks":
            wanted = set(params.get("StackStatusFilter") or [])
            summaries = [self._summary(name) for name in self._names()]
            return {"StackSummaries": [s for s in summaries if not wanted or s["StackStatus"] in wanted]}
        if call.operation == "ListStackResources":
            stack = self._stack(params["StackName"])
            summaries = [self._resource(stack.name, r, summary=True) for r in self._resources(stack)]
            return {"StackResourceSummaries": summaries}
        if call.operation == "DescribeStackResources":
            stack = self._stack(params.get("StackName", ""))
            found = [
                self._resource(stack.name, r, summary=False)
                for r in self._resources(stack)
                if not params.get("LogicalResourceId") or r.logical_id == params["LogicalResourceId"]
            ]
            return {"StackResources": found}
        raise ApiError("InvalidAction", call.operation)

    # -- shapes --------------------------------------------------------------------------
    def _names(self) -> list[str]:
        return list(self.assembly.stacks)

    def _stack(self, name_or_id: str) -> Any:
        for stack in self.assembly.stacks.values():
            if name_or_id in (stack.name, self._stack_id(stack.name)):
                return stack
        raise ApiError("ValidationError", f"Stack with id {name_or_id} does not exist")

    def _stack_id(self, name: str) -> str:
        asm = self.assembly
        return f"arn:aws:cloudformation:{asm.region}:{asm.account}:stack/{name}/twin-{name.lower()}"

    def _describe(self, name: str) -> dict[str, Any]:
        stack = self.assembly.stacks[name]
        outputs = []
        for key, out in stack.template.get("Outputs", {}).items():
            entry = {"OutputKey": key, "OutputValue": str(self.assembly.resolve(out["Value"], name))}
            if out.get("Description"):
                entry["Description"] = out["Description"]
            if out.get("Export", {}).get("Name"):
                entry["ExportName"] = str(self.assembly.resolve(out["Export"]["Name"], name))
            outputs.append(entry)
        return {
            "StackName": name,
            "StackId": self._stack_id(name),
            "Description": stack.template.get("Description", ""),
            "CreationTime": self.started,
            "StackStatus": "CREATE_COMPLETE",
            "Outputs": outputs,
            "Tags": [{"Key": k, "Value": str(v)} for k, v in self._tags(stack).items()],
        }

    def _summary(self, name: str) -> dict[str, Any]:
        stack = self.assembly.stacks[name]
        return {
            "StackId": self._stack_id(name),
            "StackName": name,
            "TemplateDescription": stack.template.get("Description", ""),
            "CreationTime": self.started,
            "StackStatus": "CREATE_COMPLETE",
        }

    @staticmethod
    def _tags(stack: Any) -> dict[str, str]:
        return dict(stack.tags)

    def _resources(self, stack: Any) -> list[Any]:
        return [r for r in stack.resources.values() if self.assembly.included(r)]

    def _resource(self, stack: str, res: Any, *, summary: bool) -> dict[str, Any]:
        entry = {
            "LogicalResourceId": res.logical_id,
            "PhysicalResourceId": res.physical_id,
            "ResourceType": res.type,
            "ResourceStatus": "CREATE_COMPLETE",
        }
        if summary:
            entry["LastUpdatedTimestamp"] = self.started
        else:
            entry.update(StackName=stack, StackId=self._stack_id(stack), Timestamp=self.started)
        return entry
