"""Render one benchmark run as Markdown: tables, ratios, targets and the machine."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

NOTES_PATH = Path(__file__).resolve().parent / "where_the_time_goes.md"
# The figures the service must reach, as ratios measured in the same run.
C1_SPEEDUP_FLOOR = 1.3
C1_P50_CEILING_MS = 1.0
C64_SPEEDUP_FLOOR = 3.0
C64_P99_CEILING_MS = 40.0
CPU_PER_REQUEST_CEILING_MS = 0.5
WORKER_MEMORY_CEILING_MB = 250.0
BUSY_MACHINE_CORES = 0.3


@dataclass
class Point:
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float
    other_load_cores: float


@dataclass
class Results:
    command: str
    duration_seconds: int
    upload_bytes: int
    photo_bytes: int
    load_before: list[str]
    load_after: list[str] = field(default_factory=list)
    servers: dict[str, dict[str, object]] = field(default_factory=dict)
    profile: dict[str, object] = field(default_factory=dict)


def render_report(results: Results) -> str:
    lines = [
        "# Load benchmark results",
        "",
        f"Produced by `{results.command}` (wrk `-t1`, {results.duration_seconds} s "
        f"per point, one {results.upload_bytes}-byte 28x28 PNG digit posted as "
        "multipart/form-data, all traffic on 127.0.0.1). "
        "`make benchmark` runs the same script.",
        "",
        *_throughput_table(results),
        *_targets(results),
        *_photo_and_memory(results),
        *_profile(results),
        *_machine(results),
    ]
    if NOTES_PATH.is_file():
        lines += ["", NOTES_PATH.read_text(encoding="utf-8").rstrip()]
    return "\n".join(lines) + "\n"


def _points(results: Results, name: str) -> dict[int, Point]:
    server = results.servers.get(name)
    if server is None:
        return {}
    points: list[Point] = server["points"]  # type: ignore[assignment]
    return {point.concurrency: point for point in points}


def _ratio(value: float, reference: Point | None, attribute: str) -> str:
    if reference is None:
        return "-"
    base = getattr(reference, attribute)
    return f"{value / base:.2f}x" if base else "-"


def _throughput_table(results: Results) -> list[str]:
    lines = [
        "## Throughput and latency",
        "",
        "| server | concurrency | req/s | p50 ms | p90 ms | p99 ms | errors | "
        "CPU ms/req | vs ceiling | vs baseline | other load (cores) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ceiling, baseline = _points(results, "ceiling"), _points(results, "baseline")
    for name in results.servers:
        for concurrency, point in _points(results, name).items():
            rate = point.requests_per_second
            lines.append(
                f"| {name} | {concurrency} | {rate:,.0f} | {point.p50_ms:.2f} | "
                f"{point.p90_ms:.2f} | {point.p99_ms:.2f} | {point.errors} | "
                f"{point.cpu_ms_per_request:.3f} | "
                f"{_ratio(rate, ceiling.get(concurrency), 'requests_per_second')} | "
                f"{_ratio(rate, baseline.get(concurrency), 'requests_per_second')} | "
                f"{point.other_load_cores:.2f} |"
            )
    lines += [
        "",
        "CPU ms/req is the user+system CPU time of the server's whole process tree "
        "(from /proc) during the point, divided by the requests it answered. "
        "'Other load' is CPU used on the machine by anything but the server and wrk "
        f"during the point; above {BUSY_MACHINE_CORES} cores the point was disturbed.",
        "",
    ]
    return lines


def _targets(results: Results) -> list[str]:
    service, baseline = _points(results, "service"), _points(results, "baseline")
    if not service:
        return []
    checks: list[tuple[str, str, bool]] = []
    if 1 in service and 1 in baseline:
        speedup = service[1].requests_per_second / baseline[1].requests_per_second
        checks.append(
            (
                f"c=1 req/s >= {C1_SPEEDUP_FLOOR}x baseline",
                f"{speedup:.2f}x",
                speedup >= C1_SPEEDUP_FLOOR,
            )
        )
    if 1 in service:
        p50 = service[1].p50_ms
        checks.append((f"c=1 p50 < {C1_P50_CEILING_MS} ms", f"{p50:.2f} ms", p50 < 1.0))
    if 64 in service and 64 in baseline:
        speedup = service[64].requests_per_second / baseline[64].requests_per_second
        checks.append(
            (
                f"c=64 req/s >= {C64_SPEEDUP_FLOOR}x baseline",
                f"{speedup:.2f}x",
                speedup >= C64_SPEEDUP_FLOOR,
            )
        )
    if 64 in service:
        point = service[64]
        checks.append(
            (
                f"c=64 p99 < {C64_P99_CEILING_MS} ms",
                f"{point.p99_ms:.2f} ms",
                point.p99_ms < C64_P99_CEILING_MS,
            )
        )
        checks.append(
            (
                f"c=64 CPU per request < {CPU_PER_REQUEST_CEILING_MS} ms",
                f"{point.cpu_ms_per_request:.3f} ms",
                point.cpu_ms_per_request < CPU_PER_REQUEST_CEILING_MS,
            )
        )
    worker_mb = _worker_peak_mb(results)
    if worker_mb is not None:
        checks.append(
            (
                f"peak memory per worker < {WORKER_MEMORY_CEILING_MB:.0f} MB",
                f"{worker_mb:.0f} MB",
                worker_mb < WORKER_MEMORY_CEILING_MB,
            )
        )
    errors = sum(point.errors for point in service.values())
    checks.append(("zero errors at every point", str(errors), errors == 0))

    lines = ["## Targets (service)", "", "| target | measured | met |"]
    lines.append("| --- | ---: | :---: |")
    lines += [
        f"| {label} | {value} | {'yes' if met else 'NO'} |"
        for label, value, met in checks
    ]
    return [*lines, ""]


def _worker_peak_mb(results: Results) -> float | None:
    service = results.servers.get("service")
    if service is None:
        return None
    memory: dict[int, tuple[str, int]] = service["memory"]  # type: ignore[assignment]
    workers = [kib for command, kib in memory.values() if "spawn_main" in command]
    if not workers:
        workers = [kib for _, kib in memory.values()]
    return max(workers) / 1024 if workers else None


def _photo_and_memory(results: Results) -> list[str]:
    lines = []
    service = results.servers.get("service")
    photo = service.get("photo") if service else None
    if isinstance(photo, dict):
        lines += [
            "## Large photo (service)",
            "",
            f"A synthetic 4000x3000 (12-megapixel) JPEG of a 7, {photo['bytes']:,} "
            f"bytes as multipart, sent {photo['requests']} times in a row over one "
            f"connection: p50 {photo['p50_ms']:.1f} ms, p99 {photo['p99_ms']:.1f} ms; "
            f"predicted digits {photo['predictions']}.",
            "",
        ]
    lines += ["## Peak memory (VmHWM over the whole run)", ""]
    lines += ["| server | process | peak RSS MB |", "| --- | --- | ---: |"]
    for name, server in results.servers.items():
        memory: dict[int, tuple[str, int]] = server["memory"]  # type: ignore[assignment]
        for command, kib in memory.values():
            role = _role(command)
            lines.append(f"| {name} | {role} | {kib / 1024:.0f} |")
    return [*lines, ""]


def _role(command: str) -> str:
    if "spawn_main" in command:
        return "worker"
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    if "mnist-backend" in command:
        return "supervisor (uvicorn, spawns workers)"
    return "single process (uvicorn, one worker)"


def _profile(results: Results) -> list[str]:
    steps: dict[str, float] = results.profile.get("steps", {})  # type: ignore[assignment]
    if not steps:
        return []
    inline: list[str] = results.profile.get("inline", [])  # type: ignore[assignment]
    rest = steps["request_64_in_flight_without_decoding_and_model"]
    rows = [
        ("decode and prepare the 28x28 PNG (`preprocess_upload`)", steps["preprocess"]),
        ("model, ONNX Runtime int8, batch of 1, per image", steps["model_batch_1"]),
        ("model, ONNX Runtime int8, batch of 32, per image", steps["model_batch_32"]),
        (
            "everything else: framework, middleware, multipart, logging, metrics, "
            "JSON (64 in flight, decoding and model stubbed)",
            rest,
        ),
        ("whole request, 1 in flight", steps["request_1_in_flight"]),
        ("whole request, 64 in flight", steps["request_64_in_flight"]),
    ]
    lines = [
        "## Where the time goes (measured in this run)",
        "",
        "CPU time per request inside one process, from `benchmarks/profile_request.py` "
        "(run by this script after the load points): the ASGI app is called "
        "directly, so uvicorn's HTTP parsing and socket writes are not included; "
        "they are the difference to the service's CPU ms/req above.",
        "",
        "| step | CPU us |",
        "| --- | ---: |",
        *[f"| {label} | {value:.0f} |" for label, value in rows],
        "",
        "Decoding on the event loop or on a worker thread (the inline caps):",
        "",
        *[f"- {line}" for line in inline],
        "",
    ]
    return lines


def _machine(results: Results) -> list[str]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kib = Path("/proc/meminfo").read_text().split()[1]
    versions = ", ".join(
        f"{package} {_version(package)}"
        for package in ("fastapi", "uvicorn", "onnxruntime", "torch", "numpy", "pillow")
    )
    return [
        "## Machine",
        "",
        f"- CPU: {cpu_model}; {os.cpu_count()} cores visible, "
        f"{len(os.sched_getaffinity(0))} in this process's affinity; "
        f"{int(memory_kib) // 1024 // 1024} GiB memory",
        f"- OS: {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}",
        f"- Packages: {versions}",
        f"- Load average (1, 5, 15 min) before the run: "
        f"{' '.join(results.load_before)}; after: {' '.join(results.load_after)}",
    ]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
