"""Local-only weight resolution: nothing downloads, and a missing file says exactly what to provide."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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


def from_local(load: Callable[..., T], pretrained: str, what: str, example: str = "<id>") -> T:
    """`load(pretrained, local_files_only=True)` (a transformers `from_pretrained`), or one clear error naming the
    component, what to download (`example`, a Hugging Face id) and the recipe key that points at it."""
    try:
        return load(pretrained, local_files_only=True)
    except OSError as err:
        raise MissingWeightsError(
            f"{what} '{pretrained}' is not on this machine. Download it yourself (e.g. `hf download {example} "
            f"--local-dir DIR`) and set `pretrained: DIR` in the recipe; zoo never downloads. ({err})"
        ) from None
