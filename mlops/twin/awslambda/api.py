"""The Lambda API of the twin: the assembly's functions, invoked in their real runtime.

``ListFunctions``, ``GetFunction`` and ``GetFunctionConfiguration`` describe each ``AWS::Lambda::Function`` from its
template properties and its code asset (``CodeSha256``/``CodeSize`` of the deployment
package the twin builds from the asset, deterministically; ``Code.Location`` a presigned
URL of that package in the twin's S3). ``Invoke`` runs the handler: ``RequestResponse``
answers with the result or the function error (``X-Amz-Function-Error``) and, with
``LogType=Tail``, the last 4 KB of the invocation's log; ``Event`` queues it (202) and
retries a failed invocation twice, one and two minutes apart (scaled by the twin's clock),
as Lambda does; ``DryRun`` only checks the request (204).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.twin.api import ApiError, Call, not_implemented, page
from mlops.twin.assembly import Assembly, Resource
from mlops.twin.awslambda.runtime import InvocationResult, LambdaRuntime

log = logging.getLogger("mlops.twin.lambda")

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024  # bytes, request and response
MAX_ASYNC_PAYLOAD = 1024 * 1024
ASYNC_RETRY_DELAYS_S = (60.0, 120.0)  # Lambda's two retries of a failed asynchronous invocation
FUNCTION_REF = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):)?(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_.-]+)(?::(?P<qualifier>[a-zA-Z0-9$_.-]+))?$"
)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same code always gives the same CodeSha256

Invoker = Callable[[str, Any], InvocationResult]


@dataclass(frozen=True)
class Package:
    sha256: str  # base64, as Lambda reports CodeSha256
    size: int
    data: bytes


def build_package(code_dir: Path) -> Package:
    """The deployment package (zip) of a code directory, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in code_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(code_dir).as_posix()
            if "__pycache__" in rel.split("/") or rel.endswith(".pyc"):
                continue
            info = zipfile.ZipInfo(rel, ZIP_TIME)
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return Package(base64.b64encode(hashlib.sha256(data).digest()).decode(), len(data), data)


