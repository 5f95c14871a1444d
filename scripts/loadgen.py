"""Closed-loop HTTP load: `python -m scripts.loadgen URL BODIES --concurrency 16 --duration 20`.

Keeps `concurrency` keep-alive connections busy, each sending the next POST body from BODIES (one
JSON document per line, used in turn) as soon as its previous response is in. Requests sent during
the warm-up are not counted. Prints one JSON object: requests/s, p50/p99 latency in ms, errors
(non-2xx statuses and failed connections, with a sample), and how many requests were counted.

Written on raw asyncio streams so the client costs far less CPU per request than the servers it
measures; it runs as its own process, so it never shares an interpreter with a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Tally:
    record_from: float
    stop_at: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    error_sample: str | None = None


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = head.lower()
    start = headers.find(b"\r\ncontent-length:")
    if start >= 0:
        end = headers.index(b"\r\n", start + 2)
        return status, await reader.readexactly(int(headers[start + 17 : end]))
    if b"\r\ntransfer-encoding: chunked" in headers:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, bytes(body)
            body += chunk[:-2]
    raise ValueError("response without content-length or chunked body")


async def connection(host: str, port: int, requests: list[bytes], first: int, tally: Tally):
    streams = None
    i = first
    while (sent := time.perf_counter()) < tally.stop_at:
        request = requests[i % len(requests)]
        i += 1
        try:
            if streams is None:
                streams = await asyncio.open_connection(host, port)
            reader, writer = streams
            writer.write(request)
            status, body = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            if streams:
                streams[1].close()
            streams = None
            if sent >= tally.record_from:
                tally.failures[exc.__class__.__name__] += 1
                tally.error_sample = tally.error_sample or repr(exc)
            await asyncio.sleep(0.01)
            continue
        if sent >= tally.record_from:
            tally.latencies.append(time.perf_counter() - sent)
            tally.statuses[status] += 1
            if not 200 <= status < 300 and tally.error_sample is None:
                tally.error_sample = f"HTTP {status}: {body[:300].decode(errors='replace')}"
    if streams:
        streams[1].close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run(url: str, bodies: list[bytes], concurrency: int, duration: float, warmup: float):
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    requests = [
        (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    now = time.perf_counter()
    tally = Tally(record_from=now + warmup, stop_at=now + warmup + duration)
    await asyncio.gather(
        *(
            connection(host, port, requests, n * len(requests) // concurrency, tally)
            for n in range(concurrency)
        )
    )
    latencies = sorted(tally.latencies)
    ok = sum(n for status, n in tally.statuses.items() if 200 <= status < 300)
    errors = sum(tally.statuses.values()) - ok + sum(tally.failures.values())
    return {
        "requests": len(latencies),
        "requests_per_s": ok / duration,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "failures": dict(tally.failures),
        "error_sample": tally.error_sample,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.loadgen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("url", help="http://host:port/path to POST to")
    parser.add_argument("bodies", type=Path, help="file with one JSON request body per line")
    parser.add_argument("--concurrency", type=int, default=16, help="connections kept busy (16)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not counted first (3)")
    args = parser.parse_args(argv)
    bodies = [line.encode() for line in args.bodies.read_text().splitlines() if line.strip()]
    if not bodies:
        parser.error(f"{args.bodies}: no request bodies")
    import uvloop  # comes with uvicorn[standard]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(args.url, bodies, args.concurrency, args.duration, args.warmup))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
