"""How a workload trusts the tracking server's CA (tracking_ca.trust)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

import tracking_ca

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def test_the_ca_goes_to_a_private_file_no_other_user_can_swap(monkeypatch):
    """A fixed path in the shared /tmp could be planted by another user before the workload
    starts (a CA of theirs, trusted by MLflow's client): each process gets a file of its own,
    mode 600, in a new directory only its user may write."""
    monkeypatch.setenv(tracking_ca.CA_PEM_ENV, PEM)
    monkeypatch.delenv(tracking_ca.CERT_PATH_ENV, raising=False)
    first = Path(tracking_ca.trust())
    second = Path(tracking_ca.trust())
    try:
        assert first != second and first.parent != second.parent
        assert first.read_text() == PEM + "\n"
        assert os.environ[tracking_ca.CERT_PATH_ENV] == str(second)
        for path in (first, second):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert path.parent.stat().st_uid == os.getuid()
            assert path.parent.parent == Path(tempfile.gettempdir())
    finally:
        for path in (first, second):
            path.unlink()
            path.parent.rmdir()


def test_anything_but_certificates_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(tracking_ca.CA_PEM_ENV, "-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(tracking_ca.TrustError, match=tracking_ca.CA_PEM_ENV):
        tracking_ca.trust()