class LambdaApi:
    service = "lambda"

    def __init__(
        self,
        assembly: Assembly,
        functions: Mapping[str, LambdaRuntime],
        invoke: Invoker,
        *,
        s3: Any,
        time_scale: float = 1.0,
    ) -> None:
        self.assembly = assembly
        self.functions = functions
        self.invoke = invoke
        self.s3 = s3  # a boto3 S3 client on the twin: packages are published there for Code.Location
        self.time_scale = time_scale
        self._resources: dict[str, Resource] = {
            r.physical_id: r for r in assembly.resources("AWS::Lambda::Function") if r.physical_id in functions
        }
        self._packages: dict[str, Package] = {}
        self._lock = threading.Lock()

    def operations(self) -> set[str]:
        return {"ListFunctions", "GetFunction", "GetFunctionConfiguration", "Invoke"}

    def handle(self, call: Call) -> dict[str, Any]:
        if call.operation == "ListFunctions":
            return self._list_functions(call.params)
        if call.operation == "GetFunction":
            return self._get_function(call.params)
        if call.operation == "GetFunctionConfiguration":
            return self._configuration(self._function(call.params["FunctionName"], call.params.get("Qualifier")))
        if call.operation == "Invoke":
            return self._invoke(call.params)
        raise not_implemented(self.service, call.operation)

    # -- lookup -----------------------------------------------------------------------------
    def _function(self, ref: str, qualifier: str | None) -> str:
        found = FUNCTION_REF.match(ref)
        region, account = self.assembly.region, self.assembly.account
        if found is None:
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{ref}' at 'functionName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern",
            )
        name = found["name"]
        qualifier = qualifier or found["qualifier"]
        arn = f"arn:aws:lambda:{region}:{account}:function:{name}" + (f":{qualifier}" if qualifier else "")
        if (
            name not in self._resources
            or found["region"] not in (None, region)
            or found["account"] not in (None, account)
            or qualifier not in (None, "$LATEST")
        ):
            raise ApiError("ResourceNotFoundException", f"Function not found: {arn}", 404)
        return name

    def _package(self, name: str) -> Package:
        with self._lock:
            if name not in self._packages:
                self._packages[name] = build_package(self.functions[name].spec.code_dir)
            return self._packages[name]

    # -- shapes ------------------------------------------------------------------------------
    def _configuration(self, name: str) -> dict[str, Any]:
        res = self._resources[name]
        props = self.assembly.resolve(res.properties, res.stack)
        spec = self.functions[name].spec
        package = self._package(name)
        logging_config = props.get("LoggingConfig") or {}
        modified = datetime.fromtimestamp(Path(spec.code_dir).stat().st_mtime, UTC)
        config: dict[str, Any] = {
            "FunctionName": name,
            "FunctionArn": spec.arn,
            "Runtime": spec.runtime,
            "Role": str(props.get("Role", "")),
            "Handler": spec.handler,
            "CodeSize": package.size,
            "Description": str(props.get("Description", "")),
            "Timeout": int(spec.timeout_s),
            "MemorySize": spec.memory_mb,
            "LastModified": modified.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
            "CodeSha256": package.sha256,
            "Version": "$LATEST",
            "TracingConfig": {"Mode": (props.get("TracingConfig") or {}).get("Mode", "PassThrough")},
            "RevisionId": hashlib.sha256(f"{name}:{package.sha256}".encode()).hexdigest()[:32],
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": list(props.get("Architectures") or ["x86_64"]),
            "EphemeralStorage": {"Size": int((props.get("EphemeralStorage") or {}).get("Size", 512))},
            "LoggingConfig": {
                "LogFormat": logging_config.get("LogFormat", "Text"),
                "LogGroup": self.functions[name].log_group,
            },
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        }
        for key in ("ApplicationLogLevel", "SystemLogLevel"):
            if key in logging_config:
                config["LoggingConfig"][key] = logging_config[key]
        if spec.environment:
            config["Environment"] = {"Variables": dict(spec.environment)}
        if props.get("Layers"):
            config["Layers"] = [{"Arn": str(arn)} for arn in props["Layers"]]
        if props.get("KmsKeyArn"):
            config["KMSKeyArn"] = str(props["KmsKeyArn"])
        if (props.get("DeadLetterConfig") or {}).get("TargetArn"):
            config["DeadLetterConfig"] = {"TargetArn": str(props["DeadLetterConfig"]["TargetArn"])}
        return config

    def _list_functions(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("MasterRegion") or params.get("FunctionVersion"):
            raise not_implemented(self.service, "ListFunctions with MasterRegion or FunctionVersion")
        limit = int(params.get("MaxItems") or 50)
        if not 1 <= limit <= 10_000:
            raise ApiError("InvalidParameterValueException", "MaxItems must be between 1 and 10000.")
        names = sorted(self._resources)
        chosen, marker = page(
            names,
            params.get("Marker"),
            limit,
            bad_token=ApiError("InvalidParameterValueException", "The marker is not valid."),
        )
        return {"Functions": [self._configuration(n) for n in chosen], **({"NextMarker": marker} if marker else {})}

    def _get_function(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._function(params["FunctionName"], params.get("Qualifier"))
        res = self._resources[name]
        props = self.assembly.resolve(res.properties, res.stack)
        out: dict[str, Any] = {
            "Configuration": self._configuration(name),
            "Code": {"RepositoryType": "S3", "Location": self._code_location(name, props)},
        }
        tags = {t["Key"]: str(t["Value"]) for t in props.get("Tags", [])}
        if tags:
            out["Tags"] = tags
        if props.get("ReservedConcurrentExecutions") is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": int(props["ReservedConcurrentExecutions"])}
        return out

    def _code_location(self, name: str, props: dict[str, Any]) -> str:
        """A presigned URL of the function's package in the twin's S3 (where ``cdk deploy`` publishes it)."""
        code = props.get("Code") or {}
        bucket = str(code.get("S3Bucket") or f"cdk-twin-assets-{self.assembly.account}-{self.assembly.region}")
        key = str(code.get("S3Key") or f"lambda/{name}.zip")
        package = self._package(name)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except Exception:  # not yet published: publish it now
            try:
                self.s3.head_bucket(Bucket=bucket)
            except Exception:
                self.s3.create_bucket(Bucket=bucket)
            self.s3.put_object(Bucket=bucket, Key=key, Body=package.data)
        return str(self.s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600))

    # -- Invoke -------------------------------------------------------------------------------
    def _invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self._function(params["FunctionName"], params.get("Qualifier"))
        kind = params.get("InvocationType") or "RequestResponse"
        raw = params.get("Payload") or b""
        if isinstance(raw, str):
            raw = raw.encode()
        limit = MAX_SYNC_PAYLOAD if kind == "RequestResponse" else MAX_ASYNC_PAYLOAD
        if len(raw) > limit:
            raise ApiError(
                "RequestTooLargeException",
                f"{len(raw)} byte payload is too large for the {kind} invocation type (limit {limit} bytes)",
                413,
            )
        try:
            event = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ApiError("InvalidRequestContentException", f"Could not parse request body into json: {exc}") from None
        if params.get("ClientContext"):
            raise not_implemented(self.service, "Invoke with ClientContext")
        if kind == "DryRun":
            return {"StatusCode": 204}
        if kind == "Event":
            threading.Thread(target=self._invoke_async, args=(name, event), daemon=True).start()
            return {"StatusCode": 202}
        result = self.invoke(name, event)
        body = json.dumps(result.payload).encode()
        out: dict[str, Any] = {"StatusCode": result.status_code, "ExecutedVersion": "$LATEST"}
        if len(body) > MAX_SYNC_PAYLOAD:
            body = json.dumps(
                {
                    "errorMessage": f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload "
                    f"size ({MAX_SYNC_PAYLOAD} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
            ).encode()
            out["FunctionError"] = "Unhandled"
        elif result.function_error:
            out["FunctionError"] = result.function_error
        out["Payload"] = body
        if params.get("LogType") == "Tail":
            out["LogResult"] = base64.b64encode(result.log_tail.encode()).decode()
        return out

    def _invoke_async(self, name: str, event: Any) -> None:
        for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS_S)):
            time.sleep(delay * self.time_scale)
            try:
                result = self.invoke(name, event)
            except Exception:
                log.exception("asynchronous invocation of %s failed", name)
                return
            if not result.function_error:
                return
            log.warning("asynchronous invocation of %s failed (attempt %d): %s", name, attempt + 1, result.payload)
