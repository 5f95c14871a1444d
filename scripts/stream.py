"""Put ride events on the input stream and read predictions from the output stream (Kinesis).

    python -m scripts.stream put '{"ride_id": "r1", "ride": {"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.8}}'
    python -m scripts.stream read [--ride-id r1] [--wait 30]

Locally (`make demo`) the streams and their endpoint come from .local/endpoints.json and the
credentials from .local/s3.env; on AWS name the streams (the services stack's outputs
rideEventsStream and ridePredictionsStream) and boto3 finds your credentials as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = ROOT / ".local" / "endpoints.json"
S3_ENV = ROOT / ".local" / "s3.env"


def local_defaults() -> dict[str, str]:
    """The local platform's streams, endpoint and credentials, when it has run."""
    if not ENDPOINTS.exists():
        return {}
    found = json.loads(ENDPOINTS.read_text())
    if S3_ENV.exists():
        for line in S3_ENV.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and key != "AWS_ENDPOINT_URL":
                os.environ.setdefault(key, value)
    return {
        "events": found.get("rideEventsStream", ""),
        "predictions": found.get("ridePredictionsStream", ""),
        "endpoint": found.get("streamsEndpointUrl", ""),
    }


def kinesis(endpoint: str):
    import boto3

    return boto3.client("kinesis", endpoint_url=endpoint or None)


def put(args: argparse.Namespace) -> int:
    try:
        ride_id = json.loads(args.event)["ride_id"]
    except (ValueError, KeyError, TypeError):
        ride_id = "-"  # the handler will dead-letter it with its reason: sent as given
    answer = kinesis(args.endpoint_url).put_record(
        StreamName=args.events, Data=args.event.encode(), PartitionKey=str(ride_id)
    )
    print(f"put on {args.events}: shard {answer['ShardId']}, sequence {answer['SequenceNumber']}")
    return 0


def read(args: argparse.Namespace) -> int:
    """Every prediction the output stream keeps (or one ride's), waiting up to --wait for one."""
    client = kinesis(args.endpoint_url)
    shards = client.list_shards(StreamName=args.predictions)["Shards"]
    iterators = [
        client.get_shard_iterator(StreamName=args.predictions, ShardId=s["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for s in shards
    ]  # fmt: skip
    deadline, found = time.monotonic() + args.wait, 0
    while True:
        for i, iterator in enumerate(iterators):
            answer = client.get_records(ShardIterator=iterator, Limit=1000)
            iterators[i] = answer["NextShardIterator"]
            for record in answer["Records"]:
                prediction = json.loads(record["Data"])
                if args.ride_id in (None, prediction.get("ride_id")):
                    print(json.dumps(prediction))
                    found += 1
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not found:
        print(f"no prediction{' for ' + args.ride_id if args.ride_id else ''} on "
              f"{args.predictions} within {args.wait:g} s", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    local = local_defaults()
    parser = argparse.ArgumentParser(prog="python -m scripts.stream", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--events",
        default=local.get("events"),
        help="the input stream (default: the local platform's)",
    )
    parser.add_argument(
        "--predictions",
        default=local.get("predictions"),
        help="the output stream (default: the local platform's)",
    )
    parser.add_argument("--endpoint-url", default=local.get("endpoint"),
                        help="Kinesis endpoint (default: the local platform's; AWS's without one)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p_put = sub.add_parser("put", help="put one ride event (JSON) on the input stream")
    p_put.add_argument("event", help='{"ride_id": ..., "ride": {...}}')
    p_read = sub.add_parser("read", help="print the predictions on the output stream")
    p_read.add_argument("--ride-id", help="only this ride's")
    p_read.add_argument("--wait", type=float, default=30.0,
                        help="seconds to wait for a prediction (default 30)")  # fmt: skip
    args = parser.parse_args(argv)
    needed = "events" if args.command == "put" else "predictions"
    if not getattr(args, needed):
        parser.error(f"--{needed}: no local platform (make demo) to take it from; name the stream")
    return {"put": put, "read": read}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
