"""X-SAM's open-set class head: cosine similarity x learned temperature against condition embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.heads.class_heads import Head
from zoo.registry import register
from zoo.tasks import task_spec
from zoo.types import MASKED, BridgeOutput


@register("head")
class CosineHead(Head):
    """Cosine(query, condition) x exp(logit_scale) over the K conditions plus a learned background embedding.

    This is one K+1-way softmax for every task, as X-SAM scores them. Softmax-scored tasks (generic
    segmentation) get those K+1 logits, the last one no-object. Sigmoid-scored tasks (referring, visual prompts)
    get, per condition k, the log-odds of that same softmax, log p_k - log(1 - p_k), so sigmoid(logit) is X-SAM's
    probability: the shared criterion and the top-1 read-out then see X-SAM's scores (for one condition, the
    criterion's BCE on it is X-SAM's cross-entropy, up to the class weighting).
    """

    def __init__(self, dim: int, temperature: float = 0.07, max_scale: float = 500.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        self.background = nn.Parameter(torch.randn(1, dim))
        self.max_scale = max_scale

    def forward(self, queries: Tensor, bridge: BridgeOutput, task: str) -> Tensor:
        if bridge.conditions is None:
            raise ValueError(f"CosineHead needs condition embeddings for task '{task}'; the bridge gave none")
        conditions = bridge.conditions.to(queries.dtype)
        background = self.background.to(queries.dtype).expand(len(conditions), 1, -1)
        keys = F.normalize(torch.cat([conditions, background], 1), dim=-1)
        scale = self.logit_scale.exp().clamp(max=self.max_scale)
        logits = scale * torch.einsum("bqd,bkd->bqk", F.normalize(queries, dim=-1), keys)
        if bridge.condition_mask is not None:
            real = F.pad(bridge.condition_mask, (0, 1), value=True)
            logits = logits.masked_fill(~real[:, None, :], MASKED)
        if task_spec(task).scoring == "softmax":
            return logits
        return log_odds(logits)


def log_odds(logits: Tensor) -> Tensor:
    """[..., K+1] softmax logits -> [..., K] log(p_k / (1 - p_k)) = l_k - logsumexp_{j != k} l_j, stably."""
    count = logits.shape[-1] - 1
    others = logits.unsqueeze(-2).expand(*logits.shape[:-1], count, count + 1)
    self_mask = F.pad(torch.eye(count, dtype=torch.bool, device=logits.device), (0, 1))
    return logits[..., :count] - others.masked_fill(self_mask, float("-inf")).logsumexp(-1)
