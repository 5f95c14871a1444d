"""Run the scoring job of a deployed service stack now (besides its monthly schedule).

    python -m scripts.run_scoring dev --month 2024-03           # the stack's input and output
    python -m scripts.run_scoring dev --month=-2 --shards 8     # two months back, 8 tasks
    python -m scripts.run_scoring dev --input s3://b/yellow_tripdata_2024-0{1,2,3}.parquet \\
        --output s3://b/scores/q1/ --model-version 7

AWS: submits the Batch job (an array of N tasks when N > 1). GCP: executes the Cloud Run job
with N tasks. Prints what it started; exits non-zero with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.run_training import RunError, read_outputs, require, run_cloud_run_job
from services.deploy.config import batch_job_name

MONTH = "{month}"


def command(outputs: dict, args) -> tuple[list[str], int]:
    """The job's arguments and its number of shards, from the stack's defaults and the flags."""
    inputs = args.input or [outputs["scoringInput"]]
    output = args.output or outputs["scoringOutput"]
    shards = int(outputs["scoringShards"]) if args.shards is None else args.shards
    if not 1 <= shards <= 10_000:
        raise RunError(f"--shards: must be 1-10000, got {shards}")
    argv = ["--input", *inputs, "--output", output, "--shards", str(shards)]
    if any(MONTH in u for u in [*inputs, output]):
        if args.month is None:
            raise RunError(f"the input or output holds {MONTH}: give --month YYYY-MM (or e.g. -2)")
        argv.append(f"--month={args.month}")
    elif args.month is not None:
        raise RunError(f"--month given but neither the input nor the output holds {MONTH}")
    if args.model_version:
        argv += ["--model-version", args.model_version]
    return argv, shards


def run_aws(outputs: dict, stack: str, argv: list[str], shards: int) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    request = {
        "jobName": batch_job_name(stack),
        "jobQueue": outputs["scoringJobQueue"],
        "jobDefinition": outputs["scoringJobDefinition"],
        "containerOverrides": {"command": argv},
    }
    if shards > 1:  # Batch array jobs have 2 to 10,000 children
        request["arrayProperties"] = {"size": shards}
    try:
        response = boto3.client("batch").submit_job(**request)
    except (BotoCoreError, ClientError) as exc:
        raise RunError(f"batch:SubmitJob: {exc}") from exc
    return response["jobArn"]


def run_gcp(outputs: dict, argv: list[str], shards: int) -> str:
    # Overrides need run.jobs.runWithOverrides (roles/run.jobsExecutorWithOverrides).
    body = {"overrides": {"containerOverrides": [{"args": argv}], "taskCount": shards}}
    return run_cloud_run_job(outputs["scoringJob"], body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.run_scoring",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("stack", help="service stack name (dev, staging, prod)")
    parser.add_argument("--input", nargs="+", metavar="URI", help="default: the stack's input")
    parser.add_argument("--output", metavar="URI", help="default: the stack's output prefix")
    parser.add_argument("--month", help="for {month}: YYYY-MM, or 0, -1, -2 ... months back")
    parser.add_argument("--shards", type=int, help="parallel tasks (default: the stack's)")
    parser.add_argument("--model-version", help="score with this version, not the champion")
    parser.add_argument(
        "--outputs-file", type=Path, help="use these stack outputs (JSON) instead of asking Pulumi"
    )
    args = parser.parse_args(argv)
    try:
        outputs = read_outputs(args.stack, args.outputs_file, ["cloud"])
        job = (
            ["scoringJobQueue", "scoringJobDefinition"]
            if outputs["cloud"] == "aws"
            else ["scoringJob"]
        )
        require(outputs, args.stack, [*job, "scoringInput", "scoringOutput", "scoringShards"])
        job_args, shards = command(outputs, args)
        if outputs["cloud"] == "aws":
            started = run_aws(outputs, args.stack, job_args, shards)
        else:
            started = run_gcp(outputs, job_args, shards)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"started scoring for {args.stack} ({shards} shard(s)): {started}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
