"""The root Dockerfile read one build target at a time: the target's stage and the stages it
builds FROM, which is what `docker build --target` puts in the image."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def stages(path: Path = DOCKERFILE) -> dict[str, tuple[str | None, list[str]]]:
    """Each named stage: the stage it builds FROM (None for an outside image such as
    python:3.11-slim) and its instructions after FROM, continuations joined, comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    found: dict[str, tuple[str | None, list[str]]] = {}
    current: list[str] | None = None
    for line in "\n".join(lines).replace("\\\n", " ").splitlines():
        if not line.strip():
            continue
        if re.match(r"FROM\s", line, re.I):
            words = [w for w in line.split()[1:] if not w.startswith("--")]  # --platform=…
            if len(words) != 3 or words[1].upper() != "AS":
                raise ValueError(f"{path.name}: every stage is named (FROM image AS name): {line}")
            image, name = words[0], words[2]
            if name in found:
                raise ValueError(f"{path.name}: stage {name} is defined twice")
            current = []
            found[name] = (image if image in found else None, current)
        elif current is None:
            raise ValueError(f"{path.name}: an instruction before the first FROM: {line}")
        else:
            current.append(line.strip())
    return found


def target_text(target: str, path: Path = DOCKERFILE) -> str:
    """The instructions of `target` and of the stages under it, the base's first, one a line."""
    known = stages(path)
    if target not in known:
        raise KeyError(f"{path.name} has no target {target!r} (stages: {', '.join(known)})")
    chain: list[list[str]] = []
    name: str | None = target
    while name is not None:
        parent, instructions = known[name]
        chain.insert(0, instructions)
        name = parent
    return "\n".join(line for instructions in chain for line in instructions)


def last(text: str, instruction: str) -> str:
    """The arguments of the last `instruction` (CMD, ENTRYPOINT, USER): the one that holds."""
    found = [line for line in text.splitlines() if line.split(maxsplit=1)[0] == instruction]
    if not found:
        raise ValueError(f"no {instruction} instruction")
    return found[-1][len(instruction) :].strip()
