"""What the benchmarks measure a local process group by (its processes' CPU, memory and client
connections, from /proc), the machine they ran on, and how they write their figures into
docs/benchmarks.md (each benchmark its own block between markers)."""

from __future__ import annotations

import os
import platform as pyplatform
import re
import shutil
import statistics
import subprocess
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
"""The serving benchmark's block; the others name their own."""
SERVING_PACKAGES = ("mlflow", "fastapi", "uvicorn", "pydantic", "lightgbm", "pandas")


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def group_pids(pgid: int) -> list[int]:
    """The server's processes: everything in its process group (master and workers)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:  # field 5: pgrp
                pids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def group_rss_mb(pgid: int) -> float:
    total_kb = 0
    for pid in group_pids(pgid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total_kb += int(match.group(1)) if match else 0
    return total_kb / 1024


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of the group's live processes (their threads included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in group_pids(pgid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def connections_per_process(pgid: int, port: int) -> list[int]:
    """Established client connections each server process holds, most first. uvicorn's workers
    share one listening socket, and a burst of new connections can all land on one worker."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
            inodes.add(fields[9])
    counts = []
    for pid in group_pids(pgid):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        counts.append(sum(link[8:-1] in inodes for link in links if link.startswith("socket:[")))
    return sorted(counts, reverse=True)


def machine(packages: tuple[str, ...] = SERVING_PACKAGES) -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    return (
        f"{model.group(1) if model else pyplatform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores available, "
        f"{int(mem.group(1)) / 1024**2:.1f} GiB RAM; {pyplatform.platform(terse=True)}; "
        f"Python {pyplatform.python_version()}; " + ", ".join(f"{p} {version(p)}" for p in packages)
    )


def write_report(block: str, path: Path = REPORT, start: str = START, end: str = END) -> None:
    """Replace the generated block between its markers, keeping what is written around it."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    path.write_text(head + block + rest.split(end, 1)[1])


WRK_THREADS = 2


def wrk_script(path: Path, body: str | None) -> Path:
    """A wrk script that POSTs `body` as JSON (None: wrk's plain GET)."""
    lua = ""
    if body is not None:
        lua = (
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [==[{body}]==]\n"
        )
    path.write_text(lua)
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> dict:
    """wrk --latency's summary: requests/s, p50/p99 in ms, errors (non-2xx and socket errors)."""

    def latency(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        return float(value) * _UNITS[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": errors,
    }


def wrk(url: str, script: Path, concurrency: int, warmup: float, seconds: float) -> dict:
    """wrk (Debian's package) against one URL: a warm-up run, then the measured one."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    base = ["wrk", "--latency", f"--threads={min(WRK_THREADS, concurrency)}",
            f"--connections={concurrency}", "--timeout=10s", "--script", str(script)]  # fmt: skip
    subprocess.run([*base, f"--duration={max(1, round(warmup))}s", url],
                   capture_output=True, check=True)  # fmt: skip
    out = subprocess.run([*base, f"--duration={max(1, round(seconds))}s", url],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return parse_wrk(out.stdout)


def over_rounds(rounds: list[dict]) -> dict:
    """One row from a server's rounds of a workload (each as long as the others): the mean
    requests/s, the median round's p50, the worst round's p99, every error."""
    return {
        "requests_per_s": statistics.fmean(r["requests_per_s"] for r in rounds),
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "rounds": [r["requests_per_s"] for r in rounds],
    }
