"""``mlops``: the command line for the platform and its local twin."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from rich.console import Console
from rich.table import Table

from mlops.config import ConfigError, ModelConfig
from mlops.s3io import S3Location
from mlops.services.registry import PackageRef, RegistryClient
from mlops.settings import model_config
from mlops.synth import SynthError, ensure_synthesized
from mlops.twin import control
from mlops.twin.asl import Execution
from mlops.twin.asl.history import compress_states, entered_states

app = typer.Typer(help="Serverless MLOps on AWS CDK, with a local twin.", no_args_is_help=True)
local = typer.Typer(help="The local twin: the synthesized app running on 127.0.0.1.", no_args_is_help=True)
app.add_typer(local, name="local")
console = Console(width=None if sys.stdout.isatty() else 140)  # logs and CI: wide enough for tables

MODEL_DEMO = "tumor-classifier"
Workdir = Annotated[Path, typer.Option(help="Twin work directory (state, objects, executions, logs).")]
CdkOut = Annotated[Path, typer.Option(help="Cloud assembly directory.")]
AwsFlag = Annotated[bool, typer.Option("--aws", help="Use real AWS (your profile) instead of the running twin.")]
Profile = Annotated[str | None, typer.Option(help="AWS profile, with --aws.")]
TimeScale = Annotated[
    float,
    typer.Option(help="Real seconds per twin second for schedules, waits and alarm periods (0.005: an hour in 18 s)."),
]


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


def _config(model: str) -> ModelConfig:
    """The model's config; a config error is printed one line per problem (file and field), no traceback."""
    try:
        return model_config(model)
    except ConfigError as exc:
        _fail("invalid model config\n" + "\n".join(exc.lines()))
        raise  # unreachable: _fail exits


def _running(workdir: Path) -> control.TwinHandle:
    handle = control.status(workdir)
    if handle is None:
        _fail(f"no twin is running for {workdir}; start it with `mlops local up`")
    assert handle is not None
    return handle


def _start(workdir: Path, cdk_out: Path, port: int, synth: bool, time_scale: float = 1.0) -> control.TwinHandle:
    running = control.status(workdir)
    if running:
        console.print(f"twin already running (pid {running.state['pid']}) at {running.endpoint}")
        if running.state.get("time_scale") != time_scale:
            console.print(
                f"[yellow]note:[/] it runs at time scale {running.state.get('time_scale')} "
                f"(asked for {time_scale}); `mlops local down` first to change it"
            )
        return running
    if synth:
        with console.status("synthesizing the CDK app (python app.py)..."):
            try:
                took = ensure_synthesized(Path.cwd(), cdk_out)
            except SynthError as exc:
                _fail(str(exc))
        console.print(
            f"[green]✓[/] cloud assembly {f'synthesized in {took:.1f} s' if took else 'up to date'}: {cdk_out}"
        )
    with console.status("starting the twin from the assembly..."):
        try:
            handle = control.start(cdk_out, workdir, port=port, time_scale=time_scale)
        except control.TwinError as exc:
            _fail(str(exc))
    _print_twin(handle)
    return handle


