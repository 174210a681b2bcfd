"""Load benchmark of the digit service against the HTTP ceiling and a tutorial baseline.

Starts, one after another, ``benchmarks/ceiling_app.py`` (FastAPI that only reads
the upload), ``benchmarks/baseline_app.py`` (FastAPI + PIL + torch, one image per
request) and the service as deployed (``mnist-backend serve``, default workers,
ONNX Runtime), drives each with wrk at several concurrencies on 127.0.0.1 with the
same ~250-byte PNG digit, and writes ``benchmarks/RESULTS.md``. Every server runs
in its own process group and is killed when its turn ends, even on failure.

    .venv/bin/python benchmarks/run.py            # 10 s per point
    .venv/bin/python benchmarks/run.py --quick    # 3 s per point, a smoke run
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from processes import (
    Server,
    cpu_seconds,
    group_pids,
    machine_busy_seconds,
    peak_memory_kib,
    start_server,
    stop_server,
    wait_until_ready,
)
from report import Point, Results, render_report

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "benchmarks"
MNIST_IMAGES = REPO_ROOT / "training" / "data" / "01_raw" / "mnist"
PREDICT_PATH = "/api/v1/predict"
WRK_TIMEOUT = "10s"
BASE_PORT = 18700


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="Seconds per point.")
    parser.add_argument("--quick", action="store_true", help="3 s per point.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--photo-requests", type=int, default=30)
    parser.add_argument("--profile-requests", type=int, default=3000)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument(
        "--servers", nargs="+", default=["ceiling", "baseline", "service"]
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.duration = 3
        arguments.photo_requests = 10
        arguments.profile_requests = 500
    if arguments.profile_requests < 64:
        parser.error("--profile-requests must be at least 64, the most in flight")
    if not 1 <= arguments.duration <= 120:
        parser.error("--duration must be between 1 and 120 seconds")
    return arguments


def write_digit_png(folder: Path) -> Path:
    """Write the first MNIST test digit (a 7) as an optimised 28x28 PNG."""
    with gzip.open(MNIST_IMAGES / "t10k-images-idx3-ubyte.gz", "rb") as stream:
        stream.read(16)
        pixels = np.frombuffer(stream.read(28 * 28), dtype=np.uint8)
    path = folder / "digit.png"
    Image.fromarray(pixels.reshape(28, 28)).save(path, format="PNG", optimize=True)
    return path


def write_photo(folder: Path) -> Path:
    """Write a 4000x3000 (12-megapixel) JPEG of a dark 7 on slightly noisy paper."""
    rng = np.random.default_rng(0)
    paper = rng.normal(225, 6, size=(3000, 4000)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(paper).convert("RGB")
    pen = ImageDraw.Draw(image)
    pen.line([(1400, 700), (2600, 700)], fill=(30, 30, 40), width=120)
    pen.line([(2600, 700), (1800, 2400)], fill=(30, 30, 40), width=120)
    path = folder / "photo.jpg"
    image.save(path, format="JPEG", quality=90)
    return path


def server_specs(port: int) -> dict[str, tuple[list[str], str, dict[str, str]]]:
    """Return each server's command, readiness path and environment."""
    python = sys.executable
    uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
    service = str(Path(python).with_name("mnist-backend"))
    return {
        "ceiling": (
            [*uvicorn, "--no-access-log", "benchmarks.ceiling_app:app"],
            "/docs",
            {},
        ),
        "baseline": ([*uvicorn, "benchmarks.baseline_app:app"], "/docs", {}),
        "service": (
            [service, "serve", "--host", "127.0.0.1", "--port", str(port)],
            "/ready",
            {"MNIST_LOG_FORMAT": "json"},
        ),
    }


