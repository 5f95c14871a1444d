"""Where a stack's alerts go, as both projects' settings take it (alertEmail, alertWebhook):
checked the same way, each a one-line reason naming what is allowed."""

from __future__ import annotations

import re


def email(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError(f"{value!r}: must be an email address, like oncall@example.com")
    return value


def webhook(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"https://[^\s/]+\S*", value):
        raise ValueError(f"{value!r}: must be an https:// URL")
    return value
