"""Local-only weight resolution: nothing downloads, and a missing file says exactly what to provide."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

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


class UnreadableFileError(ValueError):
    """Raised when a file zoo reads (a checkpoint, a run's record) exists but is damaged or of the wrong kind."""


def unreadable(path: str | Path, setting: str, err: BaseException, advice: str) -> UnreadableFileError:
    """One line naming the file, the setting it came from, what went wrong (first line of `err`) and what to do."""
    reason = (str(err).strip().splitlines() or [""])[0][:200]
    return UnreadableFileError(
        f"{setting}: '{path}' is not a readable checkpoint ({type(err).__name__}: {reason}); {advice}"
    )


def read_checkpoint(path: str | Path, setting: str, advice: str) -> dict:
    """`torch.load(path, weights_only=True)` on the CPU; a missing file raises MissingWeightsError and a truncated,
    non-checkpoint or refused (unsafe pickle) file one UnreadableFileError line naming it, instead of torch's
    "failed finding central directory" or `KeyError: 101`."""
    if not Path(path).is_file():
        raise MissingWeightsError(f"{setting}: checkpoint '{path}' not found; {advice}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, KeyError... by damage kind
        raise unreadable(path, setting, err, advice) from None
    if not isinstance(blob, dict):
        raise unreadable(path, setting, TypeError(f"holds a {type(blob).__name__}, not a state dict"), advice)
    return blob
