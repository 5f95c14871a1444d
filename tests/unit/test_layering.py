"""The house's layers, as docs/architecture.md draws them, checked on every import of the
repository's packages (read with `ast`, so imports inside functions and under TYPE_CHECKING
count too): no import cycle between modules, and every import between units goes down a layer.

    5  entry points        scripts, policy
    4  service stacks      services.deploy (the services' Pulumi program)
    3  platform            infra (the platform's Pulumi program)
    2  services and jobs   training, services.model_api, streaming, scoring, monitoring (none
                           imports another)
    1  core                trip_model (what a ride is, the predictors)
    0  foundations         storage, tracking_ca, infra.server_site (runs inside the MLflow server)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {
    "scripts": 6, "policy": 6,
    "benchmarks": 5,
    "services.deploy": 4, "local_platform": 4,
    "infra": 3,
    "training": 2, "services.model_api": 2, "scoring": 2, "monitoring": 2, "streaming": 2,
    "trip_model": 1,
    "storage": 0, "tracking_ca": 0, "infra.server_site": 0,
}  # fmt: skip
PACKAGES = sorted({unit.split(".")[0] for unit in LAYERS})
# Imports against the layers that are still there, each with its way out: the test fails on any
# other, and on one of these once it is gone (then take it off the list).
KNOWN: dict[tuple[str, str], str] = {}


def unit_of(module: str) -> str:
    parts = module.split(".")
    for size in (3, 2, 1):
        if ".".join(parts[:size]) in LAYERS:
            return ".".join(parts[:size])
    raise AssertionError(f"{module}: in no layer of {sorted(LAYERS)}")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The repository's modules `path` imports (a `from a.b import c` names a.b.c when that is
    a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in known:
                    found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back():
    assert cycles(graph()) == []


def test_every_import_between_units_goes_down_a_layer():
    against: dict[tuple[str, str], list[str]] = {}
    for module, targets in graph().items():
        for target in targets:
            a, b = unit_of(module), unit_of(target)
            if a != b and LAYERS[b] >= LAYERS[a]:
                against.setdefault((a, b), []).append(f"{module} -> {target}")
    unexpected = {k: v for k, v in against.items() if k not in KNOWN}
    assert unexpected == {}, "imports against the layers (docs/architecture.md)"
    assert set(against) == set(KNOWN), "a known exception is gone: take it off KNOWN"


def test_the_check_sees_a_cycle_and_an_upward_import():
    """The two checks themselves, on a made-up house."""
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "b": {"a.x"}}) == [
        ["a.x", "a.y", "a.z"]
    ]
    assert unit_of("services.model_api.app") == "services.model_api"
    assert unit_of("infra.server_site.mlops_auth.app") == "infra.server_site"
    assert LAYERS[unit_of("trip_model.predict")] < LAYERS[unit_of("scoring.job")]
