"""Continuous training's window: the newest TLC month validates, the N before it train; gaps and
too few months are errors that say which months are missing."""

from __future__ import annotations

import pytest

import storage
from training.data import DataError
from training.months import newest


def files(*names: str) -> list[str]:
    return [f"s3://tlc/green/{n}" for n in names]


def months(colour: str, *ym: str) -> list[str]:
    return files(*(f"{colour}_tripdata_{m}.parquet" for m in ym))


def test_the_newest_month_validates_and_the_ones_before_it_train():
    uris = months("green", "2023-11", "2023-12", "2024-01", "2024-02") + files("README.md")
    window = newest(uris, 2)
    assert window.val.endswith("green_tripdata_2024-02.parquet")
    assert [u.rsplit("_", 1)[1] for u in window.train] == ["2023-12.parquet", "2024-01.parquet"]
    assert window.describe() == "train on 2023-12, 2024-01, validate on 2024-02"


def test_a_gap_in_the_window_names_the_missing_month():
    uris = months("green", "2023-12", "2024-02", "2024-03")
    assert newest(uris, 1).val.endswith("2024-03.parquet")  # the gap is outside the window
    with pytest.raises(DataError, match=r"need 2024-01, which is missing \(found green: 2023-12"):
        newest(uris, 2, where="s3://tlc/green/")


def test_too_few_months_is_an_error():
    with pytest.raises(DataError, match="need 2023-12, 2024-01, which are missing"):
        newest(months("yellow", "2024-02"), 2, where="p")
    with pytest.raises(DataError, match=r"p: no TLC monthly files \(\*_tripdata_YYYY-MM.parquet\)"):
        newest(files("a.parquet"), 1, where="p")


def test_both_fleets_under_one_prefix_need_a_choice():
    uris = months("green", "2024-01", "2024-02") + months("yellow", "2024-02", "2024-03")
    with pytest.raises(DataError, match="both green and yellow months; choose one with --colour"):
        newest(uris, 1, where="p")
    assert newest(uris, 1, "yellow").val.endswith("yellow_tripdata_2024-03.parquet")
    assert newest(uris, 1, "green").val.endswith("green_tripdata_2024-02.parquet")


def test_local_folders_are_listed_recursively(tmp_path):
    (tmp_path / "2024").mkdir()
    for name in ("green_tripdata_2024-01.parquet", "2024/green_tripdata_2024-02.parquet"):
        (tmp_path / name).write_bytes(b"x")
    window = newest(storage.list_files(str(tmp_path)), 1)
    assert window.val == str(tmp_path / "2024/green_tripdata_2024-02.parquet")
    assert storage.list_files(str(tmp_path / "nothing-here")) == []
