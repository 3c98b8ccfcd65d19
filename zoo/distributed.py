"""FSDP's auto-wrap policy for any recipe: wrap by parameter count, so no layer class has to be named."""

from __future__ import annotations

from torch import nn
from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy


class SizeWrapPolicy:
    """Wrap a module in its own FSDP unit once it holds `min_params` parameters not already wrapped below it.

    A recipe's parts differ per family (Swin blocks, SAM ViT layers, Phi/Qwen decoder layers); counting parameters
    picks the transformer layers of the large parts and leaves small heads in the root unit, for any of them.
    """

    def __init__(self, min_params: int = 20_000_000) -> None:
        if min_params < 1:
            raise ValueError(f"min_params must be positive, got {min_params}")
        self.min_params = min_params

    def __call__(self, module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
        return size_based_auto_wrap_policy(module, recurse, nonwrapped_numel, min_num_params=self.min_params)
