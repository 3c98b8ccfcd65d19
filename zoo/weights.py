"""Local-only weight resolution: nothing downloads, and a missing file says exactly what to provide."""

from __future__ import annotations

from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """Raised when a recipe names weights that are not on this machine."""


def require_file(path: str, what: str, setting: str) -> Path:
    """Return `path` if it exists, else one clear error naming the component, the path and the recipe key."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(
            f"{what}: weights file '{path}' not found. Download it yourself and put it there, or set "
            f"`{setting}` in the recipe to a local file (zoo never downloads at run time)."
        )
    return p
