"""The model holder refreshed by its caller (a Lambda function, where no thread runs between
invocations): when due, as often as the background thread would."""

from __future__ import annotations

from trip_model import serving
from trip_model.serving import Loaded, ModelHolder, RegistrySettings


def test_refresh_if_due_refreshes_as_the_thread_would(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(serving.time, "monotonic", lambda: now[0])
    holder = ModelHolder(RegistrySettings(refresh_seconds=30, retry_seconds=5))
    calls = []
    monkeypatch.setattr(holder, "refresh", lambda: calls.append(now[0]))
    holder.refresh_if_due()  # the first call always loads
    now[0] += 4
    holder.refresh_if_due()  # no model yet: retried after retry_seconds, not before
    now[0] += 1
    holder.refresh_if_due()
    assert calls == [1000.0, 1005.0]
    holder.current = Loaded("1", 0.0, lambda pu, do, d: d, "stub")
    now[0] += 29
    holder.refresh_if_due()  # a model: refreshed after refresh_seconds
    now[0] += 1
    holder.refresh_if_due()
    assert calls == [1000.0, 1005.0, 1035.0]
