"""mlops_auth.resource_cache: a run's requirements and a name's model-or-prompt kind, kept."""

from __future__ import annotations

from mlops_auth import resource_cache
from mlops_auth.cache import Locked


def test_a_run_s_requirements_are_kept_but_a_missing_run_is_asked_again():
    asked = []

    def original(run_id, action):
        asked.append(run_id)
        return None if run_id == "missing" else (("experiment", "1"), [action])

    requirement = resource_cache.cached_run_requirement(original, Locked(10, None))
    anchor, first = requirement("r1", "update")
    first.append("a logged model's")  # as MLflow's log_batch check does to the list it gets
    assert requirement("r1", "update") == (("experiment", "1"), ["update"])
    assert requirement("missing", "read") is None and requirement("missing", "read") is None
    assert asked == ["r1", "missing", "missing"]


def test_a_name_s_kind_is_kept_but_an_unknown_name_is_asked_again():
    asked, names = [], iter(["m", "m", "new", "new"])

    def original():
        asked.append(1)
        return None if len(asked) > 1 else ("registered_model", "m")

    target = resource_cache.cached_model_target(original, lambda: next(names), Locked(10, 60))
    assert target() == target() == ("registered_model", "m")
    assert target() is None and target() is None
    assert len(asked) == 3


def test_it_wraps_the_pinned_mlflow_s_lookups(auth):
    before = (auth._run_requirement, auth._registered_model_or_prompt_target)
    resource_cache.install(auth)
    assert auth._run_requirement.__name__ == "run_requirement"
    assert (auth._run_requirement, auth._registered_model_or_prompt_target) != before