def _print_twin(handle: control.TwinHandle) -> None:
    state, report = handle.state, handle.state["report"]
    console.print(f"[green]✓[/] twin running (pid {state['pid']}), work dir [bold]{handle.workdir}[/]")
    table = Table(title="Local twin", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("where")
    table.add_row("S3 API (boto3 / aws --endpoint-url)", handle.endpoint)
    for name, arn in state["state_machines"].items():
        table.add_row("state machine", f"{name}\n[dim]{arn}[/]")
    for fn in state["functions"]:
        table.add_row("Lambda function", fn)
    for key, value in state["outputs"].items():
        table.add_row(f"output {key}", str(value))
    console.print(table)
    for layer in report["substituted_layers"]:
        console.print(f"[dim]layer {layer}[/]")
    if report["inert"]:
        kinds = sorted({(t, why) for _, t, why in report["inert"]})
        console.print("[dim]not simulated: " + "; ".join(f"{t} ({why})" for t, why in kinds) + "[/]")
    for path, rtype in report["unsupported"]:
        console.print(f"[yellow]unsupported resource[/] {path} ({rtype}): the twin does not run it")
    for machine, state_name, resource in report["unsupported_tasks"]:
        console.print(f"[yellow]unsupported task[/] {machine} / {state_name}: {resource}")


@local.command("up")
def local_up(
    workdir: Workdir = Path(".mlops"),
    cdk_out: CdkOut = Path("cdk.out"),
    port: Annotated[int, typer.Option(help="S3 API port on 127.0.0.1.")] = control.DEFAULT_PORT,
    synth: Annotated[bool, typer.Option(help="Synthesize first if the app changed.")] = True,
    time_scale: TimeScale = 1.0,
) -> None:
    """Synthesize if needed, start the twin in the background and print its endpoints."""
    _start(workdir, cdk_out, port, synth, time_scale)


@local.command("down")
def local_down(workdir: Workdir = Path(".mlops")) -> None:
    """Stop the twin (uploaded objects and executions stay in the work directory)."""
    if control.stop(workdir):
        console.print(f"[green]✓[/] twin stopped; state kept in {workdir}")
    else:
        console.print("no twin was running")


@local.command("status")
def local_status(workdir: Workdir = Path(".mlops")) -> None:
    """Show whether the twin runs and where."""
    _print_twin(_running(workdir))


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    model: Annotated[str, typer.Option(help="Model name: the file lands in incoming/<model>/.")],
    workdir: Workdir = Path(".mlops"),
    key_name: Annotated[str | None, typer.Option(help="Object name (default: the file name).")] = None,
) -> None:
    """Upload a dataset to the incoming bucket of the running twin, as a user would to S3."""
    handle = _running(workdir)
    dest = S3Location(handle.bucket("incoming"), f"incoming/{model}/{key_name or file.name}")
    handle.client().upload_file(str(file), dest.bucket, dest.key)
    console.print(f"[green]✓[/] uploaded {file} ({file.stat().st_size:,} bytes) to {dest.uri}")


def _duration(execution: dict[str, Any]) -> str:
    if not execution.get("stop_date"):
        return "running"
    start = datetime.fromisoformat(str(execution["start_date"]))
    stop = datetime.fromisoformat(str(execution["stop_date"]))
    return f"{(stop - start).total_seconds():.2f} s"


def _failed_state(execution: dict[str, Any]) -> str:
    return Execution.from_dict(execution).failed_state() or ""


@app.command()
def executions(
    workdir: Workdir = Path(".mlops"),
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    machine: Annotated[str | None, typer.Option(help="Only this state machine (name contains).")] = None,
) -> None:
    """List state machine executions on the twin: status, duration, and where and why failures happened."""
    found = control.load_executions(workdir)
    if machine:
        found = [e for e in found if machine in str(e.get("state_machine_arn"))]
    table = Table(show_header=True, header_style="bold")
    for col in ("started", "state machine", "execution", "status", "duration", "failed state / error"):
        table.add_column(col)
    for e in found[:limit]:
        status = e.get("status", "?")
        colour = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "yellow"}.get(status, "white")
        failure = ""
        if status != "SUCCEEDED" and e.get("error"):
            failure = f"{_failed_state(e)}: {e['error']}\n[dim]{str(e.get('cause') or '')[:160]}[/]"
        table.add_row(
            str(e.get("start_date", ""))[:19],
            str(e.get("state_machine_arn", "")).rsplit(":", 1)[-1],
            str(e.get("name", ""))[:12],
            f"[{colour}]{status}[/]",
            _duration(e),
            failure,
        )
    console.print(table if found else "no executions recorded yet")


