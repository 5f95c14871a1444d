"""Reading, cleaning and features of TLC trip records."""

from __future__ import annotations

import pandas as pd
import pytest

from training.data import DataError, clean, features, load, read_trips
from training.generate import generate_month


def trips(minutes: list[float], prefix: str = "lpep") -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01 08:00")
    n = len(minutes)
    return pd.DataFrame(
        {
            f"{prefix}_pickup_datetime": [start] * n,
            f"{prefix}_dropoff_datetime": [start + pd.Timedelta(minutes=m) for m in minutes],
            "PULocationID": [43] * n,
            "DOLocationID": [151] * n,
            "trip_distance": [1.8] * n,
        }
    )


def test_keeps_trips_between_1_and_60_minutes_inclusive(tmp_path):
    path = tmp_path / "t.parquet"
    trips([0.5, 1.0, 30.0, 60.0, 61.0, -5.0]).to_parquet(path)
    kept, report = clean(read_trips(str(path)))
    assert sorted(kept["duration"]) == [1.0, 30.0, 60.0]
    assert report.rows_read == 6 and report.rows_kept == 3


def test_cleaning_reports_each_dropped_row_once_with_its_reason(tmp_path):
    frame = trips([0.5, -5.0, 61.0, 90.0, 10.0, 10.0])
    frame.loc[4, "PULocationID"] = None
    frame.loc[5, "trip_distance"] = -1.0
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    _, report = clean(read_trips(str(path)))
    assert report.dropped["shorter than 1 min"] == 2
    assert report.dropped["longer than 60 min"] == 2
    assert report.dropped["missing location or distance"] == 1
    assert report.dropped["negative distance"] == 1
    assert sum(report.dropped.values()) == report.rows_read - report.rows_kept
    assert "dropped: 1 missing location" in report.summary()


def test_reads_yellow_schema(tmp_path):
    path = tmp_path / "yellow.parquet"
    trips([10.0, 20.0], prefix="tpep").to_parquet(path)
    X, y, _ = load(str(path))
    assert list(y) == [10.0, 20.0]
    assert list(X.columns) == ["PU_DO", "trip_distance"]


def test_pu_do_feature_joins_location_ids():
    frame = pd.DataFrame(
        {"PULocationID": [43, 7], "DOLocationID": [151, 265], "trip_distance": [1, 2]}
    )
    X = features(frame)
    assert list(X["PU_DO"]) == ["43_151", "7_265"]
    assert X["trip_distance"].dtype == float


def test_missing_file_is_a_data_error():
    with pytest.raises(DataError, match="no such file"):
        read_trips("/nonexistent/green_tripdata_2024-01.parquet")


def test_wrong_schema_names_the_missing_columns(tmp_path):
    path = tmp_path / "wrong.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with pytest.raises(DataError, match="lpep_.*tpep_"):
        read_trips(str(path))
    frame = trips([10.0]).drop(columns=["trip_distance"])
    frame.to_parquet(path)
    with pytest.raises(DataError, match="trip_distance"):
        read_trips(str(path))


def test_not_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "notes.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_trips(str(path))


def test_s3_uri_is_read_through_aws_endpoint_url(tmp_path, monkeypatch):
    """s3:// input honours AWS_ENDPOINT_URL (here moto in-process, so no network at all)."""
    import boto3
    from moto import mock_aws

    path = tmp_path / "t.parquet"
    trips([10.0, 12.0]).to_parquet(path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="tlc")
        s3.upload_file(str(path), "tlc", "green/2024-01.parquet")
        X, y, _ = load("s3://tlc/green/2024-01.parquet")
        assert len(X) == 2
        with pytest.raises(DataError, match="NoSuchKey"):
            read_trips("s3://tlc/green/2024-02.parquet")


def test_generator_is_seeded_and_has_dirt_to_clean():
    a = generate_month(2024, 1, rows=2000, seed=3)
    b = generate_month(2024, 1, rows=2000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(generate_month(2024, 1, rows=2000, seed=4))
    minutes = (a["lpep_dropoff_datetime"] - a["lpep_pickup_datetime"]).dt.total_seconds() / 60
    assert (minutes > 60).sum() > 0 and (minutes < 1).sum() > 0
    yellow = generate_month(2024, 1, rows=10, colour="yellow")
    assert "tpep_pickup_datetime" in yellow.columns


def test_uploads_share_one_client_per_settings(tmp_path, monkeypatch):
    """Making a boto3 client costs ~6 ms of CPU, and the prediction log publishes a file every few
    seconds under load: one client serves every upload and listing with the same settings; other
    settings (another endpoint, account or region) get their own."""
    import boto3
    from moto import mock_aws

    import storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    storage._cached_client.cache_clear()
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="prediction-logs")
        for i in range(3):
            with storage.publishing(f"s3://prediction-logs/p/{i}.txt") as path:
                path.write_text(str(i))
        assert storage.list_files("s3://prediction-logs/p") == [
            f"s3://prediction-logs/p/{i}.txt" for i in range(3)
        ]
        assert storage._cached_client.cache_info().currsize == 1
        body = boto3.client("s3").get_object(Bucket="prediction-logs", Key="p/2.txt")["Body"].read()
        assert body == b"2"
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        storage.list_files("s3://prediction-logs/p")
        assert storage._cached_client.cache_info().currsize == 2
    storage._cached_client.cache_clear()
