"""The MLflow versions this plugin was tested with, and the checks that refuse any other.

Several modules here wrap names of `mlflow.server.auth` that are private (underscored): their
behaviour is what the tests check, against exactly these versions. Any other version stops the
server before it serves a request, with one line that names it; so does a tested version that
lacks a name a module needs (a broken install). A security control that silently switched off
would be worse than none.
"""

from __future__ import annotations

import importlib.metadata

# The versions tests/integration ran against (uv.lock pins one of them; a test checks that).
TESTED_MLFLOW = ("3.17.2",)


class Incompatible(SystemExit):
    """The server must not start: the message is the one line it prints."""

    def __init__(self, message: str) -> None:
        super().__init__(f"mlops-auth: {message}")


def check_version(version: str | None = None) -> str:
    """The running MLflow's version, if it is one the tests ran against; else Incompatible."""
    if version is None:
        import mlflow

        version = mlflow.__version__
        installed = importlib.metadata.version("mlflow")
        if installed != version:
            raise Incompatible(
                f"mlflow reports {version} but {installed} is installed; reinstall from uv.lock"
            )
    if version not in TESTED_MLFLOW:
        raise Incompatible(
            f"MLflow {version} is not a version this plugin was tested with "
            f"({', '.join(TESTED_MLFLOW)}); install the one uv.lock pins, or test this one and "
            "add it to mlops_auth.compat.TESTED_MLFLOW"
        )
    return version


def require(module, names: tuple[str, ...], feature: str) -> None:
    """Every name in `names` is an attribute of `module`; else Incompatible, naming them."""
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise Incompatible(
            f"{feature} needs {module.__name__}.{', '.join(missing)}, which this MLflow lacks"
        )
