"""Stage mechanics: weights-only hand-off between stages, trainable globs, per-module learning rates."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from zoo.weights import read_checkpoint


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _check_globs(names: list[str], patterns: Iterable[str], setting: str) -> None:
    """A glob that matches nothing is almost always a typo: fail instead of silently training the wrong set."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ValueError(f"`{setting}` pattern '{pattern}' matches no parameter (names look like '{names[0]}')")


def set_trainable(model: nn.Module, patterns: list[str] | None) -> tuple[int, int]:
    """Freeze all parameters but those whose names match a glob; None keeps what the parts set (e.g. LoRA).

    Returns (trainable, total) parameter counts.
    """
    params = dict(model.named_parameters())
    if patterns is not None:
        _check_globs(list(params), patterns, "trainable")
        for name, p in params.items():
            p.requires_grad_(_matches(name, patterns))
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    return trainable, sum(p.numel() for p in params.values())


def param_groups(model: nn.Module, lr_multipliers: dict[str, float]) -> list[dict]:
    """Group trainable parameters by the first glob that names them; each group carries its `lr_mult`."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    _check_globs([n for n, _ in model.named_parameters()], lr_multipliers, "lr_multipliers")
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in named:
        mult = next((m for g, m in lr_multipliers.items() if fnmatch.fnmatchcase(name, g)), 1.0)
        groups.setdefault(mult, []).append(p)
    return [{"params": ps, "lr_mult": mult} for mult, ps in groups.items()]


def load_weights(module: nn.Module, path: str, prefix: str = "net.") -> tuple[list[str], list[str]]:
    """Weights-only load of a Lightning checkpoint (or a bare state dict) into `module`, non-strict.

    Optimizer, scheduler and loop state are ignored on purpose: a new stage starts fresh. A checkpoint's keys are
    taken under `prefix` (the LightningModule's attribute); a bare state dict's keys are used as they are unless
    they carry `prefix` too. Returns and reports the missing and unexpected keys, since a stage change (new head,
    dropped decoder) legitimately produces some; `check_init` decides whether they are acceptable.
    """
    blob = read_checkpoint(path, "init_from", "point `model.init_from` at the previous stage's .ckpt")
    state = blob.get("state_dict", blob)
    if "state_dict" in blob or any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    result = module.load_state_dict(state, strict=False)
    loaded = len(state) - len(result.unexpected_keys)
    rank_zero_info(
        f"init_from {path}: loaded {loaded} tensors; {len(result.missing_keys)} missing "
        f"{_summary(result.missing_keys)}; {len(result.unexpected_keys)} unexpected {_summary(result.unexpected_keys)}"
    )
    return list(result.missing_keys), list(result.unexpected_keys)


class InitFromError(ValueError):
    """Raised when `init_from` would leave the model (or a part nothing trains) at random initialisation."""


def check_init(
    module: nn.Module, path: str, missing: list[str], expected: Iterable[str] = (), share: float = 0.5
) -> None:
    """Stop when `init_from` loaded nothing, left a frozen parameter (a part this stage does not train) or more than
    `share` of the model's values at random init, printing what is missing. Missing keys matching an `expected`
    glob (e.g. 'bridge.*', a part this stage adds or loads from its own pretrained file) are accepted."""
    state = module.state_dict()
    params = dict(module.named_parameters())
    if set(params) <= set(missing):
        problem = "loaded nothing (is it a checkpoint of this model?)"
    else:
        unexpected = [k for k in missing if not _matches(k, expected)]
        frozen = [k for k in unexpected if k in params and not params[k].requires_grad]
        size = sum(state[k].numel() for k in unexpected)
        total = sum(v.numel() for v in state.values())
        if frozen:
            problem = f"leaves {len(frozen)} frozen parameters (not trained by this stage) at random init"
        elif size > share * total:
            problem = f"leaves {size / total:.0%} of the model's values at random init"
        else:
            return
        missing = unexpected
    table = "\n".join(f"  {head:<40} {n:>6} missing" for head, n in _heads(missing).items())
    raise InitFromError(
        f"init_from '{path}' {problem}. Missing keys by part:\n{table}\n"
        "Point `model.init_from` at a checkpoint of this model, or list the parts this stage is expected to lack in "
        "`model.init_missing_ok` (globs, e.g. ['bridge.*'])."
    )


def _heads(keys: list[str]) -> dict[str, int]:
    """Keys counted by their first two name parts."""
    heads: dict[str, int] = {}
    for k in keys:
        head = ".".join(k.split(".")[:2])
        heads[head] = heads.get(head, 0) + 1
    return dict(sorted(heads.items()))


def _summary(keys: list[str]) -> str:
    """Keys grouped by their first two name parts, so a report stays one line."""
    heads = _heads(keys)
    return "(" + ", ".join(f"{h}: {n}" for h, n in heads.items()) + ")" if heads else ""
