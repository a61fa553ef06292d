"""``mlops``: the command line for the platform and its local twin."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from mlops import executions as ex
from mlops.config import ConfigError, ModelConfig
from mlops.naming import batch_upload_prefix
from mlops.platform import Platform, PlatformError
from mlops.s3io import S3Location
from mlops.services.registry import PackageRef, RegistryClient
from mlops.settings import model_config
from mlops.synth import SynthError, ensure_synthesized
from mlops.twin import control

app = typer.Typer(help="Serverless MLOps on AWS CDK, with a local twin.", no_args_is_help=True)
local = typer.Typer(help="The local twin: the synthesized app running on 127.0.0.1.", no_args_is_help=True)
app.add_typer(local, name="local")
console = Console(width=None if sys.stdout.isatty() else 140)  # logs and CI: wide enough for tables

MODEL_DEMO = "tumor-classifier"
Workdir = Annotated[Path, typer.Option(help="Twin work directory (state, objects, executions, logs).")]
CdkOut = Annotated[Path, typer.Option(help="Cloud assembly directory.")]
AwsFlag = Annotated[bool, typer.Option("--aws", help="Use real AWS (your profile) instead of the running twin.")]
Profile = Annotated[str | None, typer.Option(help="AWS profile, with --aws.")]
Port = Annotated[int, typer.Option(help="Port of the twin's one URL on 127.0.0.1 (every AWS API).")]
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


def _start(
    workdir: Path, cdk_out: Path, port: int, synth: bool, time_scale: float = 1.0, iam: bool = True
) -> control.TwinHandle:
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
            handle = control.start(cdk_out, workdir, port=port, time_scale=time_scale, iam=iam)
        except control.TwinError as exc:
            _fail(str(exc))
    _print_twin(handle)
    return handle


def _print_twin(handle: control.TwinHandle) -> None:
    state, report = handle.state, handle.state["report"]
    console.print(f"[green]✓[/] twin running (pid {state['pid']}), work dir [bold]{handle.workdir}[/]")
    console.print("every AWS API of the app at one URL (the AWS CLI, boto3 and `mlops` use it):")
    console.print(f"  [bold]export AWS_ENDPOINT_URL={handle.endpoint}[/]", markup=True)
    console.print("  [dim]try: aws s3 ls; aws stepfunctions list-state-machines; aws cloudwatch describe-alarms[/]")
    console.print(f"  [dim]InvokeEndpoint: {handle.endpoint}/endpoints/<model>/invocations (mlops predict)[/]")
    if state.get("iam") == "off":
        console.print("[yellow]IAM is not enforced[/] (--iam off): calls AWS would refuse pass here")
    table = Table(title="Local twin", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("where")
    for name, arn in state["state_machines"].items():
        table.add_row("state machine", f"{name}\n[dim]{arn}[/]")
    for fn in state["functions"]:
        table.add_row("Lambda function", fn)
    for key, value in state["outputs"].items():
        if ".ExportsOutput" not in key:  # CDK's cross-stack exports: plumbing, not for people
            table.add_row(f"output {key}", str(value))
    console.print(table)
    for layer in dict.fromkeys(report.get("substituted_layers", [])):  # once each, however many functions use it
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
    port: Annotated[
        int, typer.Option(help="Port of the twin's one URL on 127.0.0.1 (every AWS API).")
    ] = control.DEFAULT_PORT,
    synth: Annotated[bool, typer.Option(help="Synthesize first if the app changed.")] = True,
    time_scale: TimeScale = 1.0,
    iam: Annotated[
        str,
        typer.Option(help="on: every call of the app's roles is checked against their policies; off: debugging only."),
    ] = "on",
) -> None:
    """Synthesize if needed, start the twin in the background and print its endpoints."""
    if iam not in ("on", "off"):
        _fail(f"--iam is on or off, not {iam!r}")
    _start(workdir, cdk_out, port, synth, time_scale, iam=iam == "on")


@local.command("down")
def local_down(workdir: Workdir = Path(".mlops")) -> None:
    """Stop the twin (uploaded objects and executions stay in the work directory)."""
    if control.stop(workdir):
        console.print(f"[green]✓[/] twin stopped; state kept in {workdir}")
    else:
        console.print("no twin was running")


@local.command("reset")
def local_reset(workdir: Workdir = Path(".mlops")) -> None:
    """Forget everything the twin holds: stop it, then remove its state (objects, registry, executions, logs, clock)."""
    if control.stop(workdir):
        console.print("twin stopped")
    removed = control.reset(workdir)
    if not removed:
        console.print(f"nothing to remove in {workdir}")
        return
    for path, what in removed:
        console.print(f"removed {path}  [dim]({what})[/]")
    console.print("[green]✓[/] the next `mlops local up` starts from an empty account")


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
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """Upload a dataset to the app's incoming bucket, as a user or a job would to S3."""
    platform = _platform(workdir, aws, profile)
    try:
        dest = S3Location(platform.bucket("incoming"), f"incoming/{model}/{key_name or file.name}")
        platform.client("s3").upload_file(str(file), dest.bucket, dest.key)
    except (PlatformError, ClientError, BotoCoreError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]✓[/] uploaded {file} ({file.stat().st_size:,} bytes) to {dest.uri}")


