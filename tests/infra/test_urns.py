"""No resource changes its address by a refactoring: every URN each program declared when
tests/infra/urns/ was written (each stack file, both clouds, both projects) is declared again, as
a resource's URN or as one of its aliases (pulumi.Alias: the engine then moves the resource, it
does not replace it). New resources need no entry but are best added, so a later move keeps
them too; a resource removed on purpose is taken out of its list. Both by rewriting the lists,
which keeps every address listed before (each still declared or aliased) and adds today's:

    python -m tests.infra.test_urns     # writes tests/infra/urns/<project>-<cloud>-<stack>.txt
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

from tests.infra.conftest import (
    GCP_OVERRIDES,
    SERVICES_GCP_OVERRIDES,
    STACKS,
    Declared,
    run_services,
    run_stack,
)

ROOT = Path(__file__).resolve().parents[2]
URNS = Path(__file__).with_name("urns")


def addresses(declared: Declared) -> tuple[set[str], set[str]]:
    """The URNs declared, and those their aliases stand for."""
    urns = {r["urn"] for r in declared.registered}
    aliases = {a for r in declared.registered for a in r["aliases"]}
    return urns, aliases


def check(declared: Declared, listed: str) -> None:
    known = set((URNS / listed).read_text().split())
    urns, aliases = addresses(declared)
    assert urns, "the harness recorded no URN"
    lost = sorted(known - urns - aliases)
    assert not lost, f"{len(lost)} resources would be replaced (no resource or alias): {lost}"


def test_platform_aws_keeps_every_address(declared):
    check(declared, f"mlops-platform-aws-{declared.stack}.txt")


def test_platform_gcp_keeps_every_address(declared_gcp):
    check(declared_gcp, f"mlops-platform-gcp-{declared_gcp.stack}.txt")


def test_services_aws_keep_every_address(services_aws):
    check(services_aws, f"mlops-services-aws-{services_aws.stack}.txt")


def test_services_gcp_keep_every_address(services_gcp):
    check(services_gcp, f"mlops-services-gcp-{services_gcp.stack}.txt")


def test_a_resource_renamed_without_an_alias_is_caught(services_aws):
    """The check can fail: the same record without the model API's service (as if it had been
    renamed, or moved without its alias) is refused, naming the address it had."""
    listed = f"mlops-services-aws-{services_aws.stack}.txt"
    # Its address from before the components (at the root), kept by its alias.
    [gone] = [u for u in (URNS / listed).read_text().split()
              if u.split("::")[2] == "aws:ecs/service:Service"]  # fmt: skip
    registered = [r for r in services_aws.registered if gone not in (r["urn"], *r["aliases"])]
    assert len(registered) == len(services_aws.registered) - 1
    renamed = Declared({"error": None, "resources": [], "outputs": {},
                        "registered": registered}, services_aws.stack)  # fmt: skip
    with pytest.raises(AssertionError, match=re.escape(gone)):
        check(renamed, listed)


def write() -> None:
    URNS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for stack in STACKS:
            runs = {
                f"mlops-platform-aws-{stack}": run_stack(Path(tmp), ROOT / f"Pulumi.{stack}.yaml"),
                f"mlops-platform-gcp-{stack}": run_stack(
                    Path(tmp), ROOT / f"Pulumi.{stack}.yaml", GCP_OVERRIDES
                ),
                f"mlops-services-aws-{stack}": run_services(Path(tmp), stack),
                f"mlops-services-gcp-{stack}": run_services(
                    Path(tmp), stack, SERVICES_GCP_OVERRIDES
                ),
            }
            for name, data in runs.items():
                if data["error"]:
                    sys.exit(f"{name}: {data['error']}")
                declared, aliased = addresses(Declared(data, stack))
                path = URNS / f"{name}.txt"
                listed = set(path.read_text().split()) if path.exists() else set()
                urns = sorted(declared | (listed & aliased))
                path.write_text("\n".join(urns) + "\n")
                print(f"{name}: {len(urns)} URNs")


if __name__ == "__main__":
    write()


def test_every_service_resource_sits_in_the_component_that_creates_it(services_aws, services_gcp):
    """The service stacks are a hierarchy, as the platform's is: at the stack's root only the
    platform's reference and, on GCP, the APIs the stack turns on (infra.gcp.apis)."""
    for declared in (services_aws, services_gcp):
        at_root = sorted(
            r["urn"].split("::")[2] for r in declared.registered
            if "$" not in r["urn"].split("::")[2]
        )  # fmt: skip
        components = {t for t in at_root if t.startswith("mlops:services:")}
        rest = [t for t in at_root if t not in components]
        assert set(rest) <= {"pulumi:pulumi:Stack", "pulumi:pulumi:StackReference",
                             "gcp:projects/service:Service"}, rest  # fmt: skip
        assert rest.count("pulumi:pulumi:Stack") == 1 and len(components) >= 4