@local.command("demo")
def local_demo(
    workdir: Workdir = Path(".mlops"),
    cdk_out: CdkOut = Path("cdk.out"),
    port: Annotated[int, typer.Option(help="S3 API port on 127.0.0.1.")] = control.DEFAULT_PORT,
    rows: Annotated[int, typer.Option(help="Rows per demo dataset.")] = 5000,
    time_scale: TimeScale = 0.005,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each stage.")] = 600,
) -> None:
    """The whole loop on the twin: upload, validate (and quarantine), train, evaluate, register,
    deploy, predict, drift, alarm, retrain, canary deployment."""
    from examples.generate_data import generate, write_csv
    from mlops import loop_demo

    model = MODEL_DEMO
    times = loop_demo.LoopTimes()
    times.mark("start")
    console.rule("[bold]1. the app, synthesized and running on the twin")
    handle = _start(workdir, cdk_out, port, synth=True, time_scale=time_scale)
    times.mark("twin running")
    s3 = handle.client()

    console.rule("[bold]2. demo data")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    files = {}
    for variant in ("good", "bad"):
        path = write_csv(generate(model, variant, rows, seed=1), workdir / "demo" / f"{variant}-{stamp}.csv")
        files[variant] = path
        console.print(f"generated {variant} dataset {path} ({path.stat().st_size:,} bytes)")

    console.rule("[bold]3. upload to S3 (what a data scientist or a job does)")
    incoming = handle.bucket("incoming")
    keys = {}
    for variant, path in files.items():
        keys[variant] = f"incoming/{model}/{path.name}"
        s3.upload_file(str(path), incoming, keys[variant])
        console.print(f"uploaded s3://{incoming}/{keys[variant]}")

    console.rule("[bold]4. S3 event → EventBridge rule → validation state machine → Lambda")
    results = {}
    with console.status("waiting for the validation executions..."):
        for variant, key in keys.items():
            (results[variant],) = control.wait_for_executions(workdir, key, machine="Validation", timeout_s=timeout)
    for variant, execution in results.items():
        _print_execution(variant, execution)

    console.rule("[bold]5. the results, in the buckets")
    for variant, execution in results.items():
        output = _validation_output(execution)
        if output.get("report_uri"):
            report = S3Location.parse(output["report_uri"])
            text = s3.get_object(Bucket=report.bucket, Key=report.key.replace(".json", ".txt"))["Body"].read()
            console.print(f"[bold]{variant} dataset report[/] ({output['report_uri']}):")
            console.print(text.decode(), markup=False)
        for label in ("validated_uri", "profile_uri", "quarantine_uri"):
            if output.get(label):
                console.print(f"  {label.replace('_uri', '')}: {output[label]}")
    times.mark("validated")
    version = _validation_output(results["good"]).get("dataset_version")
    if not version:
        _fail("the good dataset did not pass validation; see the report above")
    deployed_before = len([e for e in control.load_executions(workdir, "Deploy") if e["status"] != "RUNNING"])
    console.rule("[bold]6. validated data → training → evaluation → gate → model registry")
    with console.status("training state machine: SageMaker training job, then evaluation job..."):
        (training,) = control.wait_for_executions(workdir, version, machine="Training", timeout_s=timeout)
    _print_execution("training", training)
    models(MODEL_DEMO, workdir=workdir, aws=False, profile=None)
    if training["status"] != "SUCCEEDED":
        _fail(f"training failed: {training.get('cause')}")
    lineage(MODEL_DEMO, workdir=workdir, aws=False, profile=None)
    times.mark("registered")

    console.rule("[bold]7. approved package → EventBridge → deploy state machine → SageMaker endpoint")
    with console.status("deploy state machine: model, endpoint config with data capture, endpoint..."):
        deployment = loop_demo.wait_for_deployment(handle, deployed_before, timeout)
    _print_execution("deployment", deployment)
    console.print(f"endpoint [bold]{model}[/] serves version {loop_demo.serving_version(handle, model)}")
    times.mark("deployed")

    console.rule("[bold]8. an application calls the endpoint (boto3 sagemaker-runtime InvokeEndpoint)")
    loop_demo.show_predictions(console, handle, _config(model), generate(model, "good", 5, seed=42))
    console.print(f"[dim]try: mlops predict {model} --file <csv>[/]")

    console.rule("[bold]9. the world changes: drifted traffic → drift monitor → alarm → retrain → canary")
    console.print(
        f"the monitor runs every {_config(model).monitoring.schedule_minutes} twin minutes "
        f"(the twin's clock runs {1 / time_scale:.0f}x fast); its metrics feed the drift alarm"
    )
    drifted = generate(model, "drifted", 3000, seed=7)
    redeploy = loop_demo.drive_drift(console, handle, _config(model), drifted, timeout)
    _print_execution("canary deployment", redeploy)
    times.mark("retrained and redeployed")

    console.rule("[bold]10. summary")
    models(MODEL_DEMO, workdir=workdir, aws=False, profile=None)
    console.print(loop_demo.alarm_table(workdir, model))
    console.print(loop_demo.times_table(times))
    console.print(f"endpoint [bold]{model}[/] now serves version {loop_demo.serving_version(handle, model)}")
    console.rule("[bold]where everything is")
    console.print(f"S3 API: {handle.endpoint}  (try: aws --endpoint-url {handle.endpoint} s3 ls)")
    console.print(f"SageMaker Runtime: {handle.state['runtime_endpoint']}  (try: mlops predict {model} --file ...)")
    console.print(f"SNS notifications: {workdir / 'notifications.jsonl'}")
    console.print(f"executions: `mlops executions`, files in {workdir / 'executions'}")
    console.print(f"Lambda logs: {workdir / 'logs'}   events: {workdir / 'events.jsonl'}")
    console.print("the twin keeps running; stop it with `mlops local down`")


