"""The tracking VM's Python environment, read from uv.lock: exactly the locked versions, hash-checked.

pyproject.toml declares the VM's roots as dependency groups (`server-aws`, `server-gcp`) and the
installer (`vm-installer`: uv). This module walks uv.lock from a group's roots for the VM's
platform (CPython 3.11 on x86-64 Linux, glibc up to Ubuntu 24.04's 2.39), keeping each package's
locked version and the hashes of the wheels that platform can install. The result is a
requirements file for `uv pip sync --require-hashes --only-binary :all:`: every package pinned,
nothing resolved on the VM, a changed or substituted file refused.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

LOCK_PATH = Path(__file__).resolve().parent.parent / "uv.lock"
PROJECT = "mlops-platform"
PYTHON = "3.11"
"""The VM's interpreter (uv-managed; Ubuntu 24.04's own python3 is 3.12, which the lock is not for)."""
GLIBC_MINOR = 39  # Ubuntu 24.04
ENVIRONMENT = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.11.0",
    "python_version": PYTHON,
    "sys_platform": "linux",
}


class LockError(ValueError):
    """uv.lock cannot give the VM what it needs; the message names the package and why."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]  # "sha256:..."
    wheel_url: str  # the preferred wheel for the VM (the first of hashes)


def _platforms() -> list[str]:
    manylinux = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)]
    return [*manylinux, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


@cache
def vm_tags() -> tuple[Tag, ...]:
    """Wheel tags the VM's interpreter installs, most preferred first (as installers rank them)."""
    platforms = _platforms()
    return (
        *cpython_tags(python_version=(3, 11), abis=["cp311"], platforms=platforms),
        *compatible_tags(python_version=(3, 11), interpreter="cp311", platforms=platforms),
    )


def _applies(marker: str | None, extra: str = "") -> bool:
    return marker is None or Marker(marker).evaluate({**ENVIRONMENT, "extra": extra})


class Lock:
    def __init__(self, path: Path = LOCK_PATH) -> None:
        self.path = path
        data = tomllib.loads(path.read_text())
        self.packages: dict[str, list[dict]] = {}
        for package in data["package"]:
            self.packages.setdefault(canonicalize_name(package["name"]), []).append(package)

    def package(self, name: str, version: str | None = None) -> dict:
        candidates = self.packages.get(canonicalize_name(name), [])
        if version is not None:
            candidates = [p for p in candidates if p.get("version") == version]
        if len(candidates) > 1:  # a fork: keep the one resolved for the VM's platform
            candidates = [
                p
                for p in candidates
                if any(_applies(m) for m in p.get("resolution-markers", [None]))
            ]
        if len(candidates) != 1:
            raise LockError(f"{self.path.name}: no single locked {name!r} for the VM")
        return candidates[0]

    def group(self, group: str) -> list[Pin]:
        """The closure of a dependency group of this project, for the VM, sorted by name."""
        project = self.package(PROJECT)
        roots = project.get("dev-dependencies", {}).get(group)
        if roots is None:
            raise LockError(f"{self.path.name}: no dependency group {group!r} in {PROJECT}")
        seen: dict[str, dict] = {}
        extras_done: set[tuple[str, str]] = set()
        todo = list(roots)
        while todo:
            dependency = todo.pop()
            if not _applies(dependency.get("marker")):
                continue
            package = self.package(dependency["name"], dependency.get("version"))
            key = canonicalize_name(package["name"])
            if key not in seen:
                seen[key] = package
                todo.extend(package.get("dependencies", []))
            for extra in dependency.get("extra", []):
                if (key, extra) not in extras_done:
                    extras_done.add((key, extra))
                    todo.extend(package.get("optional-dependencies", {}).get(extra, []))
        return sorted((self.pin(p) for p in seen.values()), key=lambda pin: pin.name)

    def pin(self, package: dict) -> Pin:
        """The package's version and the hashes of every wheel the VM could pick, best first."""
        rank = {tag: i for i, tag in enumerate(vm_tags())}
        wheels = []
        for wheel in package.get("wheels", []):
            filename = wheel["url"].rsplit("/", 1)[-1]
            tags = parse_wheel_filename(filename)[3]
            best = min((rank[t] for t in tags if t in rank), default=None)
            if best is not None:
                wheels.append((best, wheel))
        if not wheels:
            raise LockError(
                f"{package['name']} {package['version']}: no wheel in {self.path.name} for "
                f"CPython {PYTHON} on x86-64 Linux (the VM installs wheels only)"
            )
        wheels.sort(key=lambda w: w[0])
        return Pin(
            name=package["name"],
            version=package["version"],
            hashes=tuple(w["hash"] for _, w in wheels),
            wheel_url=wheels[0][1]["url"],
        )


def requirements(group: str, lock: Lock | None = None) -> str:
    """A requirements file for `uv pip sync --require-hashes`: the group's every package."""
    pins = (lock or Lock()).group(group)
    lines = [f"# {group} from uv.lock (infra/vm_requirements.py): CPython {PYTHON}, x86-64 Linux"]
    for pin in pins:
        hashes = "".join(f" \\\n    --hash={h}" for h in pin.hashes)
        lines.append(f"{pin.name}=={pin.version}{hashes}")
    return "\n".join(lines) + "\n"


def installer(lock: Lock | None = None) -> Pin:
    """uv, as locked in the `vm-installer` group: the wheel the VM downloads and checks."""
    [pin] = (lock or Lock()).group("vm-installer")
    return pin


if __name__ == "__main__":  # `python -m infra.vm_requirements GROUP`: the file the VM installs
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m infra.vm_requirements server-aws|server-gcp")
    try:
        sys.stdout.write(requirements(sys.argv[1]))
    except LockError as exc:
        sys.exit(f"error: {exc}")
