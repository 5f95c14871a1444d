"""Service account ids both projects make in one GCP project."""

from __future__ import annotations

import hashlib
import re


def account_id(stack: str, role: str) -> str:
    """A service account id (6-30 of a-z, 0-9, -): `mlops-STACK-ROLE`, or for a long stack name
    a cut of it with a hash, so two roles never share one (scoring/scheduler would when cut)."""
    full = re.sub(r"[^a-z0-9-]", "-", f"mlops-{stack}-{role}".lower())
    if len(full) <= 30:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:6]
    return f"{full[:23].rstrip('-')}-{digest}"
