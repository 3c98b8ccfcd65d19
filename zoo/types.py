"""The contracts between slots: what a part declares it produces, and what flows between parts.

A part that needs a size takes it from the part before (a `FeatureSpec` or `Dims`), so recipes never repeat a
derived number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

MASKED = -1e4  # logit of a padded condition or a forbidden pair: zero probability, still finite in bf16


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

    Multi-click interaction (evaluation's click loop, SEEM's multi-round training) adds, per sample, negative clicks
    for the same K targets as `prompts` in `negative_prompts[b]` and the previous round's prediction in
    `previous_masks[b]` (both [K, H, W] bool). Models that do not read them ignore them; None means no such round.
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
    # Per sample, the (question, answer) turns after the first of a multi-turn conversation (LLaVA's).
    follow_ups: list[list[tuple[str, str]]] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)
    negative_prompts: list[Tensor] | None = None  # [K, H, W] bool per sample: negative clicks (interactive)
    previous_masks: list[Tensor] | None = None  # [K, H, W] bool per sample: the previous round's prediction
    # From formats that carry them (None otherwise; entries None for samples without): target boxes [N, 4] xyxy,
    # prompt clicks [K, 2] xy (NaN for non-point prompts), and pixels to ignore [H, W] bool.
    boxes: list[Tensor | None] | None = None
    points: list[Tensor | None] | None = None
    ignore: list[Tensor | None] | None = None
    # Per-sample random streams on the batch's device for training draws (sampled points, shuffles); the module
    # attaches them each step (`zoo.randomness`). None draws from torch's global generator.
    generators: list[torch.Generator] | None = None

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
            follow_ups=self.follow_ups,
            meta=self.meta,
            negative_prompts=None if self.negative_prompts is None else [p.to(device) for p in self.negative_prompts],
            previous_masks=None if self.previous_masks is None else [m.to(device) for m in self.previous_masks],
            generators=self.generators,
            **{
                name: [None if t is None else t.to(device) for t in values]
                for name in ("boxes", "points", "ignore")
                if (values := getattr(self, name)) is not None
            },
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def trained_targets(self) -> tuple[list[Tensor], list[Tensor]]:
        """Masks and labels the loss learns from: COCO crowd regions (`meta[b]["iscrowd"]`, [N] per target) left
        out, as Mask2Former's dataset mappers drop them; evaluation still scores them as COCO's crowd regions."""
        masks, labels = [], []
        for b, (sample_masks, sample_labels) in enumerate(zip(self.masks, self.labels, strict=True)):
            crowd = self.meta[b].get("iscrowd") if b < len(self.meta) else None
            if crowd is not None and bool(crowd.any()):
                keep = ~crowd.bool().to(sample_masks.device)
                sample_masks, sample_labels = sample_masks[keep], sample_labels[keep]
            masks.append(sample_masks)
            labels.append(sample_labels)
        return masks, labels


@dataclass
class PixelFeatures:
    """A pixel decoder's output: per-pixel embeddings for mask prediction and the scales the decoder attends to."""

    mask_features: Tensor  # [B, mask_dim, H/4, W/4] (or the decoder's finest stride)
    multi_scale: list[Tensor]  # coarse to fine, each [B, hidden_dim, h, w]


@dataclass
class PromptInputs:
    """What a prompt-mixing mask decoder (SEEM) reads besides the pixels: text tokens and visual prompts.

    `tokens` [B, T, D] are text-token embeddings in the decoder's width, `token_mask` [B, T] marks the real ones;
    `positive` / `negative` hold per sample [K, H, W] bool visual prompts of K objects and their negative clicks;
    `previous` [K, H, W] bool the previous round's masks, inside which memory prompts attend. `reference`, when
    given, holds another image's pixel features: the visual prompts mark regions of that image (SEEM's example
    prompt). `task` names the query group whose predictions the decoder returns.
    """

    task: str
    tokens: Tensor | None = None
    token_mask: Tensor | None = None
    positive: list[Tensor] | None = None
    negative: list[Tensor] | None = None
    previous: list[Tensor] | None = None
    reference: PixelFeatures | None = None


@dataclass
class SparsePrompts:
    """Prompt embeddings per mask request, in the mask decoder's prompt width (SAM's sparse prompts).

    `embeddings` [B, K, N, D]: K mask requests per sample (e.g. one per generated `[SEG]`), each with up to N
    embeddings; `valid` [B, K, N] bool marks the real ones (samples and requests are padded to one size).
    """

    embeddings: Tensor
    valid: Tensor


@dataclass
class CoordinatePrompts:
    """Points and boxes per mask request, in input-image pixels (e.g. parsed from a language model's text).

    `points` [B, K, N, 2] xy with `labels` [B, K, N] long (1 positive, 0 negative, -1 padding); `boxes` [B, K, 4]
    xyxy, with `has_box` [B, K] bool marking the requests that give one.
    """

    points: Tensor
    labels: Tensor
    boxes: Tensor
    has_box: Tensor


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
    prompts: PromptInputs | None = None  # for mask decoders that mix prompts into their queries (SEEM)
    query_offset: Tensor | None = None  # [B, 1 or Q, D] added to the decoder's learned queries (X-SAM's <SEG>)
    texts: list[str] | None = None  # the language model's generated answer per sample, when the bridge generates
    sparse_prompts: SparsePrompts | None = None  # for prompt decoders (SAM's): embeddings per mask request
    coordinates: CoordinatePrompts | None = None  # for prompt decoders: points and boxes per mask request


# The `BridgeOutput` fields a mask decoder may read, each passed to it as the keyword of the same name.
DECODER_INPUTS = ("query_content", "query_offset", "prompts", "sparse_prompts", "coordinates")


@dataclass
class DecoderLayerOutput:
    """One mask-decoder layer's output: normalised query embeddings and the masks they predict."""

    queries: Tensor  # [B, Q, D]
    masks: Tensor  # [B, Q, h, w] logits at the mask-feature resolution
    # [B, Q, K] class logits when the decoder scores its queries itself (SEEM matches visual prompts against the
    # pixel features it sampled them from); None leaves the scoring to the head.
    logits: Tensor | None = None


@dataclass
class Prediction:
    """One decoder layer's prediction (deep supervision keeps them all)."""

    logits: Tensor  # [B, Q, K(+1)]
    masks: Tensor  # [B, Q, h, w] logits
