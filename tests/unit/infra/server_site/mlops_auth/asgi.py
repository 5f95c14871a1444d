"""Driving an ASGI middleware in-process: a request in, what the app saw and what was sent out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Inner:
    """The app behind the middleware: records the body it read, answers `status`."""

    status: int = 200
    calls: int = 0
    bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    read: int
    """Bytes of the request body the server side read."""


def request(app, method="GET", path="/api/2.0/mlflow/x", headers=(), body=b"", chunks=None,
            query=b"", client=("127.0.0.1", 5555)) -> Answer:  # fmt: skip
    """One HTTP request through `app`; `chunks` sends the body in parts (chunked)."""
    parts = list(chunks) if chunks is not None else [body]
    sent = {"read": 0}

    async def receive():
        if not parts:
            await asyncio.sleep(3600)  # the client waits for the answer
        chunk = parts.pop(0)
        sent["read"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    out: list[dict] = []

    async def send(message):
        out.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(k.lower(), v) for k, v in headers], "client": client,
             "root_path": ""}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in out if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
    return Answer(start["status"], dict(start["headers"]), body, sent["read"])
