"""Run the training job of a deployed service stack now (besides its schedule).

    python -m scripts.run_training dev                # reads `pulumi stack output` of services/
    python -m scripts.run_training dev --outputs-file outputs.json

AWS: starts the Fargate task with the schedule's network settings (ecs:RunTask). GCP: executes the
Cloud Run job. Prints what it started; exits non-zero with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from monitoring.retrain import CloudRunJob, EcsTask, TriggerError

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"


RunError = TriggerError


def stack_outputs(stack: str) -> dict:
    if shutil.which("pulumi") is None:
        raise RunError("the Pulumi CLI is not installed (https://www.pulumi.com/docs/install/)")
    result = subprocess.run(
        ["pulumi", "stack", "output", "--json", "--stack", stack, "--cwd", str(SERVICES_DIR)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RunError(
            f"pulumi stack output --stack {stack}: {result.stderr.strip().splitlines()[-1:]}"
        )
    return json.loads(result.stdout)


def require(outputs: dict, stack: str, keys: list[str]) -> dict:
    missing = [k for k in keys if k not in outputs]
    if missing:
        raise RunError(
            f"stack {stack} has no output(s) {', '.join(missing)}; deploy the services first"
        )
    return outputs


def read_outputs(stack: str, outputs_file: Path | None, required: list[str]) -> dict:
    """The service stack's outputs (from Pulumi, or a JSON file), with `required` present."""
    outputs = json.loads(outputs_file.read_text()) if outputs_file else stack_outputs(stack)
    return require(outputs, stack, required)


def run_aws(outputs: dict) -> str:
    task = EcsTask(
        outputs["cluster"],
        outputs["trainingJob"],
        outputs["trainingSubnets"],
        outputs["trainingSecurityGroups"],
    )
    return task.start()


def run_cloud_run_job(job: str, body: dict) -> str:
    return CloudRunJob(job, body).start()


def run_gcp(outputs: dict) -> str:
    return run_cloud_run_job(outputs["trainingJob"], {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.run_training", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("stack", help="service stack name (dev, staging, prod)")
    parser.add_argument(
        "--outputs-file", type=Path, help="use these stack outputs (JSON) instead of asking Pulumi"
    )
    args = parser.parse_args(argv)
    try:
        outputs = read_outputs(args.stack, args.outputs_file, ["cloud", "trainingJob"])
        started = run_aws(outputs) if outputs["cloud"] == "aws" else run_gcp(outputs)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"started training for {args.stack}: {started}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