def run_wrk(server: Server, concurrency: int, duration: int, upload: Path) -> Point:
    """Drive ``server`` with wrk for ``duration`` seconds and return the point."""
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", WRK_TIMEOUT,
        "-s", str(BENCH_DIR / "multipart.lua"), server.url + PREDICT_PATH,
    ]  # fmt: skip
    pids = server.pids()
    cpu_before, busy_before = cpu_seconds(pids), machine_busy_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()

    # The command is built from constants and numbers; nothing comes from outside.
    finished = subprocess.run(  # noqa: S603
        command,
        env={**os.environ, "BENCH_UPLOAD": str(upload)},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )

    elapsed = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = cpu_seconds(pids) - cpu_before
    wrk_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    other_cpu = machine_busy_seconds() - busy_before - server_cpu - wrk_cpu
    line = next(
        text for text in finished.stdout.splitlines() if text.startswith("BENCH_JSON")
    )
    stats = json.loads(line.removeprefix("BENCH_JSON"))
    errors = sum(
        stats[key] for key in ("connect", "read", "write", "status", "timeout")
    )
    seconds = stats["duration_us"] / 1e6
    return Point(
        concurrency=concurrency,
        requests_per_second=stats["requests"] / seconds,
        p50_ms=stats["p50_us"] / 1000,
        p90_ms=stats["p90_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        errors=errors,
        cpu_ms_per_request=1000 * server_cpu / max(1, stats["requests"]),
        other_load_cores=max(0.0, other_cpu / elapsed),
    )


def time_photo_requests(server: Server, photo: Path, count: int) -> dict[str, object]:
    """Send the 12-megapixel photo ``count`` times in a row; return latency stats."""
    body, content_type = _multipart(photo.read_bytes(), "photo.jpg", "image/jpeg")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    latencies_ms, predictions = [], set()
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request(
                "POST", PREDICT_PATH, body, {"Content-Type": content_type}
            )
            response = connection.getresponse()
            payload = response.read()
            latencies_ms.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"photo request answered {response.status}")
            predictions.add(json.loads(payload)["prediction"])
    finally:
        connection.close()
    ordered = sorted(latencies_ms)
    return {
        "requests": count,
        "bytes": len(body),
        "p50_ms": statistics.median(ordered),
        "p99_ms": float(np.percentile(ordered, 99)),
        "predictions": sorted(predictions),
    }


def _require_onnx_runtime(server: Server) -> None:
    """Stop the run if the service fell back to torch: it would measure torch."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/api/info")
        runtime = json.loads(connection.getresponse().read())["runtime"]
    finally:
        connection.close()
    if runtime["backend"] != "onnx":
        raise RuntimeError(f"the service runs {runtime['backend']}, expected onnx")


def _multipart(upload: bytes, filename: str, media_type: str) -> tuple[bytes, str]:
    boundary = "mnistbenchmarkphoto"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: {media_type}\r\n\r\n'
    ).encode()
    body = head + upload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def profile_steps(requests: int) -> dict[str, object]:
    """Run ``profile_request.py`` in its own process and return its measurements."""
    command = [
        sys.executable, str(BENCH_DIR / "profile_request.py"),
        "--json", "--requests", str(requests),
    ]  # fmt: skip
    print(f"[profile] {shlex.join(command)}", flush=True)
    # The command is built from constants and numbers; nothing comes from outside.
    finished = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=600, check=True
    )
    profile: dict[str, object] = json.loads(finished.stdout.splitlines()[-1])
    return profile


def benchmark_server(
    name: str, port: int, arguments: argparse.Namespace, files: dict[str, Path]
) -> dict[str, object]:
    command, ready_path, env = server_specs(port)[name]
    log_path = files["workdir"] / f"{name}.log"
    server = start_server(name, command, port, log_path, env)
    print(f"[{name}] {shlex.join(command)}", flush=True)
    try:
        wait_until_ready(server, ready_path)
        if name == "service":
            _require_onnx_runtime(server)
        # Warm-up: caches, allocator pools and connection handling settle first.
        run_wrk(server, 8, 2, files["digit"])
        points = []
        for concurrency in arguments.concurrency:
            point = run_wrk(server, concurrency, arguments.duration, files["digit"])
            print(f"[{name}] {point}", flush=True)
            points.append(point)
        photo = None
        if name == "service":
            photo = time_photo_requests(
                server, files["photo"], arguments.photo_requests
            )
            print(f"[{name}] photo {photo}", flush=True)
        memory = peak_memory_kib(group_pids(server.process.pid))
        return {"command": command, "points": points, "photo": photo, "memory": memory}
    finally:
        stop_server(server)


def main() -> int:
    arguments = parse_arguments()
    if shutil.which("wrk") is None:
        print("benchmarks/run.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    os.chdir(REPO_ROOT)
    workdir = Path(tempfile.mkdtemp(prefix="mnist-benchmark-"))
    files = {
        "workdir": workdir,
        "digit": write_digit_png(workdir),
        "photo": write_photo(workdir),
    }
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results = Results(
        command=" ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        duration_seconds=arguments.duration,
        upload_bytes=files["digit"].stat().st_size,
        photo_bytes=files["photo"].stat().st_size,
        load_before=load_before,
    )
    for offset, name in enumerate(arguments.servers):
        results.servers[name] = benchmark_server(
            name, BASE_PORT + offset, arguments, files
        )
    results.load_after = Path("/proc/loadavg").read_text().split()[:3]
    results.profile = profile_steps(arguments.profile_requests)

    arguments.output.write_text(render_report(results), encoding="utf-8")
    print(f"wrote {arguments.output}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