def _validation_output(execution: dict[str, Any]) -> dict[str, Any]:
    """The validation Lambda's result, from the execution's history (also present when it failed)."""
    for event in reversed(execution.get("history", [])):
        details = event.get("taskSucceededEventDetails") or event.get("lambdaFunctionSucceededEventDetails")
        if details and details.get("output"):
            out = json.loads(details["output"]) if isinstance(details["output"], str) else details["output"]
            out = out.get("Payload", out) if isinstance(out, dict) else out
            if isinstance(out, dict) and "report_uri" in out:
                return out
    return {}


def _print_execution(label: str, execution: dict[str, Any]) -> None:
    states = entered_states(execution.get("history", []))
    colour = "green" if execution["status"] == "SUCCEEDED" else "red"
    console.print(f"[bold]{label}[/]: [{colour}]{execution['status']}[/] in {_duration(execution)}")
    console.print("  states: " + " → ".join(compress_states(states)))
    if execution.get("error"):
        console.print(f"  error: {execution['error']}")


@app.command()
def predict(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name (the model's name).")],
    row: Annotated[str | None, typer.Option(help="One CSV row of feature values, in the contract's order.")] = None,
    file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="A CSV or JSON file.")] = None,
    content_type: Annotated[str | None, typer.Option(help="text/csv or application/json (default: by file).")] = None,
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """Send a row or a file to an endpoint (InvokeEndpoint) and print the predictions."""
    if (row is None) == (file is None):
        _fail("give exactly one of --row or --file")
    if file is not None:
        body = file.read_bytes()
        kind = content_type or ("application/json" if file.suffix.lower() == ".json" else "text/csv")
    else:
        body, kind = (row or "").encode(), content_type or "text/csv"
    if aws:
        client = boto3.Session(profile_name=profile).client("sagemaker-runtime")
    else:
        from mlops.loop_demo import runtime_client

        client = runtime_client(_running(workdir))
    try:
        answer = client.invoke_endpoint(EndpointName=endpoint, ContentType=kind, Accept="application/json", Body=body)
    except client.exceptions.ModelError as exc:
        _fail(str(exc))
        raise
    except client.exceptions.ValidationError as exc:
        _fail(str(exc))
        raise
    variant = answer["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-invoked-production-variant", "?")
    console.print(f"[dim]{endpoint} (variant {variant})[/]")
    console.print_json(answer["Body"].read().decode())


