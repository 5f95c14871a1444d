"""The image's HEALTHCHECK: `python -m services.model_api.healthcheck` asks /health on the port the
server listens on (UVICORN_PORT, as serve reads it), so a changed port does not mark a healthy
container unhealthy. Exit 0 when it answers 200, 1 otherwise (one line why)."""

from __future__ import annotations

import os
import sys
import urllib.request


def url(environ=os.environ) -> str:
    host = environ.get("UVICORN_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening everywhere: ask on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{environ.get('UVICORN_PORT', '8000')}/health"


def main() -> int:
    target = url()
    try:
        with urllib.request.urlopen(target, timeout=2) as resp:  # noqa: S310 - http on loopback
            return 0 if resp.status == 200 else 1
    except Exception as exc:  # refused, timed out, 5xx
        print(f"unhealthy: {target}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
