"""Every resource the platform and service programs declare passes every policy of the pack,
for every stack file on both clouds; and the pack itself loads as Pulumi would load it."""

from __future__ import annotations

from policy.rules import RULES


def violations(declared) -> list[str]:
    found = []
    for resource in declared.resources:
        props = {
            k: (v["value"] if isinstance(v, dict) and set(v) >= {"value"} and len(v) == 2 else v)
            for k, v in resource["inputs"].items()
        }
        for name, (_, check) in RULES.items():
            found += [f"{name}: {resource['name']}: {m}" for m in check(resource["type"], props)]
    return found


def test_aws_platform_passes_the_policy_pack(declared):
    assert violations(declared) == []


def test_gcp_platform_passes_the_policy_pack(declared_gcp):
    assert violations(declared_gcp) == []


def test_aws_services_pass_the_policy_pack(services_aws):
    assert violations(services_aws) == []


def test_gcp_services_pass_the_policy_pack(services_gcp):
    assert violations(services_gcp) == []


def test_pack_defines_each_rule_as_a_mandatory_policy():
    import pulumi_policy

    created = []
    original = pulumi_policy.PolicyPack.__init__

    def capture(self, name, policies, **kwargs):
        created.append((name, [p.name for p in policies], kwargs.get("enforcement_level")))

    pulumi_policy.PolicyPack.__init__ = capture
    try:
        import runpy

        runpy.run_module("policy.__main__", run_name="__main__")
    finally:
        pulumi_policy.PolicyPack.__init__ = original
    [(name, policies, level)] = created
    assert name == "mlops-security" and policies == list(RULES)
    assert level == pulumi_policy.EnforcementLevel.MANDATORY
