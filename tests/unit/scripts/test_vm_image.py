"""scripts/vm-image: the newest image of the pinned series and the command that bumps the pin."""

from __future__ import annotations

import os
import stat

import boto3
import pytest
from botocore.stub import Stubber

from infra.config import PINNED_IMAGES
from scripts import vm_image

PREFIX = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-"


def stubbed_ec2(images: list[dict]):
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")  # fmt: skip
    stub = Stubber(ec2)
    stub.add_response(
        "describe_images",
        {"Images": images},
        {
            "Owners": ["099720109477"],
            "Filters": [
                {"Name": "name", "Values": [f"{PREFIX}*"]},
                {"Name": "architecture", "Values": ["x86_64"]},
            ],
        },
    )
    stub.activate()
    return ec2


def test_a_newer_ami_is_reported_with_the_bump_command():
    ec2 = stubbed_ec2(
        [
            {"Name": f"{PREFIX}20261130", "ImageId": "ami-0new", "CreationDate": "2026-11-30T10:00:00.000Z"},
            {"Name": PINNED_IMAGES["aws"], "ImageId": "ami-0old", "CreationDate": "2025-12-12T10:00:00.000Z"},
        ]
    )  # fmt: skip
    text = vm_image.report("dev", ec2)
    assert f"pinned: {PINNED_IMAGES['aws']}" in text
    assert f"newest: {PREFIX}20261130 (ami-0new, created 2026-11-30)" in text
    assert f"pulumi config set mlops-platform:vmImage {PREFIX}20261130 --stack dev" in text
    assert "replaces the tracking VM" in text


def test_the_pinned_image_being_the_newest_is_up_to_date():
    ec2 = stubbed_ec2([{"Name": PINNED_IMAGES["aws"], "ImageId": "ami-0old",
                        "CreationDate": "2025-12-12T10:00:00.000Z"}])  # fmt: skip
    text = vm_image.report("prod", ec2)
    assert "up to date" in text and "pulumi config set" not in text


def test_gcp_asks_gcloud_for_the_newest_of_the_series(tmp_path, monkeypatch):
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  mlops-platform:cloud: gcp\n  gcp:project: p1\n"
    )
    monkeypatch.setattr(vm_image, "ROOT", tmp_path)
    gcloud = tmp_path / "bin" / "gcloud"
    gcloud.parent.mkdir()
    gcloud.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
        'echo "ubuntu-2404-noble-amd64-v20261201 2026-12-01T01:02:03.000-07:00"\n'
    )
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{gcloud.parent}{os.pathsep}{os.environ['PATH']}")
    text = vm_image.report("dev")
    assert "newest: ubuntu-2404-noble-amd64-v20261201 (created 2026-12-01)" in text
    assert "pulumi config set mlops-platform:vmImage ubuntu-2404-noble-amd64-v20261201" in text
    args = (gcloud.parent / "args").read_text()
    assert "--project=ubuntu-os-cloud" in args and "name~^ubuntu-2404-noble-amd64-v" in args


def test_an_unknown_stack_names_the_stacks_there(capsys):
    assert vm_image.main(["qa"]) == 1
    err = capsys.readouterr().err
    assert "no stack file Pulumi.qa.yaml" in err and "dev" in err and "prod" in err


def test_a_name_without_a_serial_has_no_series():
    with pytest.raises(vm_image.ImageError, match="no image serial"):
        vm_image.series("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*")
