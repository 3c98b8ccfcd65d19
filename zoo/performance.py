"""Per-part speed/memory switches a recipe names by module path: torch.compile and gradient checkpointing.

Parts are named as in parameter names (`pixel_decoder`, `mask_decoder`, `encoder.sam.body`, `bridge.lm`), so the
same switch works for every family without a branch on which part fills a slot.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel


def _part(net: nn.Module, name: str, setting: str) -> nn.Module:
    try:
        return net.get_submodule(name)
    except AttributeError:
        parts = [n for n, _ in net.named_children()]
        raise ValueError(f"`{setting}` names part '{name}', which the model lacks; its parts are {parts}") from None


def compile_parts(net: nn.Module, names: Iterable[str], options: dict[str, Any] | None = None) -> None:
    """`torch.compile` each named part in place (`nn.Module.compile`: parameter names and checkpoints unchanged)."""
    for name in names:
        _part(net, name, "compile_parts").compile(**(options or {}))


def checkpoint_parts(net: nn.Module, names: Iterable[str]) -> None:
    """Recompute each named part's activations in backward instead of keeping them.

    A part that checkpoints its own layers does so (zoo's `CausalLM`, any transformers model such as SAM's
    `encoder.sam.body`, timm models such as `encoder.body`); any other part is checkpointed as one block, which
    keeps only its inputs.
    """
    for name in names:
        part = _part(net, name, "gradient_checkpointing")
        if hasattr(part, "set_gradient_checkpointing"):
            part.set_gradient_checkpointing(True)
        elif isinstance(part, PreTrainedModel):
            part.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif hasattr(part, "set_grad_checkpointing"):
            part.set_grad_checkpointing(True)
        else:
            part.forward = functools.partial(checkpoint, part.forward, use_reentrant=False)
