"""Twin endpoint latency and throughput against the handler's ``predict_fn``, in the same run.

Trains the tumor-classifier demo model with ``pipelines/train.py`` under SageMaker's
contract (temp dirs shaped like ``/opt/ml``), then measures one CSV row per request:

1. ``model.predict``: the fitted pipeline's ``predict`` on a 1-row DataFrame already
   prepared by the handler's ``input_fn`` (for reference);
2. ``predict_fn``: the handler's ``predict_fn`` on the same parsed row: what the endpoint
   calls, so the baseline the overhead is measured against;
3. ``handler``: ``input_fn`` -> ``predict_fn`` -> ``output_fn`` in-process (``LoadedModel.handle``);
4. ``runtime.invoke``: ``EndpointRuntime.invoke`` in-process (variant pick, metrics, capture);
5. ``http.client``: ``POST /endpoints/bench/invocations`` on the twin's gateway (``RuntimeApi``)
   over keep-alive connections (one per thread);
6. ``boto3``: ``sagemaker-runtime`` ``invoke_endpoint`` against the same server.

The model is trained and served as on the twin: ``train.py`` and ``inference.py`` from the
source dir the stacks ship, on the scikit-learn image's environment (its Python and packages
plus what the source dir ships vendored); the endpoint's model server runs a worker process
per vCPU. The in-process rows 1-3 load the handler in this process (the host's packages) as
the floor. The server runs in a child process started and stopped by this script (as on the
twin, where clients are other processes), with data capture on at 100% into a temp dir.
Each contender runs at concurrency 1, 16 and 64 (threads), counting errors and connection
resets (a reset client reconnects and goes on); then a soak holds c=64 for ``--soak-seconds``
over keep-alive connections and over a new connection per request. Prints the tables and
PASS/FAIL, and writes ``bench/results/endpoint.md``.

    python bench/endpoint.py                 # 2000 requests per cell, 60 s soaks
    python bench/endpoint.py --requests 500 --soak-seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import finish  # noqa: E402  (bench/, the script's own directory)

from mlops.sagemaker_contract import training_env  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "endpoint.md"
MODEL = "tumor-classifier"
ENDPOINT = "bench"
CSV, JSON = "text/csv", "application/json"
TARGET_MS = 2.0
WARMUP = 200
SOAK_CONCURRENCY = 64


# -- the model: train.py under SageMaker's contract, in the image's environment ---------------------------
def source_dir(root: Path) -> Path:
    """The source dir the stacks ship (sourcedir.tar.gz), extracted."""
    from stacks.sagemaker_code import build_sourcedir

    code = root / "code"
    with tarfile.open(build_sourcedir(root / "asset")) as tar:
        tar.extractall(code, filter="data")
    return code


def image_uri() -> str:
    from mlops.twin.sagemaker.images import image_uri as uri
    from stacks.sagemaker_code import sklearn_container_version

    return uri("sklearn", sklearn_container_version())


def train_model(root: Path, code: Path, rows: int, seed: int) -> tuple[Path, list[str]]:
    """Train the demo model into ``root/opt/ml/model``; returns the model dir and CSV request rows."""
    from examples.generate_data import generate
    from mlops.config import load_config
    from mlops.twin.pyenvs import job_environment
    from mlops.twin.sagemaker.images import environment_for_uri

    ml = root / "opt" / "ml"
    data = generate(MODEL, "good", rows, seed=seed)
    n = len(data)
    parts = {"train": data.iloc[: int(n * 0.7)], "validation": data.iloc[int(n * 0.7) : int(n * 0.85)]}
    for name, part in parts.items():
        (ml / "input/data" / name).mkdir(parents=True)
        part.to_csv(ml / "input/data" / name / "data.csv", index=False)
    config = load_config(ROOT / "configs" / f"{MODEL}.yaml")
    (ml / "input/data/config").mkdir(parents=True)
    (ml / "input/data/config/model-config.json").write_text(json.dumps(config.model_dump(mode="json")))
    image = environment_for_uri(image_uri())
    python = job_environment(root / "env", [image.env]).python  # what the image lacks: the source dir's vendor/
    env = {"HOME": os.environ.get("HOME", "/tmp"), "PATH": f"{python.parent}:/usr/bin:/bin", "PYTHONPATH": str(code)}
    env |= training_env(ml, ["train", "validation", "config"])
    done = subprocess.run([str(python), "train.py"], env=env, cwd=code, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"train.py failed:\n{done.stderr[-3000:]}")
    metadata = json.loads((ml / "model/model-metadata.json").read_text())
    names = [f["name"] if isinstance(f, dict) else f for f in metadata["features"]]
    test = data.iloc[int(n * 0.85) :][names]
    requests = [",".join("" if v != v else str(v) for v in row) for row in test.itertuples(index=False)]
    return ml / "model", requests


# -- the twin's serving stack ----------------------------------------------------------------
def build_runtime(model_dir: Path, code: Path, capture_dir: Path) -> Any:
    """EndpointRuntime with one variant (the image's model server) and 100% data capture to ``capture_dir``."""
    from mlops.twin.cloudwatch.alarms import MetricStore
    from mlops.twin.sagemaker.serving import (
        CaptureConfig,
        CaptureWriter,
        Endpoint,
        EndpointRuntime,
        LoadedModel,
        Variant,
    )

    def put_object(bucket: str, key: str, body: bytes) -> None:
        path = capture_dir / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    runtime = EndpointRuntime(MetricStore(), CaptureWriter(put_object))
    model = LoadedModel(
        ENDPOINT, model_dir, code, "inference.py", image_uri=image_uri(), log_path=capture_dir.parent / "server.log"
    ).load()
    capture = CaptureConfig("s3://bench-capture/datacapture", sampling_percentage=100)
    runtime.set_endpoint(Endpoint(ENDPOINT, [Variant("AllTraffic", model)], capture, f"{ENDPOINT}-config"))
    return runtime


def serve(model_dir: Path, code: Path, capture_dir: Path) -> None:
    """Child process: serve the model until stdin closes, then flush capture and report its count."""
    from mlops.twin.gateway import Gateway
    from mlops.twin.iam import Principals
    from mlops.twin.sagemaker.runtime_api import RuntimeApi

    runtime = build_runtime(model_dir, code, capture_dir)
    server = Gateway(Principals("123456789012"))
    server.mount_wsgi("sagemaker-runtime", RuntimeApi(runtime))
    print(server.start(), flush=True)
    sys.stdin.read()
    server.stop()
    runtime.close()
    runtime.capture.flush()
    records = sum(len(p.read_text().splitlines()) for p in capture_dir.rglob("*.jsonl"))
    print(json.dumps({"captured": records}), flush=True)


# -- measurement -------------------------------------------------------------------------------
def percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = (len(sorted_ms) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (k - lo)


def is_reset(exc: BaseException) -> bool:
    """A connection the server dropped (reset, closed mid-request), as opposed to an error answer."""
    import botocore.exceptions

    dropped = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)
    return isinstance(exc, (*dropped, botocore.exceptions.ConnectionError))


def run(
    make_call: Callable[[], Callable[[int], None]], requests: int, concurrency: int, seconds: float | None = None
) -> dict[str, Any]:
    """``make_call()`` gives each thread its own ``call(i)`` (own connection/client state). Runs ``requests``
    calls in all, or as many as fit in ``seconds``; a failed call is counted (error, or reset when the
    connection was dropped) and the thread goes on, reconnecting after a reset."""
    per_thread = [requests // concurrency + (t < requests % concurrency) for t in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures: list[list[BaseException]] = [[] for _ in range(concurrency)]
    setup_errors: list[BaseException] = []
    ready = threading.Barrier(concurrency + 1)
    go = threading.Event()
    setup = threading.Lock()
    stop_at: list[float] = [float("inf")]

    def worker(t: int) -> None:
        try:
            with setup:  # connections opened and warmed one thread at a time, then all start together
                call = make_call()
                for i in range(max(WARMUP // concurrency, 10)):
                    call(i)
        except BaseException as exc:  # report it after the barrier
            setup_errors.append(exc)
            ready.wait()
            return
        ready.wait()
        go.wait()
        out, failed = latencies[t], failures[t]
        clock = time.perf_counter
        i = 0
        while (i < per_thread[t]) if seconds is None else (clock() < stop_at[0]):
            started = clock()
            try:
                call(t * 100_003 + i)
            except Exception as exc:
                failed.append(exc)
                if is_reset(exc):
                    call = make_call()
            else:
                out.append((clock() - started) * 1e3)
            i += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    if seconds is not None:
        stop_at[0] = started + seconds
    go.set()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if setup_errors:
        raise setup_errors[0]
    flat = sorted(x for lat in latencies for x in lat)
    failed = [exc for f in failures for exc in f]
    resets = sum(is_reset(exc) for exc in failed)
    first = next((f"{type(e).__name__}: {str(e)[:160]}" for e in failed if not is_reset(e)), "")
    return {
        "p50": percentile(flat, 0.50),
        "p99": percentile(flat, 0.99),
        "rps": len(flat) / wall,
        "n": len(flat),
        "errors": len(failed) - resets,
        "resets": resets,
        "first_error": first,
        "seconds": wall,
    }


SOAK_NEW_CONNECTION = "HTTP, http.client new connection per request"
SOAKED = ("HTTP, http.client keep-alive", SOAK_NEW_CONNECTION)


def load_handler(code: Path) -> Any:
    spec = importlib.util.spec_from_file_location("bench_inference", code / "inference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(code))
    spec.loader.exec_module(module)
    # the model was pickled by the image's scikit-learn; the host's may be another patch release
    warnings.filterwarnings("ignore", message="Trying to unpickle estimator")
    return module


def contenders(runtime: Any, url: str, rows: list[str]) -> dict[str, Callable[[], Callable[[int], None]]]:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials

    credentials = Credentials("bench", "bench")

    variant = runtime.endpoints[ENDPOINT].variants[0]
    module = load_handler(variant.model.code_dir)  # in this process, on the host's packages: the floor
    served = module.model_fn(str(variant.model.model_dir))
    bodies = [r.encode() for r in rows]
    frames = [module.input_fn(b, CSV) for b in bodies]  # parsed once: the raw rows measure the model only
    pipeline = served.pipeline
    host, port = url.removeprefix("http://").split(":")
    path = f"/endpoints/{ENDPOINT}/invocations"
    headers = {"Content-Type": CSV, "Accept": JSON}
    boto_config = Config(retries={"max_attempts": 1, "mode": "standard"})  # no retry hides a slow request
    session = boto3.session.Session()
    client_lock = threading.Lock()

    def raw() -> Callable[[int], None]:
        return lambda i: pipeline.predict(frames[i % len(frames)])

    def predict_fn() -> Callable[[int], None]:
        return lambda i: module.predict_fn(frames[i % len(frames)], served)

    def handler() -> Callable[[int], None]:
        def call(i: int) -> None:
            body = bodies[i % len(bodies)].decode()
            module.output_fn(module.predict_fn(module.input_fn(body, CSV), served), JSON)

        return call

    def invoke() -> Callable[[int], None]:
        return lambda i: runtime.invoke(ENDPOINT, bodies[i % len(bodies)], CSV, JSON)

    def signed(body: bytes, extra: dict[str, str] | None = None) -> dict[str, str]:
        """SigV4 headers, as any SDK sends them: the gateway knows the service from the signature."""
        request = AWSRequest("POST", f"{url}{path}", data=body, headers={**headers, **(extra or {})})
        SigV4Auth(credentials, "sagemaker", "us-east-1").add_auth(request)
        return dict(request.headers.items())

    def http_client() -> Callable[[int], None]:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)

        def call(i: int) -> None:
            body = bodies[i % len(bodies)]
            conn.request("POST", path, body=body, headers=signed(body))
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")

        return call

    def http_per_request() -> Callable[[int], None]:
        def call(i: int) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                body = bodies[i % len(bodies)]
                conn.request("POST", path, body=body, headers=signed(body, {"Connection": "close"}))
                response = conn.getresponse()
                body = response.read()
            finally:
                conn.close()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")

        return call

    def boto() -> Callable[[int], None]:
        with client_lock:  # one client (own connection pool) per thread, as threaded boto3 code does
            client = session.client(
                "sagemaker-runtime",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
                config=boto_config,
            )

        def call(i: int) -> None:
            out = client.invoke_endpoint(
                EndpointName=ENDPOINT, Body=bodies[i % len(bodies)], ContentType=CSV, Accept=JSON
            )
            out["Body"].read()

        return call

    return {
        "model.predict (raw)": raw,
        "predict_fn": predict_fn,
        "handler: input_fn+predict_fn+output_fn": handler,
        "EndpointRuntime.invoke (in-process)": invoke,
        "HTTP, http.client keep-alive": http_client,
        "HTTP, boto3 invoke_endpoint": boto,
        SOAK_NEW_CONNECTION: http_per_request,
    }


# -- report ------------------------------------------------------------------------------------
def table(results: dict[str, dict[int, dict[str, Any]]], requests: int, captured: int | None, workers: int) -> str:
    levels = sorted({c for by_level in results.values() for c in by_level})
    cols = " | ".join(f"c={c} p50 ms | c={c} p99 ms | c={c} req/s" for c in levels)
    head = f"| path | {cols} | errors | resets |"
    lines = [
        f"One CSV row per request, {requests:,} requests per cell after warm-up; tumor-classifier "
        f"(GradientBoosting, config hyperparameters) trained and served on the scikit-learn image's environment "
        f"(Python {images_python()}); client {platform.python_version()}, {os.cpu_count()} CPUs. In-process rows "
        "run in the client process on the host's packages; the HTTP server runs in its own process, its model server "
        f"with {workers} worker process(es), data capture at 100% "
        f"({captured if captured is not None else '?'} records written). Errors and resets: over all levels.",
        "",
        head,
        "|---|" + "---:|" * (3 * len(levels) + 2),
    ]
    for name, by_level in results.items():
        cells = " | ".join(
            f"{by_level[c]['p50']:.3f} | {by_level[c]['p99']:.3f} | {by_level[c]['rps']:,.0f}" for c in levels
        )
        errors = sum(r["errors"] for r in by_level.values())
        resets = sum(r["resets"] for r in by_level.values())
        lines.append(f"| {name} | {cells} | {errors} | {resets} |")
    return "\n".join(lines)


def soak_table(soaks: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"Soak: c={SOAK_CONCURRENCY} client threads against the HTTP server for the time shown.",
        "",
        "| path | seconds | requests | req/s | p50 ms | p99 ms | errors | resets | first error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in soaks.items():
        lines.append(
            f"| {name} | {r['seconds']:.0f} | {r['n']:,} | {r['rps']:,.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
            f"{r['errors']} | {r['resets']} | {r['first_error'] or '-'} |"
        )
    return "\n".join(lines)


def images_python() -> str:
    from mlops.twin.sagemaker.images import environment_for_uri

    return environment_for_uri(image_uri()).python_version


def targets(
    results: dict[str, dict[int, dict[str, Any]]], soaks: dict[str, dict[str, Any]]
) -> tuple[str, list[tuple[str, bool]]]:
    p50 = {name: r[1]["p50"] for name, r in results.items() if 1 in r}
    # The baseline is what the endpoint itself calls: predict_fn (classifiers predict once, from the
    # probabilities), not pipeline.predict, which does more work and would hide part of the overhead.
    base = p50["predict_fn"]
    http_oh = p50["HTTP, http.client keep-alive"] - base
    boto_oh = p50["HTTP, boto3 invoke_endpoint"] - base
    names = [n for n in p50 if n != SOAK_NEW_CONNECTION]
    steps = [f"{names[i]} {p50[names[i]] - p50[names[i - 1]]:+.3f} ms" for i in range(1, len(names))]
    breakdown = (
        f"Overhead at c=1, p50: endpoint via http.client {p50['HTTP, http.client keep-alive']:.3f} ms - predict_fn "
        f"{base:.3f} ms = **{http_oh:.3f} ms**; via boto3 {boto_oh:.3f} ms (boto3's own client cost "
        f"{boto_oh - http_oh:.3f} ms). Raw pipeline.predict is shown for reference only. Step by step (each "
        "row's p50 minus the row above): " + "; ".join(steps) + "."
    )
    checks = [
        (
            f"endpoint overhead over predict_fn at p50, single row, c=1: {http_oh:.3f} ms < {TARGET_MS} ms",
            http_oh < TARGET_MS,
        )
    ]
    for name, r in soaks.items():
        checks.append(
            (
                f"{name}, c={SOAK_CONCURRENCY} for {r['seconds']:.0f} s: {r['errors']} errors, {r['resets']} resets "
                "(target 0)",
                r["errors"] == 0 and r["resets"] == 0,
            )
        )
    http_errors = {n: sum(x["errors"] + x["resets"] for x in r.values()) for n, r in results.items() if "HTTP" in n}
    checks.append(
        (
            f"no errors or resets at any concurrency over HTTP: {sum(http_errors.values())}",
            not any(http_errors.values()),
        )
    )
    return breakdown, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per path and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="c=64 soak per HTTP path (0: none)")
    parser.add_argument("--train-rows", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/endpoint.md")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--capture-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.code, args.capture_dir)
        return 0
    if 1 not in args.concurrency:
        args.concurrency.insert(0, 1)
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-") as tmp:
        root = Path(tmp)
        print("training the model in the image's environment ...", file=sys.stderr, flush=True)
        code = source_dir(root)
        model_dir, rows = train_model(root / "job", code, args.train_rows, seed=3)
        (root / "capture-server").mkdir()
        (root / "capture-local").mkdir()
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(model_dir),
                "--code",
                str(code),
                "--capture-dir",
                str(root / "capture-server"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        runtime = None
        try:
            assert server.stdout is not None and server.stdin is not None
            url = server.stdout.readline().strip()
            if not url.startswith("http://127.0.0.1:"):
                raise RuntimeError(f"endpoint server did not start (got {url!r})")
            runtime = build_runtime(model_dir, code, root / "capture-local")
            workers = runtime.endpoints[ENDPOINT].variants[0].model.workers
            results: dict[str, dict[int, dict[str, Any]]] = {}
            soaks: dict[str, dict[str, Any]] = {}
            paths = contenders(runtime, url, rows)
            for name, make in paths.items():
                for c in args.concurrency:
                    print(f"running {name} at c={c} ...", file=sys.stderr, flush=True)
                    results.setdefault(name, {})[c] = run(make, args.requests, c)
            if args.soak_seconds > 0:
                for name in SOAKED:
                    print(f"soaking {name} at c={SOAK_CONCURRENCY} ...", file=sys.stderr, flush=True)
                    soaks[name] = run(paths[name], 0, SOAK_CONCURRENCY, seconds=args.soak_seconds)
            server.stdin.close()
            captured = json.loads(server.stdout.readline() or "{}").get("captured")
            server.wait(timeout=60)
        finally:
            if runtime is not None:
                runtime.close()
            if server.poll() is None:
                server.kill()
                server.wait()
    breakdown, checks = targets(results, soaks)
    report = table(results, args.requests, captured, workers) + "\n\n" + breakdown
    if soaks:
        report += "\n\n" + soak_table(soaks)
    command = f"python bench/endpoint.py --requests {args.requests} --soak-seconds {args.soak_seconds:g}"
    out = None if args.no_write else RESULTS
    return finish(report, checks, title="Endpoint benchmark", command=command, out=out)


if __name__ == "__main__":
    sys.exit(main())
