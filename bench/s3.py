"""Large data through the twin's S3, next to a durable disk write and plain moto server, in one run.

One file of ``--size-mb`` random bytes (1 GB by default; ``--quick``: 64 MB). For each server,
the twin's S3 (``python -m mlops.twin.s3``: the gateway, moto, the data path and the store, as
the twin serves S3) and plain moto (``moto.server.ThreadedMotoServer`` on 127.0.0.1), each in a
process of its own:

- single PUT (``put_object`` with the open file);
- multipart upload through boto3's transfer manager (``upload_file``, 8 MB parts, 10 threads);
- GET (``get_object``, the body streamed to a file);
- multipart (ranged) download through the transfer manager (``download_file``);
- one 8 MB range at the end of the object (ms, median of 5);
- small-object GET (1 KB, boto3, sequential) p50 and p99 (ms);
- the server's peak memory above its memory before the transfers (RSS high-water mark).

The reference is a durable write of the same file (``dd ... conv=fsync``: write, fsync). The
rates are MB/s of the file's size over wall time; a client writes downloads to a file without
fsync. Prints a table and the targets, and writes ``bench/results/s3.md``.

    python bench/s3.py                # 1 GB
    python bench/s3.py --quick        # 64 MB
    python bench/s3.py --size-mb 256
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from report import finish  # noqa: E402  (bench/, the script's own directory)

RESULTS = Path(__file__).resolve().parent / "results" / "s3.md"
MB = 1024 * 1024
BUCKET = "bench"
TRANSFER = TransferConfig(multipart_threshold=8 * MB, multipart_chunksize=8 * MB, max_concurrency=10)
SMALL_GETS = 300

MOTO_CHILD = """
import socket, sys, threading
from moto.server import ThreadedMotoServer
port = int(sys.argv[1])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print(f"http://127.0.0.1:{port}", flush=True)
print("ready", flush=True)
threading.Event().wait()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class Server:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.proc.stdout.readline().strip() == "ready", f"{name} did not start"
        self.client = boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b"
        )
        if name == "moto":
            self.client.create_bucket(Bucket=BUCKET)
        self.baseline = 0

    def reset_peak(self) -> None:
        self.baseline = _status(self.proc.pid, "VmRSS")
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak_growth(self) -> int:
        return _status(self.proc.pid, "VmHWM") - self.baseline

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _timed(fn: Callable[[], Any]) -> float:
    os.sync()  # no dirty pages left by the step before (ext4 would flush them in this step's fsync)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def durable_write(source: Path, target: Path) -> float:
    def run() -> None:
        with source.open("rb") as src, target.open("wb") as out:
            while block := src.read(8 * MB):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())

    seconds = _timed(run)
    target.unlink()
    return seconds


def measure(server: Server, source: Path, size: int, work: Path) -> dict[str, float]:
    s3 = server.client
    out: dict[str, float] = {}
    server.reset_peak()

    def put() -> None:
        with source.open("rb") as body:
            s3.put_object(Bucket=BUCKET, Key="single", Body=body)

    out["single PUT"] = _timed(put)
    out["multipart upload"] = _timed(lambda: s3.upload_file(str(source), BUCKET, "multi", Config=TRANSFER))
    target = work / f"{server.name}.get"

    def get() -> None:
        body = s3.get_object(Bucket=BUCKET, Key="multi")["Body"]
        with target.open("wb") as f:
            while block := body.read(8 * MB):
                f.write(block)

    out["GET"] = _timed(get)
    target.unlink()
    out["multipart download"] = _timed(lambda: s3.download_file(BUCKET, "multi", str(target), Config=TRANSFER))
    assert target.stat().st_size == size
    target.unlink()
    first = max(0, size - 8 * MB)
    ranges = [
        1000
        * _timed(lambda: s3.get_object(Bucket=BUCKET, Key="multi", Range=f"bytes={first}-{size - 1}")["Body"].read())
        for _ in range(5)
    ]
    out["8 MB range at the end (ms)"] = statistics.median(ranges)
    out["peak memory growth (MB)"] = server.peak_growth() / MB
    s3.put_object(Bucket=BUCKET, Key="small", Body=os.urandom(1024))
    for _ in range(20):  # warm the connection pool
        s3.get_object(Bucket=BUCKET, Key="small")["Body"].read()
    times = []
    for _ in range(SMALL_GETS):
        start = time.perf_counter()
        s3.get_object(Bucket=BUCKET, Key="small")["Body"].read()
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    out["small GET p50 (ms)"] = statistics.median(times)
    out["small GET p99 (ms)"] = times[int(len(times) * 0.99) - 1]
    return out


