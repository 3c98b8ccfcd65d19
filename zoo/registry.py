"""A thin index of zoo's components, for discovery (`zoo list`) and for helpful errors.

Recipes name classes by short name or import path (jsonargparse resolves them); the registry only records what
exists per kind, so a wrong name can be answered with the candidates and a did-you-mean.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import TypeVar

KINDS = (
    "encoder",
    "projector",
    "connector",
    "pixel_decoder",
    "mask_decoder",
    "bridge",
    "head",
    "sampler",
    "language_model",
    "criterion",
    "dataset",
)

_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}

T = TypeVar("T", bound=type)


def register(kind: str) -> Callable[[T], T]:
    """Class decorator adding a component to the index of `kind`."""
    if kind not in _REGISTRY:
        raise ValueError(unknown_message("kind", kind, list(_REGISTRY)))

    def wrap(cls: T) -> T:
        name = cls.__name__
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"{kind} '{name}' is registered twice ({existing.__module__} and {cls.__module__})")
        _REGISTRY[kind][name] = cls
        return cls

    return wrap


def unknown_message(what: str, name: str, candidates: list[str]) -> str:
    """One error line listing the candidates, with a did-you-mean when a close one exists."""
    close = difflib.get_close_matches(name, candidates, n=10, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    if len(candidates) > 40:  # a huge table (timm's models): list only the nearest names
        return f"Unknown {what} '{name}'.{hint} Nearest of {len(candidates)}: {', '.join(close) or 'none'}."
    return f"Unknown {what} '{name}'.{hint} Candidates: {', '.join(sorted(candidates))}."


def components(kind: str | None = None) -> dict[str, dict[str, type]]:
    """Registered classes, by kind (all kinds when `kind` is None)."""
    if kind is None:
        return {k: dict(v) for k, v in _REGISTRY.items()}
    if kind not in _REGISTRY:
        raise KeyError(unknown_message("kind", kind, list(_REGISTRY)))
    return {kind: dict(_REGISTRY[kind])}


def get(kind: str, name: str) -> type:
    """Look a component up by short name; a wrong name raises with candidates and a did-you-mean."""
    table = components(kind)[kind]
    if name not in table:
        raise KeyError(unknown_message(kind.replace("_", " "), name, list(table)))
    return table[name]


def find_any(name: str) -> str | None:
    """Did-you-mean across all kinds, for errors raised where the kind is not known."""
    names = [n for table in _REGISTRY.values() for n in table]
    if name.rsplit(".", 1)[-1] in names:
        return None
    return unknown_message("component", name.rsplit(".", 1)[-1], names)


def describe(cls: type) -> str:
    """First line of the class docstring: the one-line description `zoo list` prints."""
    doc = inspect.getdoc(cls) or ""
    return doc.splitlines()[0] if doc else ""
