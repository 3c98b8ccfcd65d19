"""Multi-process helpers: FSDP's auto-wrap policy for any recipe, and the rank average that loss normalisers use."""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy


def mean_over_ranks(values: Tensor) -> Tensor:
    """The average of `values` over all ranks (`values` itself outside a process group).

    A loss that divides its rank's sum by the rank-average of a count (targets, tokens, class weights) makes the
    mean of the rank losses, which DDP's gradient averaging and Lightning's `sync_dist` take, equal the loss of
    the global batch: a step then does not depend on how the global batch is split across ranks.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


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
