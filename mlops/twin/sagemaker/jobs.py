"""SageMaker training, processing and batch transform jobs on the twin: the same scripts, as subprocesses.

A job gets a directory shaped like the container's ``/opt/ml`` under
``<workdir>/sagemaker/<kind>/<job name>/``. Inputs are downloaded from the twin's S3
as SageMaker would, the entry point runs under SageMaker's contract (``SM_*`` variables
and hyperparameters as arguments for training; the container entrypoint and arguments,
with ``/opt/ml`` remapped, for processing), and outputs are uploaded back
(``model.tar.gz`` for training). The result has the shape of ``DescribeTrainingJob`` /
``DescribeProcessingJob``; a failing script becomes a Failed job whose FailureReason
carries its failure file or the tail of its stderr.

The code runs with what the job's image holds and nothing else (:mod:`.images`): the
image's Python and package set, plus, for a training job, the source dir's
``requirements.txt`` installed as the training toolkit installs it. Each job gets its own
environment over those cached layers, so what a job installs stays with it. Before a
training job runs, its source dir is checked against the image's Python version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from mlops.s3io import S3Location
from mlops.sagemaker_contract import training_env
from mlops.twin import pycompat
from mlops.twin.pyenvs import (
    Environment,
    EnvironmentBuildError,
    RequirementsError,
    job_environment,
    requirements_environment,
)
from mlops.twin.sagemaker.images import ImageEnvironment, UnknownImage, environment_for_uri
from mlops.twin.sagemaker.serving import HandlerError, LoadedModel, ModelLoadError, ModelTimeout
from mlops.twin.sagemaker.state import JOB_INTERRUPTED

METRIC_LINE = re.compile(r"^\s*([A-Za-z_][\w.:-]*)\s*=\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
OPT_ML = "/opt/ml"
TRANSFORM_PAYLOAD_MB = 6  # MaxPayloadInMB's default
TRANSFORM_TIMEOUT_S = 600.0  # ModelClientConfig.InvocationsTimeoutInSeconds' default (and maximum: 3600)


class JobFailed(Exception):
    """The job ran and failed: ``describe`` is the Describe*Job response with FailureReason."""

    def __init__(self, describe: dict[str, Any]) -> None:
        super().__init__(describe.get("FailureReason", "job failed"))
        self.describe = describe


@dataclass
class JobRunner:
    s3: Any  # boto3 S3 client on the twin
    root: Path  # <workdir>/sagemaker
    account: str
    region: str
    s3_as: Callable[[str], Any] | None = None  # an S3 client signed as a role: jobs act as their RoleArn
    # keeps each Describe*Job response (at start and at the end) where DescribeTrainingJob reads it
    record: Callable[[dict[str, Any]], None] | None = None

    _running: set[subprocess.Popen[bytes]] = field(default_factory=set, init=False, repr=False)
    _models: set[LoadedModel] = field(default_factory=set, init=False, repr=False)  # transform jobs' model servers
    _stopping: set[str] = field(default_factory=set, init=False, repr=False)  # StopTransformJob asked
    _closing: list[bool] = field(default_factory=list, init=False, repr=False)  # [True] once stop_all ran

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()  # the job's process runs in the code directory

    def as_role(self, params: dict[str, Any]) -> JobRunner:
        """This runner with S3 calls made as the job's ``RoleArn`` (what SageMaker does for a job)."""
        role = params.get("RoleArn")
        if not role or self.s3_as is None:
            return self
        runner = JobRunner(self.s3_as(str(role)), self.root, self.account, self.region, record=self.record)
        runner._running = self._running  # stop_all still reaches the job's process
        runner._models, runner._stopping, runner._closing = self._models, self._stopping, self._closing
        return runner

    # -- S3 transfer -------------------------------------------------------------------
    def _download_prefix(self, uri: str, dest: Path) -> int:
        loc = S3Location.parse(uri if "/" in uri[5:] else uri + "/")
        dest.mkdir(parents=True, exist_ok=True)
        count = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=loc.bucket, Prefix=loc.key):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(loc.key) :].lstrip("/") or obj["Key"].rsplit("/", 1)[-1]
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(loc.bucket, obj["Key"], str(target))
                count += 1
        if count == 0:
            raise FileNotFoundError(f'No S3 objects found under S3 URL "{uri}" given in input data source.')
        return count

    def _upload_dir(self, src: Path, uri: str) -> None:
        loc = S3Location.parse(uri.rstrip("/") + "/")
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            self.s3.upload_file(str(path), loc.bucket, loc.key + path.relative_to(src).as_posix())

    def _extract_code(self, uri: str, dest: Path) -> None:
        loc = S3Location.parse(uri)
        archive = dest.parent / "sourcedir.tar.gz"
        self.s3.download_file(loc.bucket, loc.key, str(archive))
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")

    # -- environment ---------------------------------------------------------------------
    def _image(self, image_uri: str, log: Path) -> ImageEnvironment:
        """The image's environment; the job's log says what it holds. Raises _ClientError."""
        try:
            image = environment_for_uri(image_uri)
        except (UnknownImage, EnvironmentBuildError) as exc:
            raise _ClientError(str(exc)) from None
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"[twin] image {image_uri}: {image.describe()}\n")
        return image

    def _run(self, cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float, log: Path) -> tuple[int, str]:
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
            self._running.add(proc)
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:  # MaxRuntimeInSeconds: SageMaker stops the job
                proc.kill()
                proc.wait()
                code = -9
            finally:
                self._running.discard(proc)
        return code, log.read_text(errors="replace")

    def stop_all(self) -> None:
        """Stop the jobs still running (the twin is stopping): none outlives it."""
        self._closing.append(True)
        for model in list(self._models):
            model.close()
        for proc in list(self._running):
            proc.terminate()
        for proc in list(self._running):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _base_env(self, job_env: Environment, image: ImageEnvironment, code_dir: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("HOME", "TMPDIR", "TZ")}
        # python/python3 are the job's environment; the image's console scripts after it; no host venv
        env["PATH"] = os.pathsep.join([str(job_env.bin), str(image.env.bin), "/usr/local/bin", "/usr/bin", "/bin"])
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        # as the framework images set them
        env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="UTF-8", LANG="C.UTF-8")
        env["LC_ALL"] = "C.UTF-8"
        if code_dir is not None:
            env["PYTHONPATH"] = str(code_dir)
        return env

    # -- training --------------------------------------------------------------------------
    def train(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["TrainingJobName"]
        job_dir = self.root / "training" / name
        if job_dir.exists():
            shutil.rmtree(job_dir)
        ml = job_dir / "opt" / "ml"
        started = datetime.now(UTC)
        describe = self._training_describe(params, started)
        self._record(describe)
        hps = dict(params.get("HyperParameters", {}))
        channels = [c["ChannelName"] for c in params.get("InputDataConfig", [])]
        log = job_dir / "job.log"
        try:
            image = self._image(params.get("AlgorithmSpecification", {}).get("TrainingImage", ""), log)
            for channel in params.get("InputDataConfig", []):
                uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
                self._download_prefix(uri, ml / "input" / "data" / channel["ChannelName"])
            code_dir = ml / "code"
            program = hps.get("sagemaker_program", "train.py").strip('"')
            if "sagemaker_submit_directory" in hps:
                self._extract_code(hps["sagemaker_submit_directory"].strip('"'), code_dir)
        except (_ClientError, ClientError) as exc:  # ClientError: e.g. AccessDenied for the role
            return self._fail(describe, f"ClientError: {exc}")
        except (FileNotFoundError, OSError) as exc:
            return self._fail(describe, f"ClientError: {exc}")
        try:
            job_env = self._training_environment(image, code_dir, job_dir, log)
        except _JobError as exc:
            return self._fail(describe, str(exc))
        for sub in ("model", "output/data", "input/config"):
            (ml / sub).mkdir(parents=True, exist_ok=True)
        (ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hps))
        user_hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
        env = self._base_env(job_env, image, code_dir)
        env.update(training_env(ml, channels, user_hps, program))
        args = [part for k, v in user_hps.items() for part in (f"--{k}", str(v))]
        timeout = float(params.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400))
        code, output = self._run([str(job_env.python), program, *args], env, code_dir, timeout, log)
        describe["FinalMetricDataList"] = _metrics(output)
        if code != 0:
            return self._fail(describe, _failure_reason(code, ml / "output" / "failure", output, timeout))
        artifacts = f"{params['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output"
        try:
            self._tar_upload(ml / "model", f"{artifacts}/model.tar.gz")
            if any((ml / "output" / "data").iterdir()):
                self._tar_upload(ml / "output" / "data", f"{artifacts}/output.tar.gz")
        except (ClientError, S3UploadFailedError) as exc:  # e.g. AccessDenied for the job's role
            return self._fail(describe, f"ClientError: {exc}")
        ended = datetime.now(UTC)
        describe.update(
            TrainingJobStatus="Completed",
            SecondaryStatus="Completed",
            ModelArtifacts={"S3ModelArtifacts": f"{artifacts}/model.tar.gz"},
            TrainingEndTime=ended.isoformat(),
            LastModifiedTime=ended.isoformat(),
            TrainingTimeInSeconds=int((ended - started).total_seconds()),
            BillableTimeInSeconds=int((ended - started).total_seconds()),
        )
        self._record(describe)
        return describe

    def _training_environment(self, image: ImageEnvironment, code_dir: Path, job_dir: Path, log: Path) -> Environment:
        """What the training container does before the entry point: the source dir checked against the
        image's Python, its ``requirements.txt`` installed by the image's pip. Raises _JobError."""
        layers = [image.env]
        if code_dir.is_dir():
            found = pycompat.newer_python_needed(code_dir, image.spec.python, image.env.interpreter)
            if found:
                runtime = f"the image's Python {image.spec.python}"
                raise _JobError(f"AlgorithmError: {pycompat.describe(found, runtime)}")
            requirements = code_dir / "requirements.txt"
            if requirements.is_file():
                try:
                    layers.insert(0, requirements_environment(image.env, requirements))
                except RequirementsError as exc:
                    with log.open("a") as out:
                        out.write(exc.output)
                    tail = "\n".join(exc.output.strip().splitlines()[-10:])
                    raise _JobError(
                        f'AlgorithmError: InstallRequirementsError:\nExitCode {exc.exit_code}\nErrorMessage "{tail}"'
                    ) from None
                with log.open("a") as out:
                    out.write(f"[twin] requirements.txt installed by the image's pip: {layers[0].root.name}\n")
        return job_environment(job_dir / ".env", layers)

    def _training_describe(self, params: dict[str, Any], started: datetime) -> dict[str, Any]:
        name = params["TrainingJobName"]
        return {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{self.region}:{self.account}:training-job/{name.lower()}",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Training",
            "HyperParameters": params.get("HyperParameters", {}),
            "AlgorithmSpecification": params.get("AlgorithmSpecification", {}),
            "RoleArn": params.get("RoleArn"),
            "InputDataConfig": params.get("InputDataConfig", []),
            "OutputDataConfig": params.get("OutputDataConfig", {}),
            "ResourceConfig": params.get("ResourceConfig", {}),
            "StoppingCondition": params.get("StoppingCondition", {}),
            "EnableManagedSpotTraining": params.get("EnableManagedSpotTraining", False),
            "CreationTime": started.isoformat(),
            "TrainingStartTime": started.isoformat(),
        }

    def _tar_upload(self, src: Path, uri: str) -> None:
        archive = src.parent / (src.name + ".tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(src.iterdir()):
                tar.add(path, arcname=path.name)
        loc = S3Location.parse(uri)
        self.s3.upload_file(str(archive), loc.bucket, loc.key)

    def _fail(self, describe: dict[str, Any], reason: str) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        if self._closing:  # whatever the job's process reported, it ended because the twin stopped
            reason = JOB_INTERRUPTED
        status_key = next(
            k for k in ("TrainingJobStatus", "ProcessingJobStatus", "TransformJobStatus") if k in describe
        )
        describe.update({status_key: "Failed", "FailureReason": reason[-1024:], "LastModifiedTime": now})
        if status_key == "TrainingJobStatus":
            describe["SecondaryStatus"] = "Failed"
        self._record(describe)
        raise JobFailed(describe)

    def _record(self, describe: dict[str, Any]) -> None:
        if self.record is not None:
            self.record(dict(describe))

    # -- processing ------------------------------------------------------------------------
    def process(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ProcessingJobName"]
        job_dir = self.root / "processing" / name
        if job_dir.exists():
            shutil.rmtree(job_dir)
        job_dir.mkdir(parents=True)
        remap = str(job_dir / "opt" / "ml")

        def local(path: str) -> str:
            return path.replace(OPT_ML, remap)

        started = datetime.now(UTC)
        describe: dict[str, Any] = {
            "ProcessingJobName": name,
            "ProcessingJobArn": f"arn:aws:sagemaker:{self.region}:{self.account}:processing-job/{name.lower()}",
            "ProcessingJobStatus": "InProgress",
            "ProcessingInputs": params.get("ProcessingInputs", []),
            "ProcessingOutputConfig": params.get("ProcessingOutputConfig", {}),
            "ProcessingResources": params.get("ProcessingResources", {}),
            "AppSpecification": params.get("AppSpecification", {}),
            "StoppingCondition": params.get("StoppingCondition", {}),
            "RoleArn": params.get("RoleArn"),
            "CreationTime": started.isoformat(),
            "ProcessingStartTime": started.isoformat(),
        }
        self._record(describe)
        log = job_dir / "job.log"
        try:
            image = self._image(params["AppSpecification"].get("ImageUri", ""), log)
            for item in params.get("ProcessingInputs", []):
                s3_input = item["S3Input"]
                self._download_prefix(s3_input["S3Uri"], Path(local(s3_input["LocalPath"])))
        except (_ClientError, ClientError, FileNotFoundError, OSError) as exc:  # e.g. AccessDenied for the role
            return self._fail(describe, f"ClientError: {exc}")
        outputs = params.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in outputs:
            Path(local(item["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)
        app = params["AppSpecification"]
        cmd = [local(p) for p in (*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", []))]
        if not cmd:
            return self._fail(describe, "ClientError: AppSpecification needs a ContainerEntrypoint on the twin")
        env = self._base_env(job_environment(job_dir / ".env", [image.env]), image, None)
        env.update({k: local(v) for k, v in params.get("Environment", {}).items()})
        timeout = float(params.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400))
        code, output = self._run(cmd, env, job_dir, timeout, log)
        if code != 0:
            message = Path(remap) / "output" / "message"  # the processing container's ExitMessage file
            return self._fail(describe, _failure_reason(code, message, output, timeout))
        try:
            for item in outputs:
                self._upload_dir(Path(local(item["S3Output"]["LocalPath"])), item["S3Output"]["S3Uri"])
        except (ClientError, S3UploadFailedError) as exc:  # e.g. AccessDenied for the job's role
            return self._fail(describe, f"ClientError: {exc}")
        ended = datetime.now(UTC)
        describe.update(
            ProcessingJobStatus="Completed",
            ExitMessage=output[-256:],
            ProcessingEndTime=ended.isoformat(),
            LastModifiedTime=ended.isoformat(),
        )
        self._record(describe)
        return describe

    # -- batch transform -------------------------------------------------------------------
    def stop_transform(self, name: str) -> None:
        """StopTransformJob: the job stops before its next mini-batch and ends Stopped."""
        self._stopping.add(name)

    def transform(
        self, params: dict[str, Any], model: dict[str, Any], on_start: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Run a CreateTransformJob request; ``model`` is DescribeModel's answer for its ModelName.
        ``on_start`` is called once the job is recorded InProgress."""
        name = params["TransformJobName"]
        job_dir = self.root / "transform" / name
        if job_dir.exists():
            shutil.rmtree(job_dir)
        job_dir.mkdir(parents=True)
        started = datetime.now(UTC)
        describe = self._transform_describe(params, started)
        self._record(describe)
        if on_start is not None:
            on_start()
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        env = {k: str(v) for k, v in (container.get("Environment") or {}).items()}
        env.update({k: str(v) for k, v in (params.get("Environment") or {}).items()})
        source = params["TransformInput"]["DataSource"]["S3DataSource"]
        try:
            unsupported = _unsupported_transform(params)
            if unsupported:
                raise _ClientError(f"{unsupported} is not supported by the local twin")
            self._download_prefix(source["S3Uri"], job_dir / "input")
            model_dir = self._fetch_archive(container["ModelDataUrl"], job_dir / "model")
            code_dir = (
                self._fetch_archive(env["SAGEMAKER_SUBMIT_DIRECTORY"], job_dir / "code")
                if "SAGEMAKER_SUBMIT_DIRECTORY" in env
                else model_dir / "code"
            )
        except (_ClientError, ClientError, FileNotFoundError, OSError, tarfile.TarError) as exc:
            return self._fail(describe, f"ClientError: {exc}")
        timeout = float((params.get("ModelClientConfig") or {}).get("InvocationsTimeoutInSeconds", TRANSFORM_TIMEOUT_S))
        workers = int(params.get("MaxConcurrentTransforms") or 0) or None
        served = LoadedModel(
            name,
            model_dir,
            code_dir,
            env.get("SAGEMAKER_PROGRAM", "inference.py"),
            image_uri=str(container.get("Image", "")),
            workers=workers,
            environment=env,
            env_dir=job_dir / ".env",
            log_path=job_dir / "model-server.log",
            timeout_s=timeout,
        )
        self._models.add(served)
        try:
            loading = time.monotonic()
            served.load()
            loaded = time.monotonic()
            records = self._transform_files(params, served, job_dir)
            timing = f"model server started in {loaded - loading:.2f} s, transform in {time.monotonic() - loaded:.2f} s"
        except ModelLoadError as exc:
            return self._fail(describe, f"ClientError: the model failed to load: {exc} (see {served.log_path})")
        except _Stopped:
            describe.update(TransformJobStatus="Stopped", LastModifiedTime=datetime.now(UTC).isoformat())
            self._record(describe)
            raise JobFailed(describe) from None
        except (HandlerError, ModelTimeout, _ClientError) as exc:
            return self._fail(describe, f"AlgorithmError: {exc}")
        except (ClientError, S3UploadFailedError) as exc:  # e.g. AccessDenied for the model's role
            return self._fail(describe, f"ClientError: {exc}")
        finally:
            served.close()
            self._models.discard(served)
            self._stopping.discard(name)
        ended = datetime.now(UTC)
        describe.update(
            TransformJobStatus="Completed",
            TransformEndTime=ended.isoformat(),
            LastModifiedTime=ended.isoformat(),
        )
        with (job_dir / "job.log").open("a") as log:
            log.write(f"[twin] {records} mini-batch(es) transformed; {timing}\n")
        self._record(describe)
        return describe

    def _transform_describe(self, params: dict[str, Any], started: datetime) -> dict[str, Any]:
        name = params["TransformJobName"]
        keys = (
            "ModelName",
            "MaxConcurrentTransforms",
            "ModelClientConfig",
            "MaxPayloadInMB",
            "BatchStrategy",
            "Environment",
            "TransformInput",
            "TransformOutput",
            "TransformResources",
            "DataProcessing",
        )
        return {
            "TransformJobName": name,
            "TransformJobArn": f"arn:aws:sagemaker:{self.region}:{self.account}:transform-job/{name.lower()}",
            "TransformJobStatus": "InProgress",
            **{k: params[k] for k in keys if params.get(k) is not None},
            "CreationTime": started.isoformat(),
            "TransformStartTime": started.isoformat(),
        }

    def _fetch_archive(self, uri: str, dest: Path) -> Path:
        loc = S3Location.parse(uri)
        archive = dest.with_name(dest.name + ".tar.gz")
        self.s3.download_file(loc.bucket, loc.key, str(archive))
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        return dest

    def _transform_files(self, params: dict[str, Any], served: LoadedModel, job_dir: Path) -> int:
        """Transform every downloaded input object into its ``.out``; the number of mini-batches sent."""
        name = params["TransformJobName"]
        tin, tout = params["TransformInput"], params["TransformOutput"]
        content_type = str(tin.get("ContentType") or "application/octet-stream")
        accept = str(tout.get("Accept") or content_type)
        limit = int(params.get("MaxPayloadInMB") or TRANSFORM_PAYLOAD_MB) * 1024 * 1024
        single = params.get("BatchStrategy", "MultiRecord") == "SingleRecord"
        by_line = tin.get("SplitType", "None") == "Line"
        joiner = b"\n" if tout.get("AssembleWith", "None") == "Line" else b""
        out_root = job_dir / "output"
        extra: dict[str, str] = {}
        if tout.get("KmsKeyId"):
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": str(tout["KmsKeyId"])}
        inputs = job_dir / "input"
        sent = 0
        with ThreadPoolExecutor(served.workers, thread_name_prefix=f"transform-{name}") as pool:
            for path in sorted(p for p in inputs.rglob("*") if p.is_file()):
                rel = path.relative_to(inputs).as_posix()
                target = out_root / (rel + ".out")
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    batches = _mini_batches(path, by_line, single, limit)
                    sent += self._transform_one(name, batches, served, pool, (content_type, accept), out, joiner)
                dest = S3Location.parse(tout["S3OutputPath"].rstrip("/") + "/" + rel + ".out")
                self.s3.upload_file(str(target), dest.bucket, dest.key, ExtraArgs=extra or None)
        return sent

    def _transform_one(
        self,
        name: str,
        batches: Iterator[bytes],
        served: LoadedModel,
        pool: ThreadPoolExecutor,
        types: tuple[str, str],
        out: Any,
        joiner: bytes,
    ) -> int:
        """Send one object's mini-batches, a few in flight, and write the responses in order."""
        pending: deque[Future[tuple[bytes, str]]] = deque()
        sent, first = 0, True

        def drain(keep: int) -> None:
            nonlocal first
            while len(pending) > keep:
                body, _ = pending.popleft().result()
                if not first and joiner:
                    out.write(joiner)
                out.write(body.rstrip(b"\n") if joiner else body)
                first = False

        for payload in batches:
            if name in self._stopping:
                raise _Stopped
            pending.append(pool.submit(served.handle, payload, *types))
            sent += 1
            drain(2 * served.workers)
        drain(0)
        if joiner and not first:
            out.write(joiner)
        return sent


def _unsupported_transform(params: dict[str, Any]) -> str | None:
    """What a transform request asks that the twin does not run (it fails the job rather than ignore it)."""
    tin = params.get("TransformInput") or {}
    source = (tin.get("DataSource") or {}).get("S3DataSource") or {}
    checks = {
        f"S3DataType {source.get('S3DataType')}": source.get("S3DataType", "S3Prefix") != "S3Prefix",
        f"SplitType {tin.get('SplitType')}": tin.get("SplitType", "None") not in ("None", "Line"),
        f"CompressionType {tin.get('CompressionType')}": tin.get("CompressionType", "None") != "None",
        "DataProcessing (input/output filters, JoinSource)": bool(params.get("DataProcessing")),
        "DataCaptureConfig": bool(params.get("DataCaptureConfig")),
    }
    return next((what for what, asked in checks.items() if asked), None)


def _mini_batches(path: Path, by_line: bool, single: bool, limit: int) -> Iterator[bytes]:
    """The object's records (lines with ``SplitType: Line``, else the whole object), grouped into
    payloads of at most ``limit`` bytes (``MultiRecord``) or one record each (``SingleRecord``)."""
    if not by_line:
        data = path.read_bytes()
        if len(data) > limit:
            raise _ClientError(f"the record of {path.name} ({len(data):,} bytes) exceeds MaxPayloadInMB")
        yield data
        return
    batch: list[bytes] = []
    size = 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            if len(line) > limit:
                raise _ClientError(f"a record of {path.name} ({len(line):,} bytes) exceeds MaxPayloadInMB")
            if batch and (single or size + len(line) > limit):
                yield b"".join(batch)
                batch, size = [], 0
            batch.append(line if line.endswith(b"\n") else line + b"\n")
            size += len(line)
    if batch:
        yield b"".join(batch)


class _Stopped(Exception):
    """StopTransformJob was called for the running job."""


class _ClientError(Exception):
    """The job could not start (its image, its inputs): FailureReason ``ClientError: ...``."""


class _JobError(Exception):
    """The container failed before the entry point ran; the message is the FailureReason."""


def _metrics(output: str) -> list[dict[str, Any]]:
    found: dict[str, float] = {}
    for line in output.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            found[match[1]] = float(match[2])
    now = time.time()
    return [{"MetricName": k, "Value": v, "Timestamp": now} for k, v in found.items()]


def _failure_reason(code: int, failure_file: Path, output: str, timeout: float) -> str:
    if code == -9:
        return f"MaxRuntimeExceeded: the job ran longer than MaxRuntimeInSeconds ({timeout:.0f} s)"
    message = failure_file.read_text(errors="replace").strip() if failure_file.is_file() else ""
    tail = "\n".join(output.strip().splitlines()[-15:])
    return f'AlgorithmError: ExecuteUserScriptError:\nExitCode {code}\nErrorMessage "{message or tail}"'
