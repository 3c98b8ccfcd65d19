"""Class scores as text similarity: queries projected into the joint space, cosine x a learnable temperature."""

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
class TextSimilarityHead(Head):
    """SEEM / X-Decoder: exp(logit_scale) * cos(query @ class_embed, condition), the scale capped at `max_scale`.

    Conditions are text embeddings (class names with background last, or expressions), so the same head scores any
    vocabulary; `logit_scale` starts at CLIP's log(1 / 0.07) unless a recipe says otherwise. For prompt tasks
    (`sigmoid` scoring) the scores are log-softmax over queries: each expression's distribution over queries.
    """

    def __init__(self, dim: int, logit_scale: float = math.log(1 / 0.07), max_scale: float = 100.0) -> None:
        super().__init__()
        self.class_embed = nn.Linear(dim, dim, bias=False)
        nn.init.trunc_normal_(self.class_embed.weight, std=0.02)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.max_scale = max_scale

    def forward(self, queries: Tensor, bridge: BridgeOutput, task: str) -> Tensor:
        if bridge.conditions is None:
            raise ValueError(f"TextSimilarityHead needs condition embeddings for task '{task}'; the bridge gave none")
        projected = F.normalize(self.class_embed(queries), dim=-1)
        conditions = F.normalize(bridge.conditions.to(projected.dtype), dim=-1)
        scale = self.logit_scale.exp().clamp(max=self.max_scale)
        logits = scale * torch.einsum("bqd,bkd->bqk", projected, conditions)
        if task_spec(task).scoring == "sigmoid":
            # A prompt (expression) picks its query by a softmax over queries (SEEM's grounding); as log-probabilities
            # the scores rank queries the same for any reader, sigmoid top-1 included, and train the same under CE.
            logits = logits.log_softmax(1)
        if bridge.condition_mask is not None:
            logits = logits.masked_fill(~bridge.condition_mask[:, None, :], MASKED)
        return logits
