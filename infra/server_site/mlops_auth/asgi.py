"""Answering from an ASGI middleware, before MLflow sees the request."""

from __future__ import annotations


async def answer(send, status: int, body: bytes, headers=(), close: bool = False,
                 content_type: bytes = b"application/json") -> None:  # fmt: skip
    """`body` with `status`; `close` ends the connection (a body left unread must not be parsed
    as the next request)."""
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            *((b"connection", b"close") for _ in range(close)),
            *headers,
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
