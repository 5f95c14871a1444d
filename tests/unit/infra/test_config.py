"""The platform stack's config model: defaults per stack kind, and errors that name the key."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, load, stack_kind


def test_defaults_follow_the_stack_kind():
    dev, prod = load({"cloud": "aws"}, "dev"), load({"cloud": "aws"}, "prod")
    assert (dev.protect, dev.multiAz) == (False, False)
    assert (prod.protect, prod.multiAz) == (True, True) and prod.backupRetentionDays >= 7


def test_namespaced_json_values_are_decoded():
    cfg = load(
        {
            "mlops-platform:cloud": "aws",
            "mlops-platform:allowedCidrs": '["198.51.100.0/24"]',
            "aws:region": "x",
        },
        "staging",
    )
    assert cfg.allowedCidrs == ("198.51.100.0/24",)


def test_explicit_override_wins():
    assert load({"cloud": "aws", "instanceType": "t3.xlarge"}, "dev").instanceType == "t3.xlarge"


def test_stack_kind_from_name():
    assert stack_kind("dev-alice") == "dev"
    with pytest.raises(ConfigError, match="stack name 'qa'.*dev, staging, prod"):
        stack_kind("qa")


@pytest.mark.parametrize(
    ("raw", "stack", "message"),
    [
        ({}, "dev", "mlops-platform:cloud is required; allowed: aws, gcp"),
        ({"cloud": "azure"}, "dev", "mlops-platform:cloud: Input should be 'aws' or 'gcp'"),
        (
            {"cloud": "aws", "allowedCidrs": '["0.0.0.0/0"]'},
            "dev",
            "mlops-platform:allowedCidrs: 0.0.0.0/0 would open",
        ),
        (
            {"cloud": "aws", "allowedCidrs": '["10.0.0.1/8"]'},
            "dev",
            "mlops-platform:allowedCidrs: '10.0.0.1/8' is not a CIDR",
        ),
        (
            {"cloud": "aws", "vpcCidr": "8.8.0.0/16"},
            "dev",
            "mlops-platform:vpcCidr: 8.8.0.0/16 must be a private range",
        ),
        (
            {"cloud": "aws", "instanceTyp": "t3.small"},
            "dev",
            "mlops-platform:instanceTyp: unknown key; allowed keys: ",
        ),
        (
            {"cloud": "aws", "protect": "false"},
            "prod",
            "mlops-platform:protect: prod stacks must keep protection on",
        ),
        (
            {"cloud": "aws", "backupRetentionDays": "3"},
            "prod",
            "mlops-platform:backupRetentionDays: prod keeps backups at least 7 days",
        ),
        (
            {"cloud": "aws", "dbEngineVersion": "12"},
            "dev",
            "mlops-platform:dbEngineVersion: PostgreSQL 12: supported major versions are 16 and 17",
        ),
        *(
            (
                {"cloud": "aws", "domain": bad},
                "dev",
                f"mlops-platform:domain: '{bad}' is not a DNS name like mlflow.example.com",
            )
            for bad in (
                "203.0.113.7",
                "localhost",
                "MLflow.Example.com",
                "mlflow.example.com.",
                "https://mlflow.example.com",
                "-mlflow.example.com",
                "mlflow_1.example.com",
                f"{'a' * 64}.example.com",
            )
        ),  # fmt: skip
        (
            {"cloud": "aws", "mlflowWorkers": "0"},
            "dev",
            "mlops-platform:mlflowWorkers: Input should be greater than or equal to 1",
        ),
        (
            {"cloud": "aws", "authCacheSeconds": "301"},
            "dev",
            "mlops-platform:authCacheSeconds: Input should be less than or equal to 300",
        ),
        (
            {"cloud": "aws", "maxRequestBytes": "100"},
            "dev",
            "mlops-platform:maxRequestBytes: Input should be greater than or equal to 1024",
        ),
        (
            {"cloud": "aws", "aiGateway": "maybe"},
            "dev",
            "mlops-platform:aiGateway: Input should be a valid boolean",
        ),
    ],
)
def test_bad_value_names_the_key_and_what_is_allowed(raw, stack, message):
    with pytest.raises(ConfigError) as err:
        load(raw, stack)
    assert message in str(err.value)


def test_a_domain_is_optional_and_kept_as_given():
    assert load({"cloud": "aws"}, "dev").domain is None
    assert load({"cloud": "gcp", "gcp:project": "p", "gcp:region": "europe-west1",
                 "domain": "mlflow.team-1.example.co.uk"}, "prod").domain == (
        "mlflow.team-1.example.co.uk"
    )  # fmt: skip


def test_admin_password_is_never_part_of_the_model():
    cfg = load({"cloud": "aws", "mlops-platform:adminPassword": "s3cret"}, "dev")
    assert "s3cret" not in cfg.model_dump_json()


def test_gcp_needs_project_and_region_and_its_own_sizes():
    with pytest.raises(
        ConfigError, match="gcp:project is required when mlops-platform:cloud is gcp"
    ):
        load({"cloud": "gcp", "gcp:region": "europe-west1"}, "dev")
    with pytest.raises(
        ConfigError, match="mlops-platform:dbInstanceClass: 'db.t4g.micro' is not a gcp size"
    ):
        load(
            {
                "cloud": "gcp",
                "gcp:project": "p",
                "gcp:region": "r",
                "dbInstanceClass": "db.t4g.micro",
            },
            "dev",
        )
    with pytest.raises(
        ConfigError, match="mlops-platform:zone: us-east1-b is not in gcp:region europe-west1"
    ):
        load(
            {
                "cloud": "gcp",
                "gcp:project": "p",
                "gcp:region": "europe-west1",
                "zone": "us-east1-b",
            },
            "dev",
        )
    cfg = load({"cloud": "gcp", "gcp:project": "p", "gcp:region": "europe-west1"}, "prod")
    # No zone set: the program looks the region's zones up (tests/infra), never "<region>-a".
    assert (cfg.instanceType, cfg.zone) == ("e2-standard-2", None)


GCP = {"cloud": "gcp", "gcp:project": "p", "gcp:region": "europe-west1"}


def test_the_database_limit_comes_from_the_class_or_the_stack_file():
    assert load({"cloud": "aws"}, "dev").max_connections == 84  # db.t4g.micro, 75% of 1 GiB
    assert load(GCP, "dev").max_connections == 50  # db-g1-small
    assert load({**GCP, "dbInstanceClass": "db-custom-4-16384"}, "prod").max_connections == 500
    assert load({"cloud": "aws", "dbMaxConnections": 300}, "dev").max_connections == 300


def test_a_class_of_unknown_limit_needs_db_max_connections():
    with pytest.raises(
        ConfigError, match=r"mlops-platform:dbMaxConnections: required for .*db.x2g.large"
    ):
        load({"cloud": "aws", "dbInstanceClass": "db.x2g.large"}, "dev")
    assert (
        load(
            {"cloud": "aws", "dbInstanceClass": "db.x2g.large", "dbMaxConnections": 1000}, "dev"
        ).max_connections
        == 1000
    )


def test_more_workers_than_the_database_can_serve_is_a_config_error():
    """db-g1-small allows 50 connections: 8 workers (9 processes x 3 pools of 2) would need 54."""
    with pytest.raises(
        ConfigError, match=r"mlops-platform:mlflowWorkers: workers=8: the database allows 50"
    ):
        load({**GCP, "mlflowWorkers": 8}, "dev")
    assert load({**GCP, "mlflowWorkers": 3}, "dev").mlflowWorkers == 3


def test_workers_that_would_not_fit_the_vm_are_a_config_error():
    """Measured: ~250 MB for the server's master and ~280 MB per worker (a quarter more at
    peaks); a 2 GB VM keeps 512 MB for the system, so 3 workers fit and 4 do not."""
    assert load({"cloud": "aws", "mlflowWorkers": 3}, "dev").mlflowWorkers == 3
    with pytest.raises(
        ConfigError,
        match=r"mlflowWorkers: 4 workers need about 1712 MB .*t3.small has 2048 MB.*allowed here: 1-3 workers",
    ):
        load({"cloud": "aws", "mlflowWorkers": 4}, "dev")
    with pytest.raises(ConfigError, match=r"instanceType: t3.micro \(1024 MB\) is too small"):
        load({"cloud": "aws", "instanceType": "t3.micro"}, "dev")
    assert (
        load(
            {
                **GCP,
                "mlflowWorkers": 4,
                "dbInstanceClass": "db-custom-1-3840",
                "instanceType": "e2-medium",
            },
            "dev",
        ).mlflowWorkers
        == 4
    )


def test_the_ai_gateway_is_off_and_bodies_are_bounded_unless_the_stack_says_otherwise():
    """MLflow's AI gateway lets any signed-in user create provider secrets and endpoints, and
    nothing here uses it; a request body is read up to 16 MiB."""
    cfg = load({"cloud": "aws"}, "dev")
    assert (cfg.aiGateway, cfg.maxRequestBytes, cfg.authCacheSeconds) == (False, 16 << 20, 60)
    on = load({"cloud": "aws", "aiGateway": "true", "maxRequestBytes": "1048576"}, "dev")
    assert (on.aiGateway, on.maxRequestBytes) == (True, 1 << 20)


def test_the_vm_image_is_pinned_per_cloud_and_one_image_never_a_pattern():
    from infra.config import PINNED_IMAGES

    gcp = {"cloud": "gcp", "gcp:project": "p", "gcp:region": "europe-west1"}
    assert load({"cloud": "aws"}, "dev").vm_image == PINNED_IMAGES["aws"]
    assert load(gcp, "dev").vm_image == PINNED_IMAGES["gcp"]
    assert load({"cloud": "aws", "vmImage": "ami-0123456789abcdef0"}, "dev").vm_image == (
        "ami-0123456789abcdef0"
    )
    for cloud, raw, image in (
        ("aws", {"cloud": "aws"}, "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"),
        ("aws", {"cloud": "aws"}, PINNED_IMAGES["gcp"]),  # the other cloud's image
        ("gcp", gcp, PINNED_IMAGES["aws"]),
        ("gcp", gcp, "ubuntu-2404-lts-amd64"),  # a family follows releases
    ):
        with pytest.raises(ConfigError) as err:
            load({**raw, "vmImage": image}, "dev")
        assert f"mlops-platform:vmImage: {image!r} is not one {cloud} image" in str(err.value)
        assert "no wildcards" in str(err.value)


def test_replicas_share_the_database_with_one_more_during_a_roll():
    from infra.config import load as load_config
    from infra.mlflow_server import pool_for

    one = load_config({"cloud": "aws"}, "dev")
    assert (one.trackingReplicas, one.servers_at_once) == (1, 1)
    two = load_config({"cloud": "aws", "trackingReplicas": "2", "dbInstanceClass": "db.t4g.medium"},
                      "dev")  # fmt: skip
    assert two.servers_at_once == 3
    # Three servers' pools fit where one server's were sized alone.
    assert pool_for(two.max_connections, 2, 3) < pool_for(two.max_connections, 2, 1)
    with pytest.raises(ConfigError) as err:
        load_config({"cloud": "aws", "trackingReplicas": "5"}, "dev")  # db.t4g.micro: 84
    assert str(err.value) == (
        "mlops-platform:mlflowWorkers: workers=2: the database allows 84 connections, too few "
        "for 6 servers x 3 processes x 3 pools of 2 with 10 reserved; use fewer workers, fewer "
        "replicas or a larger database (dbInstanceClass db.t4g.micro, trackingReplicas 5)"
    )
    with pytest.raises(ConfigError, match="trackingReplicas: Input should be less than or equal"):
        load_config({"cloud": "aws", "trackingReplicas": "11"}, "dev")
