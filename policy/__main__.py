"""The mlops policy pack: `pulumi preview|up --policy-pack policy/` (the workflows pass it)."""

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy

from policy.rules import RULES


def _policy(name: str, description: str, check) -> ResourceValidationPolicy:
    def validate(args, report_violation) -> None:
        for message in check(args.resource_type, args.props):
            report_violation(message, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


PolicyPack(
    name="mlops-security",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_policy(name, description, check) for name, (description, check) in RULES.items()],
)
