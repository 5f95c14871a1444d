"""Optimisation: what the auth app loads a run or a registered model for, kept.

For a run's endpoints MLflow loads the whole run (tags, params, latest metrics) only to learn its
experiment, which never changes: the permission requirements it derives are kept (bounded, no
TTL; a missing run is asked again, it may be created). For a registry lookup it loads the
registered model with all its versions only to learn whether the name is a model or a prompt:
kept for the auth cache's TTL.
"""

from __future__ import annotations

from mlops_auth.cache import MISSING, Locked
from mlops_auth.compat import require

RUN_CACHE_SIZE = 100_000
MODEL_CACHE_SIZE = 10_000
NEEDS = ("_run_requirement", "_registered_model_or_prompt_target", "_get_request_param",
         "auth_config")  # fmt: skip


def install(auth) -> None:
    require(auth, NEEDS, "resource_cache")
    auth._run_requirement = cached_run_requirement(
        auth._run_requirement, Locked(RUN_CACHE_SIZE, None)
    )
    auth._registered_model_or_prompt_target = cached_model_target(
        auth._registered_model_or_prompt_target,
        lambda: auth._get_request_param("name"),
        Locked(MODEL_CACHE_SIZE, auth.auth_config.auth_cache_ttl_seconds),
    )


def cached_run_requirement(original, cache: Locked):
    # MLflow appends to the requirement list it gets (a logged model's, for log_metric and
    # log_batch), so the cache keeps a tuple and every caller gets a list of its own.
    def run_requirement(run_id: str, action: str):
        kept = cache.get((run_id, action))
        if kept is MISSING:
            resolved = original(run_id, action)
            if resolved is None:
                return None
            kept = (resolved[0], tuple(resolved[1]))
            cache.put((run_id, action), kept)
        anchor, requirements = kept
        return anchor, list(requirements)

    return run_requirement


def cached_model_target(original, read_name, cache: Locked):
    def registered_model_or_prompt_target():
        name = read_name()  # raises MLflow's own 400 when the request names none
        target = cache.get(name)
        if target is not MISSING:
            return target
        target = original()
        if target is not None:
            cache.put(name, target)
        return target

    return registered_model_or_prompt_target