def _labelled_capture_step(found: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A lineage line for the labelled captured requests an alarm-triggered retrain added."""
    if not found:
        return []
    if not found.get("rows_added"):
        return [("labelled capture", f"none added ({found.get('skipped') or 'no labelled requests'})")]
    return [
        (
            "labelled capture",
            f"{found['rows_added']} rows from {found.get('capture_objects_used')} capture objects under "
            f"{found.get('capture_prefix')}, labels from {found.get('ground_truth_prefix')}; "
            f"dropped {json.dumps(found.get('dropped', {}))}",
        )
    ]


# -- the model registry (twin or AWS) -------------------------------------------------------


def _registry(workdir: Path, aws: bool, profile: str | None) -> RegistryClient:
    if aws:
        session = boto3.Session(profile_name=profile)
        return RegistryClient(session.client("sagemaker"), session.client("s3"))
    handle = _running(workdir)
    return RegistryClient(handle.client("sagemaker"), handle.client("s3"))


def _ref(text: str) -> PackageRef:
    try:
        return PackageRef.parse(text)
    except ValueError as exc:
        _fail(str(exc))
        raise


@app.command()
def models(
    model: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """Registered model versions: status, metrics, data version, created."""
    registry = _registry(workdir, aws, profile)
    names = [model] if model else registry.groups()
    table = Table(show_header=True, header_style="bold")
    for col in ("model", "version", "status", "metrics", "dataset version", "created", "note"):
        table.add_column(col)
    for name in names:
        for v in registry.versions(name):
            colour = {"Approved": "green", "Rejected": "red"}.get(v["status"], "yellow")
            metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v["metrics"].items()))
            table.add_row(
                name,
                str(v["version"]),
                f"[{colour}]{v['status']}[/]",
                metrics,
                str(v["dataset_version"] or ""),
                str(v["created"])[:19],
                v["description"][:80],
            )
    console.print(table if table.row_count else "no registered model versions")


@app.command()
def lineage(
    package: Annotated[str, typer.Argument(help="MODEL or MODEL:VERSION (default: newest).")],
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """The chain from the uploaded file to the model package."""
    try:
        found = _registry(workdir, aws, profile).lineage(_ref(package))
    except LookupError as exc:
        _fail(str(exc))
        return
    pkg, lin = found["package"], found["lineage"]
    steps = [
        ("upload", f"{lin.get('data_uri')}  version {lin.get('data_version_id')}  sha256 {lin.get('data_sha256')}"),
        ("validation report", str(lin.get("validation_report"))),
        ("validated data", f"{lin.get('validated_uri')}  (dataset version {lin.get('dataset_version')})"),
        ("profile (drift baseline)", str(lin.get("profile_uri"))),
        ("split", json.dumps(lin.get("split", {}).get("rows", {}))),
        *_labelled_capture_step(lin.get("labelled_capture")),
        ("training job", f"{lin.get('training_job')}  hyperparameters {json.dumps(lin.get('hyperparameters'))}"),
        ("code", f"{lin.get('code_uri')}  (asset hash {lin.get('code_hash')})"),
        ("evaluation", str(lin.get("evaluation"))),
        ("gate", f"{'passed' if lin.get('gate', {}).get('passed') else 'failed'} {lin.get('gate', {}).get('reasons')}"),
        ("model package", f"{pkg['arn']}  [{pkg['status']}]"),
    ]
    for i, (label, text) in enumerate(steps):
        console.print(f"{'└─' if i == len(steps) - 1 else '├─'} [bold]{label}[/]: {text}")


def _set_status(package: str, status: str, reason: str, workdir: Path, aws: bool, profile: str | None) -> None:
    try:
        result = _registry(workdir, aws, profile).set_status(_ref(package), status, reason)
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]✓[/] {package}: {result['status']}")


@app.command()
def approve(
    package: Annotated[str, typer.Argument(help="MODEL:VERSION")],
    reason: Annotated[str, typer.Option(help="Why (recorded as the approval description).")] = "approved by hand",
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """Approve a model version (manual approval mode); deployment follows the approval."""
    _set_status(package, "Approved", reason, workdir, aws, profile)


@app.command()
def reject(
    package: Annotated[str, typer.Argument(help="MODEL:VERSION")],
    reason: Annotated[str, typer.Option(help="Why (recorded as the approval description).")] = "rejected by hand",
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """Reject a model version."""
    _set_status(package, "Rejected", reason, workdir, aws, profile)


if __name__ == "__main__":
    app()