RATES = ["single PUT", "multipart upload", "GET", "multipart download"]


def table(size: int, disk: float, results: dict[str, dict[str, float]]) -> str:
    mb = size / MB
    lines = [
        f"{mb:.0f} MB random file; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}. Reference: durable write of the file (write + fsync) "
        f"{disk:.2f} s = {mb / disk:.0f} MB/s.",
        "",
        "| measure | disk write | twin | moto server | twin / disk | twin / moto |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    twin, moto = results["twin"], results.get("moto", {})
    for name in RATES:
        t, m = mb / twin[name], (mb / moto[name] if name in moto else float("nan"))
        lines.append(f"| {name} (MB/s) | {mb / disk:.0f} | {t:.0f} | {m:.0f} | {t * disk / mb:.2f}x | {t / m:.2f}x |")
    for name in ["8 MB range at the end (ms)", "small GET p50 (ms)", "small GET p99 (ms)", "peak memory growth (MB)"]:
        t, m = twin[name], moto.get(name, float("nan"))
        lines.append(f"| {name} | | {t:.1f} | {m:.1f} | | |")
    return "\n".join(lines)


def targets(size: int, disk: float, twin: dict[str, float]) -> list[tuple[str, bool]]:
    mb = size / MB
    up, down = mb / twin["multipart upload"], mb / twin["multipart download"]
    judged = size >= 1024 * MB
    checks = [
        (
            f"multipart upload {up:.0f} MB/s >= 0.5x the durable disk write ({0.5 * mb / disk:.0f} MB/s)",
            up >= 0.5 * mb / disk,
        ),
        (f"multipart download {down:.0f} MB/s >= 0.5x the durable disk write", down >= 0.5 * mb / disk),
        (
            f"8 MB range at the end {twin['8 MB range at the end (ms)']:.1f} ms <= 50 ms",
            twin["8 MB range at the end (ms)"] <= 50,
        ),
        (f"small GET p50 {twin['small GET p50 (ms)']:.2f} ms <= 5 ms", twin["small GET p50 (ms)"] <= 5),
    ]
    memory = twin["peak memory growth (MB)"]
    text = f"twin peak memory +{memory:.0f} MB <= +200 MB" + ("" if judged else " (judged at 1 GB; shown)")
    checks.append((text, memory <= 200 or not judged))
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="64 MB")
    parser.add_argument("--no-moto", action="store_true", help="leave out the moto server peer")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/s3.md")
    args = parser.parse_args()
    size = (64 if args.quick else args.size_mb) * MB
    command = "python bench/s3.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="s3bench-") as tmp:
        work = Path(tmp)
        source = work / "source.bin"
        with source.open("wb") as f:
            for _ in range(size // MB):
                f.write(os.urandom(MB))
        disk = durable_write(source, work / "disk-copy.bin")
        results: dict[str, dict[str, float]] = {}
        servers = [("twin", [sys.executable, "-m", "mlops.twin.s3", str(work / "twin"), BUCKET])]
        if not args.no_moto:
            servers.append(("moto", [sys.executable, "-c", MOTO_CHILD, str(_free_port())]))
        for name, argv in servers:
            server = Server(name, argv)
            try:
                results[name] = measure(server, source, size, work)
            finally:
                server.stop()
            print(f"{name}: done", flush=True)
    out = None if args.no_write else RESULTS
    return finish(
        table(size, disk, results), targets(size, disk, results["twin"]), title="S3 benchmark", command=command, out=out
    )


if __name__ == "__main__":
    raise SystemExit(main())
