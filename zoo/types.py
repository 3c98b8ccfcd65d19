"""The contracts between slots: what a part declares it produces, and what flows between parts.

A part that needs a size takes it from the part before (a `FeatureSpec` or `Dims`), so recipes never repeat a
derived number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Task = Literal["panoptic", "referring", "interactive", "caption"]
Scoring = Literal["softmax", "sigmoid"]

# How each task's class logits are trained and read. `softmax`: logits [B, Q, K+1] over the conditions plus a
# no-object column, matched with a class cost (generic segmentation). `sigmoid`: logits [B, Q, K], one independent
# score per (query, condition), matched on masks only (referring and visual-prompt tasks, as PSALM does).
TASK_SCORING: dict[str, Scoring] = {"panoptic": "softmax", "referring": "sigmoid", "interactive": "sigmoid"}


@dataclass(frozen=True)
class FeatureSpec:
    """One feature map a part produces: channels and stride relative to the input image."""

    channels: int
    stride: int


FeatureSpecs = dict[str, FeatureSpec]


@dataclass(frozen=True)
class Dims:
    """What the late parts of a model need to size themselves, derived from the parts built before them."""

    features: FeatureSpecs
    decoder_dim: int
    num_queries: int


@dataclass
class Batch:
    """A collated, task-homogeneous batch in the unified schema.

    `conditions[b]` are the texts a sample is conditioned on (all category names for panoptic, the expression for
    referring); `prompts[b]` the visual-prompt masks for interactive samples. `labels[b][n]` indexes the condition
    (or prompt) that target mask `masks[b][n]` answers.
    """

    images: Tensor  # [B, 3, H, W] float in [0, 1]
    task: str
    instructions: list[str]
    conditions: list[list[str]]
    masks: list[Tensor]  # [N, H, W] bool per sample
    labels: list[Tensor]  # [N] long per sample
    prompts: list[Tensor] = field(default_factory=list)  # [K, H, W] bool per sample (interactive)
    prompt_types: list[list[str]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        """Move tensors; Lightning calls this through `transfer_batch_to_device`."""
        return Batch(
            images=self.images.to(device),
            task=self.task,
            instructions=self.instructions,
            conditions=self.conditions,
            masks=[m.to(device) for m in self.masks],
            labels=[x.to(device) for x in self.labels],
            prompts=[p.to(device) for p in self.prompts],
            prompt_types=self.prompt_types,
            answers=self.answers,
            meta=self.meta,
        )

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class PixelFeatures:
    """A pixel decoder's output: per-pixel embeddings for mask prediction and the scales the decoder attends to."""

    mask_features: Tensor  # [B, mask_dim, H/4, W/4] (or the decoder's finest stride)
    multi_scale: list[Tensor]  # coarse to fine, each [B, hidden_dim, h, w]


@dataclass
class BridgeOutput:
    """What the language side hands to the mask side.

    `query_content` [B, Q, D] replaces or conditions the decoder's learned queries; `conditions` [B, K, Dc] are
    the embeddings classes are scored against, `condition_mask` [B, K] marks the real ones; `lm_loss` is the
    language-model loss where the batch has text targets.
    """

    query_content: Tensor | None = None
    conditions: Tensor | None = None
    condition_mask: Tensor | None = None
    lm_loss: Tensor | None = None


@dataclass
class DecoderLayerOutput:
    """One mask-decoder layer's output: normalised query embeddings and the masks they predict."""

    queries: Tensor  # [B, Q, D]
    masks: Tensor  # [B, Q, h, w] logits at the mask-feature resolution


@dataclass
class Prediction:
    """One decoder layer's prediction (deep supervision keeps them all)."""

    logits: Tensor  # [B, Q, K(+1)]
    masks: Tensor  # [B, Q, h, w] logits