def _duration(execution: dict[str, Any]) -> str:
    if not execution.get("stop_date"):
        return "running"
    start = datetime.fromisoformat(str(execution["start_date"]))
    stop = datetime.fromisoformat(str(execution["stop_date"]))
    return f"{(stop - start).total_seconds():.2f} s"


def _platform(workdir: Path, aws: bool, profile: str | None) -> Platform:
    """The app on AWS (``--aws``) or on the running twin: the same API calls either way."""
    if aws:
        return Platform.aws(profile)
    return Platform.twin(_running(workdir).endpoint)


STATUS_COLOURS = {"SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "ABORTED": "red", "RUNNING": "yellow"}


@app.command()
def executions(
    execution: Annotated[
        str | None, typer.Argument(help="One execution (name, name prefix or ARN): the whole story.")
    ] = None,
    workdir: Workdir = Path(".mlops"),
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    machine: Annotated[str | None, typer.Option(help="Only validation, training, deploy or batch.")] = None,
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """State machine executions: status, duration, and where and why failures happened."""
    platform = _platform(workdir, aws, profile)
    try:
        if execution:
            _print_detail(ex.detail(platform, ex.find(platform, execution)))
            return
        found = ex.list_executions(platform, [machine] if machine else None, limit)
    except (LookupError, PlatformError, ClientError) as exc:
        _fail(str(exc))
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("started", "machine", "execution", "status", "seconds", "failed state: error"):
        table.add_column(col)
    for e in found:
        colour = STATUS_COLOURS.get(e.status, "white")
        failure = f"{e.failed_state}: {e.error}" if e.error else ""
        table.add_row(
            e.start.strftime("%Y-%m-%d %H:%M:%S"),
            e.kind,
            e.name,
            f"[{colour}]{e.status}[/]",
            f"{e.seconds:.1f}" if e.seconds is not None else "running",
            failure,
        )
    console.print(table if found else f"no executions on {platform.label} yet")
    if any(e.error for e in found):
        console.print("[dim]the whole cause of one: mlops executions <execution>[/]")


def _print_detail(found: ex.ExecutionDetail) -> None:
    e = found.summary
    colour = STATUS_COLOURS.get(e.status, "white")
    took = f"{e.seconds:.1f} s" if e.seconds is not None else "running"
    console.print(f"[bold]{e.kind}[/] execution [bold]{e.name}[/]: [{colour}]{e.status}[/] ({took})")
    console.print(f"[dim]{e.arn}[/]")
    table = Table(title="states", header_style="bold")
    for col in ("state", "entered", "seconds", "failed attempts"):
        table.add_column(col)
    for state in found.states:
        seconds = f"{state.seconds:.2f}" if state.seconds is not None else "-"
        failures = f"{state.failures} ({state.failed})" if state.failures else ""
        table.add_row(state.name, state.entered.strftime("%H:%M:%S.%f")[:-3], seconds, failures)
    console.print(table)
    if e.error:
        console.print(f"[bold red]failed in {e.failed_state or '?'}[/]: {e.error}")
        console.print(_pretty(e.cause), markup=False)
    console.print("[bold]input[/]")
    console.print(_pretty(found.input), markup=False)
    if found.output is not None:
        console.print("[bold]output[/]")
        console.print(_pretty(found.output), markup=False)
    if found.links:
        console.print("[bold]objects it names[/] (aws s3 cp <uri> -)")
        for uri in found.links:
            console.print(f"  {uri}", markup=False)


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, default=str)


@local.command("demo")
def local_demo(
    workdir: Workdir = Path(".mlops"),
    cdk_out: CdkOut = Path("cdk.out"),
    port: Port = control.DEFAULT_PORT,
    rows: Annotated[int, typer.Option(help="Rows per demo dataset.")] = 5000,
    time_scale: TimeScale = 0.005,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each stage.")] = 600,
) -> None:
    """The whole loop on the twin: upload, validate (and quarantine), train, evaluate, register,
    deploy, predict, drift, alarm, retrain, canary deployment. Each run continues the story and
    ends with a newer version serving; `mlops local reset` starts over."""
    from mlops import demo

    try:
        _demo(demo, workdir, cdk_out, port, rows, time_scale, timeout)
    except demo.DemoFailed as exc:
        console.print(f"[bold red]the demo stopped:[/] {exc}")
        if exc.hint:
            console.print(f"[bold]next:[/] {exc.hint}")
        raise typer.Exit(1) from None
    except (PlatformError, ClientError, BotoCoreError, control.TwinError) as exc:
        _fail(f"{exc} (is the twin still running? `mlops local status`)")


def _demo(demo: Any, workdir: Path, cdk_out: Path, port: int, rows: int, time_scale: float, timeout: float) -> None:
    from examples.generate_data import generate, write_csv

    model = MODEL_DEMO
    config = _config(model)
    times = demo.Times()
    times.mark("start")
    console.rule("[bold]1. the app, synthesized and running on the twin")
    handle = _start(workdir, cdk_out, port, synth=True, time_scale=time_scale)
    story = demo.Story(console, handle, config, timeout)
    before = story.versions()
    run = len({v["dataset_version"] for v in before}) + 1
    if before:
        serving = story.serving()
        console.print(
            f"this work directory has {len(before)} version(s) of {model}"
            + (f", version {serving} serving" if serving else "")
            + f": this run continues the story (run {run}); `mlops local reset` starts over"
        )
    times.mark("twin running")
    platform = story.platform
    s3 = platform.client("s3")

    console.rule("[bold]2. demo data")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    files = {}
    for variant in ("good", "bad"):
        path = write_csv(generate(model, variant, rows, seed=run), workdir / "demo" / f"{variant}-{stamp}.csv")
        files[variant] = path
        console.print(f"generated {variant} dataset {path} ({path.stat().st_size:,} bytes)")

    console.rule("[bold]3. upload to S3 (what a data scientist or a job does)")
    incoming = platform.bucket("incoming")
    keys = {}
    since = datetime.now(UTC)  # execution dates are wall-clock times
    for variant, path in files.items():
        keys[variant] = f"incoming/{model}/{path.name}"
        s3.upload_file(str(path), incoming, keys[variant])
        console.print(f"uploaded s3://{incoming}/{keys[variant]}")

    console.rule("[bold]4. S3 event → EventBridge rule → validation state machine → Lambda")
    with console.status("waiting for the validation executions..."):
        results = story.validations(keys, since)
    for variant, result in results.items():
        _print_run(variant, result)

    console.rule("[bold]5. the results, in the buckets")
    for variant, result in results.items():
        output = _validation_output(result.output)
        if output.get("report_uri"):
            report = S3Location.parse(output["report_uri"])
            text = s3.get_object(Bucket=report.bucket, Key=report.key.replace(".json", ".txt"))["Body"].read()
            console.print(f"[bold]{variant} dataset report[/] ({output['report_uri']}):")
            console.print(text.decode(), markup=False)
        for label in ("validated_uri", "profile_uri", "quarantine_uri"):
            if output.get(label):
                console.print(f"  {label.replace('_uri', '')}: {output[label]}")
    times.mark("validated")
    version = _validation_output(results["good"].output).get("dataset_version")
    if not version:
        raise demo.DemoFailed(
            "the good dataset did not pass validation: see its report above",
            f"mlops executions {results['good'].name}",
        )

    console.rule("[bold]6. validated data → training → evaluation → gate → model registry")
    since = results["good"].started
    with console.status("training state machine: SageMaker training job, then evaluation job..."):
        training = story.training_of(version, since)
    _print_run("training", training)
    models(model, workdir=workdir, aws=False, profile=None)
    registered = training.end_state == "ModelRegistered"
    if registered:
        lineage(model, workdir=workdir, aws=False, profile=None)
    else:
        console.print(
            f"[yellow]the candidate was not approved[/] ({demo.reason(training)}); "
            "the champion keeps serving and the story goes on with it"
        )
    times.mark("trained")

    if registered:
        console.rule("[bold]7. approved package → EventBridge → deploy state machine → SageMaker endpoint")
        with console.status("deploy state machine: model, endpoint config with data capture, endpoint..."):
            deployment = story.deployment(training.started)
        _print_run("deployment", deployment)
        console.print(f"endpoint [bold]{model}[/] serves version {story.serving()}")
        times.mark("deployed")

    console.rule("[bold]8. an application calls the endpoint (boto3 sagemaker-runtime InvokeEndpoint)")
    demo_predictions(demo, handle, config, generate(model, "good", 5, seed=42))
    console.print(f"[dim]try: mlops predict {model} --file <csv>[/]")

    console.rule("[bold]9. the world changes: drifted traffic with new labels → drift alarm → retrain → canary")
    console.print(
        f"the monitor runs every {config.monitoring.schedule_minutes} twin minutes "
        f"(the twin's clock runs {1 / time_scale:.0f}x fast); its metrics feed the drift alarm, which starts a "
        "retrain when there is new labelled data to learn from"
    )
    story.wait_for_calm(generate(model, "good", 2000, seed=100 + run))
    story.wait_for_cooldown()
    since = datetime.now(UTC)  # execution dates are wall-clock times
    drifted = generate(model, "drifted", 3000, seed=7 + run)
    story.send_labelled(drifted.iloc[:300], f"drift-run{run}-{stamp}")
    retrain, redeploy = story.drift(drifted.iloc[300:], since)
    _print_run("retraining", retrain)
    _print_run("canary deployment", redeploy)
    times.mark("retrained and redeployed")

    console.rule("[bold]10. summary")
    models(model, workdir=workdir, aws=False, profile=None)
    console.print(demo.AlarmHistory(platform, model, story.began).table())
    console.print(times.table())
    console.print(f"endpoint [bold]{model}[/] now serves version {story.serving()}")
    console.rule("[bold]where everything is")
    console.print(f"every AWS API: export AWS_ENDPOINT_URL={handle.endpoint}  (try: aws s3 ls)")
    console.print(
        "runs: `mlops executions` (one in full: `mlops executions <name>`); endpoints, alarms: `mlops status`"
    )
    console.print(f"SNS notifications: {workdir / 'notifications.jsonl'}   logs: {workdir / 'logs'}")
    console.print("the twin keeps running: `mlops local down` stops it; run the demo again to continue the story")


def demo_predictions(demo: Any, handle: control.TwinHandle, config: Any, rows: Any) -> None:
    answer = demo.runtime_client(handle).invoke_endpoint(
        EndpointName=config.name,
        ContentType="text/csv",
        Accept="application/json",
        Body=demo.feature_frame(rows, config).to_csv(header=False, index=False),
    )
    predictions = json.loads(answer["Body"].read())["predictions"]
    variant = answer["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-invoked-production-variant", "?")
    table = Table(title=f"InvokeEndpoint {config.name} (variant {variant})", header_style="bold")
    shown = [c.name for c in config.dataset.features][:3]
    for col in [*shown, "prediction", "probabilities"]:
        table.add_column(col)
    for (_, row), p in zip(rows.iterrows(), predictions, strict=False):
        probs = p.get("probabilities")
        table.add_row(
            *(str(row[c]) for c in shown),
            str(p.get("label", p.get("prediction"))),
            ", ".join(f"{k}: {v:.3f}" for k, v in probs.items()) if probs else "",
        )
    console.print(table)


def _print_run(label: str, run: Any) -> None:
    colour = "green" if run.status == "SUCCEEDED" else "red"
    console.print(
        f"[bold]{label}[/]: [{colour}]{run.status}[/] at {run.end_state} in {run.seconds:.1f} s  [dim]{run.name}[/]"
    )


def _validation_output(output: Any) -> dict[str, Any]:
    """The validation Lambda's result within the execution's output (or the output itself)."""
    if isinstance(output, dict):
        if "report_uri" in output:
            return output
        for value in output.values():
            found = _validation_output(value)
            if found:
                return found
    return {}


@app.command()
def status(
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """What is deployed: each endpoint with the version it serves, and the state of every alarm of the app."""
    platform = _platform(workdir, aws, profile)
    try:
        endpoints = platform.client("sagemaker").list_endpoints(MaxResults=100)["Endpoints"]
        alarms = platform.client("cloudwatch").describe_alarms(AlarmNamePrefix="mlops-")["MetricAlarms"]
    except (ClientError, BotoCoreError) as exc:
        _fail(str(exc))
        return
    table = Table(title=f"endpoints on {platform.label}", header_style="bold")
    for col in ("endpoint", "status", "endpoint config", "last modified"):
        table.add_column(col)
    for ep in endpoints:
        colour = {"InService": "green", "Failed": "red"}.get(ep["EndpointStatus"], "yellow")
        described = platform.client("sagemaker").describe_endpoint(EndpointName=ep["EndpointName"])
        table.add_row(
            ep["EndpointName"],
            f"[{colour}]{ep['EndpointStatus']}[/]",
            described.get("EndpointConfigName", ""),
            str(ep.get("LastModifiedTime", ""))[:19],
        )
    console.print(table if endpoints else f"no endpoints on {platform.label}")
    table = Table(title="alarms", header_style="bold")
    for col in ("alarm", "state", "since", "reason"):
        table.add_column(col)
    for alarm in alarms:
        colour = {"OK": "green", "ALARM": "red"}.get(alarm["StateValue"], "yellow")
        table.add_row(
            alarm["AlarmName"],
            f"[{colour}]{alarm['StateValue']}[/]",
            str(alarm.get("StateUpdatedTimestamp", ""))[:19],
            str(alarm.get("StateReason", ""))[:90],
        )
    console.print(table if alarms else "no alarms")


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
    client = _platform(workdir, aws, profile).client("sagemaker-runtime")
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


@app.command()
def batch(
    model: Annotated[str, typer.Argument(help="Model name: the file lands in batch/<model>/ of the incoming bucket.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    wait: Annotated[bool, typer.Option(help="Wait for the predictions and the report (--no-wait: start only).")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the report.")] = 3600,
    key_name: Annotated[str | None, typer.Option(help="Object name (default: the file name).")] = None,
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """Score a file with the model's approved champion (a SageMaker batch transform): one prediction per row."""
    from mlops.services import batch as batch_service  # here: polars only for this command

    _config(model)
    platform = _platform(workdir, aws, profile)
    try:
        s3 = platform.client("s3")
        dest = S3Location(platform.bucket("incoming"), batch_upload_prefix(model) + (key_name or file.name))
        s3.upload_file(str(file), dest.bucket, dest.key)
        version = s3.head_object(Bucket=dest.bucket, Key=dest.key).get("VersionId")
        run = batch_service.run_name(dest.key, version)
        report = batch_service.report_location(platform.bucket("artifacts"), model, run)
    except (PlatformError, ClientError, BotoCoreError) as exc:
        _fail(str(exc))
        return
    console.print(f"[green]✓[/] uploaded {file} ({file.stat().st_size:,} bytes) to {dest.uri}")
    console.print(f"  run {run}: report at {report.uri}")
    if not wait:
        console.print(f"[dim]follow it: mlops executions --machine batch; the report appears at {report.uri}[/]")
        return
    found = _wait_for_batch(platform, report, batch_service.transform_job_name(model, run), timeout)
    colour = {"scored": "green", "refused": "red", "failed": "red"}.get(str(found.get("status")), "white")
    console.print(f"[{colour}]{found.get('status')}[/]: {found.get('summary')}")
    for problem in found.get("problems", []):
        console.print(f"  - {problem['message']}")
    if found.get("predictions_uri"):
        console.print(f"  predictions: {found['predictions_uri']}")
    console.print(f"  report:      {report.uri}")
    if found.get("status") != "scored":
        raise typer.Exit(1)


def _wait_for_batch(platform: Platform, report: S3Location, job: str, timeout: float) -> dict[str, Any]:
    """Poll for the run's report, saying what the run is doing (transform job status) while it waits."""
    s3, sm = platform.client("s3"), platform.client("sagemaker")
    started, shown = time.monotonic(), ""
    with console.status("waiting for the batch run to start") as spinner:
        while time.monotonic() - started < timeout:
            try:
                body = s3.get_object(Bucket=report.bucket, Key=report.key)["Body"].read()
                return dict(json.loads(body))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "AccessDenied"):
                    _fail(str(exc))
            try:
                described = sm.describe_transform_job(TransformJobName=job)
                stage = f"transform job {job}: {described['TransformJobStatus']}"
            except ClientError:
                stage = "checking the file against the model's features"
            if stage != shown:
                console.print(f"  {time.monotonic() - started:6.1f} s  {stage}")
                shown = stage
            spinner.update(f"{stage} ({time.monotonic() - started:.0f} s)")
            time.sleep(1.0)
    _fail(f"no report after {timeout:.0f} s at {report.uri}; see `mlops executions --machine batch`")
    return {}


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
    platform = _platform(workdir, aws, profile)
    return RegistryClient(platform.client("sagemaker"), platform.client("s3"))


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
def datasets(
    model: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    workdir: Workdir = Path(".mlops"),
    aws: AwsFlag = False,
    profile: Profile = None,
) -> None:
    """What became of each uploaded dataset: validated, quarantined, queued, training, trained in run X,
    failed, or superseded by a newer dataset."""
    from mlops.services.fates import FATES_PREFIX, FateStore

    platform = _platform(workdir, aws, profile)
    s3, bucket = platform.client("s3"), platform.bucket("artifacts")
    try:
        if model:
            names = [model]
        else:
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{FATES_PREFIX}/", Delimiter="/")
            names = [p["Prefix"].split("/")[1] for p in listed.get("CommonPrefixes", [])]
        store = FateStore(s3, bucket)
        fates = [(name, fate) for name in names for fate in store.list_fates(name)]
    except (ClientError, BotoCoreError) as exc:
        _fail(str(exc))
        return
    table = Table(show_header=True, header_style="bold")
    for col in ("model", "dataset version", "fate", "runs", "source", "updated", "detail"):
        table.add_column(col)
    colours = {"trained": "green", "quarantined": "red", "failed": "red", "superseded": "dim"}
    for name, fate in fates:
        source = fate.get("source") or {}  # the validation's record of the upload (absent for some errors)
        table.add_row(
            name,
            str(fate.get("dataset_version", "")),
            f"[{colours.get(fate.get('state', ''), 'yellow')}]{fate.get('state', '')}[/]",
            ", ".join(str(r["run_id"]) for r in fate.get("runs", [])),
            str(source.get("uri", "")),
            str(fate.get("updated_at", ""))[:19],
            str(fate.get("detail", ""))[:100],
        )
    console.print(table if fates else "no datasets recorded" + (f" for {model}" if model else ""))


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
        *([("image", str(lin["image_uri"]))] if lin.get("image_uri") else []),
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
