"""Seeded generator of TLC-shaped monthly trip files (green or yellow schema) for the demo and tests.

The real TLC files cannot be downloaded on every machine, so this makes data with the structure a
model can learn: zones with positions and their own traffic speed, pair distances that vary by route,
a distance-duration relation with noise, and the dirt that cleaning must remove (trips of more than
60 minutes, trips under a minute, dropoffs before pickups).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

N_ZONES = 265
# One layout for every month and seed, so a model trained on one month transfers to the next.
_LAYOUT_SEED = 20_240_101


def _zone_layout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zone positions (miles), speeds (mph) and popularity, fixed across months."""
    rng = np.random.default_rng(_LAYOUT_SEED)
    pos = rng.uniform(0, 20, size=(N_ZONES, 2))
    # Dense (slow) core around the middle, faster outskirts.
    centre_dist = np.linalg.norm(pos - 10.0, axis=1)
    speed = np.clip(6.0 + 2.2 * centre_dist * rng.lognormal(0, 0.25, N_ZONES), 5.0, 40.0)
    # Like the real green fleet, a few dozen zones carry nearly all trips.
    popularity = np.where(rng.random(N_ZONES) < 0.15, rng.lognormal(0, 0.8, N_ZONES), 0.0)
    popularity /= popularity.sum()
    return pos, speed, popularity


def generate_month(
    year: int,
    month: int,
    rows: int = 20_000,
    seed: int = 0,
    colour: str = "green",
    shift: float = 0.0,
) -> pd.DataFrame:
    """One month of TLC-shaped trips; the same arguments give the same frame.

    `shift` (0 to 1) makes a month unlike the others, for the monitoring demo: longer trips
    (distances up to 60% longer) on slower roads (speeds up to 35% lower)."""
    if colour not in ("green", "yellow"):
        raise ValueError(f"colour must be 'green' or 'yellow', got {colour!r}")
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must be between 0 and 1, got {shift}")
    pos, speed, popularity = _zone_layout()
    rng = np.random.default_rng([seed, year, month])

    pu = rng.choice(N_ZONES, size=rows, p=popularity)
    # Most trips stay near their pickup: choose the dropoff by popularity weighted by proximity.
    candidates = rng.choice(N_ZONES, size=(rows, 6), p=popularity)
    gaps = np.linalg.norm(pos[candidates] - pos[pu][:, None, :], axis=2)
    pick = np.argmin(gaps + rng.exponential(8.0, size=gaps.shape), axis=1)
    do = candidates[np.arange(rows), pick]

    straight = np.linalg.norm(pos[pu] - pos[do], axis=1)
    # Routes differ trip by trip: the same pair is sometimes a detour.
    distance = np.round((0.4 + 1.25 * straight) * rng.lognormal(0, 0.35, rows), 2)
    distance = np.round(distance * (1 + 0.6 * shift), 2)
    # A pair's speed is set by the slower end, plus a pair-specific term (bridges, avenues).
    pair_term = np.random.default_rng([_LAYOUT_SEED, 7]).lognormal(0, 0.3, (N_ZONES, N_ZONES))
    pair_speed = np.minimum(speed[pu], speed[do]) * 0.6 + 0.4 * speed[do]
    pair_speed = pair_speed * pair_term[pu, do]
    # Longer trips reach faster roads, so minutes grow less than linearly with distance.
    pair_speed = pair_speed * (0.45 + 0.7 * np.log1p(distance)) * (1 - 0.35 * shift)
    minutes = 2.0 + 60.0 * distance / pair_speed
    minutes *= rng.lognormal(0, 0.1, rows)

    # Dirt that cleaning must remove: meters left running, cancelled trips, clock errors.
    kind = rng.random(rows)
    minutes = np.where(kind < 0.02, rng.uniform(61, 600, rows), minutes)
    minutes = np.where((kind >= 0.02) & (kind < 0.035), rng.uniform(0, 0.95, rows), minutes)
    minutes = np.where((kind >= 0.035) & (kind < 0.04), -rng.uniform(1, 30, rows), minutes)

    start = pd.Timestamp(year=year, month=month, day=1)
    month_seconds = ((start + pd.offsets.MonthBegin(1)) - start).total_seconds()
    pickup = start + pd.to_timedelta(rng.uniform(0, month_seconds - 3600, rows).round(), unit="s")
    dropoff = pickup + pd.to_timedelta((minutes * 60).round(), unit="s")
    prefix = "lpep" if colour == "green" else "tpep"

    fare = np.round(3.0 + 2.5 * distance + 0.5 * np.clip(minutes, 0, 120), 2)
    frame = pd.DataFrame(
        {
            "VendorID": rng.choice([1, 2], rows).astype("int32"),
            f"{prefix}_pickup_datetime": pickup.astype("datetime64[us]"),
            f"{prefix}_dropoff_datetime": dropoff.astype("datetime64[us]"),
            "store_and_fwd_flag": rng.choice(["N", "Y"], rows, p=[0.99, 0.01]),
            "RatecodeID": np.ones(rows),
            "PULocationID": (pu + 1).astype("int32"),
            "DOLocationID": (do + 1).astype("int32"),
            "passenger_count": rng.choice([1.0, 2.0, 3.0, 5.0], rows, p=[0.7, 0.2, 0.05, 0.05]),
            "trip_distance": distance,
            "fare_amount": fare,
            "tip_amount": np.round(fare * rng.choice([0, 0.15, 0.2], rows), 2),
            "total_amount": np.round(fare * 1.2 + 1.0, 2),
            "payment_type": rng.choice([1.0, 2.0], rows, p=[0.6, 0.4]),
        }
    )
    if colour == "green":
        frame["trip_type"] = 1.0
    return frame


def write_month(
    path: Path, year: int, month: int, rows: int, seed: int, colour: str, shift: float = 0.0
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = generate_month(year, month, rows=rows, seed=seed, colour=colour, shift=shift)
    frame.to_parquet(path, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.generate",
        description="Write seeded, TLC-shaped monthly trip files "
        "(e.g. green_tripdata_2024-01.parquet) to a folder.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the files to")
    parser.add_argument("--colour", choices=["green", "yellow"], default="green")
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--months", type=int, nargs="+", default=[1, 2], help="months (1-12)")
    parser.add_argument("--rows", type=int, default=20_000, help="trips per month")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shift", type=float, default=0.0, help="0-1: longer trips on slower roads (default: 0)"
    )
    args = parser.parse_args(argv)
    for month in args.months:
        if not 1 <= month <= 12:
            parser.error(f"--months: {month} is not a month (1-12)")
        name = f"{args.colour}_tripdata_{args.year}-{month:02d}.parquet"
        if not 0.0 <= args.shift <= 1.0:
            parser.error(f"--shift: {args.shift} is not between 0 and 1")
        path = args.out / name
        print(write_month(path, args.year, month, args.rows, args.seed, args.colour, args.shift))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
