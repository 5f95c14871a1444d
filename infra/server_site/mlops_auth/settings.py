"""The plugin's settings, read once from the server's environment (infra.mlflow_server renders
them). A bad value stops the server with one line naming the variable and what it allows."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlops_auth.compat import Incompatible

PREFIX = "MLOPS_AUTH_"
# Each can be turned off on its own (MLOPS_AUTH_<NAME>=off), e.g. to tell whether it is the cause
# of a problem; none changes what a caller may do, only what it costs.
OPTIMISATIONS = (
    "store_cache",
    "resource_cache",
    "lean_redaction",
    "lean_log_check",
    "middleware_bypass",
    "one_check",
)
SWITCH = {"on": True, "off": False}
MIB = 1024 * 1024


class SettingError(Incompatible):
    """A setting the server cannot start with."""


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = 16 * MIB
    """Largest request body (but an artifact upload, which streams); more gets 413."""
    request_threads: int | None = None
    """Requests a worker runs in threads at once (None: anyio's default, 40); see threads."""
    sign_in_failures: int = 10
    """Failed sign-ins a client address may have per minute and worker before 429."""
    failed_password_seconds: int = 60
    """How long a failed (user, password) is answered 401 without checking it again."""
    optimisations: frozenset[str] = frozenset(OPTIMISATIONS)

    def on(self, optimisation: str) -> bool:
        return optimisation in self.optimisations


def _whole(environ, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = environ.get(PREFIX + name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingError(
            f"{PREFIX}{name} must be a whole number from {low} to {high}, got {raw!r}"
        )
    return int(raw)


def from_environ(environ=os.environ) -> Settings:
    optimisations = set()
    for name in OPTIMISATIONS:
        raw = environ.get(PREFIX + name.upper(), "on")
        if raw not in SWITCH:
            raise SettingError(f"{PREFIX}{name.upper()} must be on or off, got {raw!r}")
        if SWITCH[raw]:
            optimisations.add(name)
    return Settings(
        max_body_bytes=_whole(environ, "MAX_BODY_BYTES", 1024, 1024 * MIB, Settings.max_body_bytes),
        request_threads=_whole(environ, "REQUEST_THREADS", 1, 1000, None),
        sign_in_failures=_whole(environ, "SIGN_IN_FAILURES", 1, 1000, Settings.sign_in_failures),
        failed_password_seconds=_whole(
            environ, "FAILED_PASSWORD_SECONDS", 0, 3600, Settings.failed_password_seconds
        ),
        optimisations=frozenset(optimisations),
    )
