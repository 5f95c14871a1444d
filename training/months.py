"""Continuous training's data window: under a prefix of TLC monthly files, the newest month for
validation and the N months before it for training.

Files are recognised by TLC's own names (`green_tripdata_2024-03.parquet`,
`yellow_tripdata_2024-03.parquet`), so a folder or bucket prefix that TLC months are copied into
as they are published is all a schedule needs: each run trains on the newest data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from training.data import DataError

TLC_NAME = re.compile(
    r"(?:^|/)(?P<colour>green|yellow)_tripdata_(?P<year>\d{4})-(?P<month>0[1-9]|1[0-2])\.parquet$"
)


@dataclass(frozen=True)
class Window:
    train: list[str]  # oldest first
    val: str

    def describe(self) -> str:
        return (
            f"train on {', '.join(map(_month_of, self.train))}, validate on {_month_of(self.val)}"
        )


def _month_of(uri: str) -> str:
    match = TLC_NAME.search(uri)
    return f"{match['year']}-{match['month']}" if match else uri


def _index(year: str, month: str) -> int:
    return int(year) * 12 + int(month) - 1


def _name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def newest(uris: list[str], months: int, colour: str | None = None, where: str = "") -> Window:
    """The newest month for validation and the `months` consecutive months before it."""
    if months < 1:
        raise DataError(f"--months must be at least 1, got {months}")
    found: dict[str, dict[int, str]] = {}
    for uri in uris:
        match = TLC_NAME.search(uri)
        if match:
            found.setdefault(match["colour"], {})[_index(match["year"], match["month"])] = uri
    if colour is None:
        if len(found) > 1:
            raise DataError(
                f"{where}: holds both green and yellow months; choose one with --colour"
            )
        colour = next(iter(found), None)
    by_month = found.get(colour or "", {})
    if not by_month:
        kinds = f"{colour}_tripdata_YYYY-MM.parquet" if colour else "*_tripdata_YYYY-MM.parquet"
        raise DataError(f"{where}: no TLC monthly files ({kinds})")
    last = max(by_month)
    wanted = list(range(last - months, last + 1))
    missing = [_name(i) for i in wanted if i not in by_month]
    if missing:
        have = ", ".join(_name(i) for i in sorted(by_month))
        raise DataError(
            f"{where}: {months} training month(s) before the newest ({_name(last)}) need "
            f"{', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} missing "
            f"(found {colour}: {have})"
        )
    return Window(train=[by_month[i] for i in wanted[:-1]], val=by_month[last])
