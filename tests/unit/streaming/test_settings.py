"""The handler's settings: STREAMING_* with the model API's registry fields; a bad one is one
line naming the variable."""

from __future__ import annotations

import pytest

from streaming.settings import SettingsError, load


def test_settings_read_their_prefix_and_share_the_registry_fields(monkeypatch):
    monkeypatch.setenv("STREAMING_OUTPUT", "ride-predictions")
    monkeypatch.setenv("STREAMING_DEAD_LETTER", "http://127.0.0.1:1/000/dl")
    monkeypatch.setenv("STREAMING_REFRESH_SECONDS", "12")
    settings = load()
    assert (settings.model_name, settings.model_alias) == ("nyc-taxi-duration", "champion")
    assert settings.refresh_seconds == 12 and settings.put_attempts == 5


def test_a_missing_or_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.delenv("STREAMING_OUTPUT", raising=False)
    monkeypatch.setenv("STREAMING_DEAD_LETTER", "q")
    monkeypatch.setenv("STREAMING_PUT_ATTEMPTS", "0")
    monkeypatch.setenv("STREAMING_PREDICTION_LOG", "ftp://x/")
    with pytest.raises(SettingsError) as caught:
        load()
    message = str(caught.value)
    assert "\n" not in message
    assert "STREAMING_OUTPUT: Field required" in message
    assert "STREAMING_PUT_ATTEMPTS: Input should be greater than or equal to 1" in message
    assert "STREAMING_PREDICTION_LOG: Value error, must be an s3:// or gs:// prefix" in message


def test_the_consumer_and_the_push_service_stop_on_a_bad_setting_with_one_line(monkeypatch, capsys):
    from streaming import consumer, push

    monkeypatch.delenv("STREAMING_OUTPUT", raising=False)
    monkeypatch.setenv("STREAMING_DEAD_LETTER", "q")
    assert consumer.main(["--stream", "ride-events"]) == 2
    assert push.main() == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == ["error: STREAMING_OUTPUT: Field required"] * 2
