"""PSALM's bridge: the language model's output states at learnable mask tokens become the decoder queries."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.bridges.base import Bridge
from zoo.language.causal_lm import CausalLM
from zoo.language.generation import GenerationSettings
from zoo.language.sequence import SequenceBuilder, draw_order, embed_batch
from zoo.projectors.base import Projector
from zoo.registry import register
from zoo.tasks import condition_groups, is_prompted, task_spec
from zoo.types import Batch, BridgeOutput, Dims, FeatureSpec


@register("bridge")
class LLMQueries(Bridge):
    """PSALM: mask tokens follow image, instruction and conditions through the LLM and become the queries.

    Conditions are pooled over their spans (category names, the expression, one region token per visual prompt);
    `background` is itself a text class, the last one, so generic segmentation scores K+1 conditions. The mask
    tokens fill the `<seg>` slot of the answer; only captions train the LM's text (PSALM adds no LM loss to
    segmentation). `template` and `texts` lay the sequence out (`zoo.language.sequence`); `generation`, when set,
    also has the LM answer each sample at validation, test and predict time (`BridgeOutput.texts`).
    """

    produces = frozenset({"query_content"})

    def __init__(
        self,
        dims: Dims,
        language_model: CausalLM,
        projector: Callable[[FeatureSpec, int], Projector],
        image_feature: str | None = None,
        region_points: int = 256,
        shuffle_categories: bool = True,
        background: str = "background",
        seg_token: str = "[SEG]",
        template: str = "minimal",
        texts: str = "psalm-minimal",
        generation: GenerationSettings | None = None,
    ) -> None:
        super().__init__()
        self.lm = language_model
        hidden = language_model.hidden_size
        self.image_feature = image_feature or list(dims.features)[-1]
        if self.image_feature not in dims.features:
            raise ValueError(f"image_feature '{self.image_feature}' is not an encoder output: {list(dims.features)}")
        self.projector = projector(dims.features[self.image_feature], hidden)
        self.mask_tokens = nn.Parameter(torch.randn(dims.num_queries, hidden) * 0.02)
        self.query_proj = nn.Linear(hidden, dims.decoder_dim)
        self.condition_proj = nn.ModuleDict({g: nn.Linear(hidden, dims.decoder_dim) for g in condition_groups()})
        self.region_points = region_points
        self.shuffle_categories = shuffle_categories
        self.background = background
        if seg_token not in language_model.tokenizer.get_vocab():
            raise ValueError(f"the language model's tokenizer lacks {seg_token}; add it to its `extra_tokens`")
        self.builder = SequenceBuilder(
            language_model, template, texts, slots=("<image>", "<seg>", "<region>"), tokens={"seg_token": seg_token}
        )
        self.builder.require_in_answers("<seg>", "the slot of the mask tokens")
        self.generation = generation

    def region_tokens(self, grid: Tensor, prompts: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Average the projected token grid [H, h, w] over points inside each prompt mask [K, Hi, Wi] -> [K, H].

        Training draws `region_points` random points with repetition (PSALM) from `generator` (the sample's own
        stream; None: torch's global one); evaluation takes evenly spaced foreground pixels so the same
        checkpoint always gives the same numbers.
        """
        tokens = []
        height, width = prompts.shape[-2:]
        for k, mask in enumerate(prompts):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            if ys.numel() == 0:
                raise ValueError(f"visual prompt {k} is an empty mask; every prompt needs at least one pixel")
            if self.training:
                pick = torch.randint(ys.numel(), (self.region_points,), device=ys.device, generator=generator)
            else:
                pick = torch.linspace(0, ys.numel() - 1, min(self.region_points, ys.numel()), device=ys.device)
                pick = pick.round().long()
            coords = torch.stack([(xs[pick] + 0.5) / width, (ys[pick] + 0.5) / height], -1) * 2 - 1
            sampled = F.grid_sample(grid[None], coords[None, None].to(grid.dtype), align_corners=False)
            tokens.append(sampled[0, :, 0].mean(-1))
        return torch.stack(tokens) if tokens else grid.new_zeros(0, grid.shape[0])

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        grid = self.projector(features[self.image_feature])  # [B, H, h, w]
        image_tokens = grid.flatten(2).transpose(1, 2)
        caption = batch.task == "caption"
        generate = self.generation is not None and not self.training
        layouts, prompts = [], []
        for b in range(len(batch)):
            rng = batch.generators[b] if batch.generators else None
            conditions: list[str | Tensor] = []
            order = None
            if batch.task == "panoptic":
                conditions = [*batch.conditions[b], self.background]
                if self.training and self.shuffle_categories:
                    order = draw_order(len(conditions), rng)
            elif batch.task == "referring":
                conditions = batch.conditions[b]
            elif is_prompted(batch.task):
                conditions = list(self.region_tokens(grid[b], batch.prompts[b], rng))
            slots = {"<image>": image_tokens[b], "<seg>": self.mask_tokens}
            layouts.append(self.builder.build_sample(batch, b, conditions, order, slots, training=self.training))
            if generate:
                prompts.append(self.builder.build_sample(batch, b, conditions, order, slots, prompt=True))

        embeds, mask, labels = embed_batch(self.lm, layouts)
        hidden, lm_loss = self.lm(embeds, mask, labels if caption else None)
        texts = self.builder.generate(prompts, self.generation).texts if generate else None
        if caption:
            return BridgeOutput(lm_loss=lm_loss, texts=texts)
        query_spans = [layout.slots["<seg>"][0] for layout in layouts]
        queries = torch.stack([hidden[b, s:e] for b, (s, e) in enumerate(query_spans)])
        spans = [layout.conditions for layout in layouts]
        pooled = [torch.stack([hidden[b, s:e].mean(0) for s, e in cs]) for b, cs in enumerate(spans) if cs]
        conditions, cond_mask = None, None
        if pooled:
            conditions = nn.utils.rnn.pad_sequence(pooled, batch_first=True)
            lengths = torch.tensor([len(cs) for cs in spans], device=conditions.device)
            cond_mask = torch.arange(conditions.shape[1], device=conditions.device)[None] < lengths[:, None]
            conditions = self.condition_proj[task_spec(batch.task).condition_group](conditions)
        return BridgeOutput(
            query_content=self.query_proj(queries), conditions=conditions, condition_mask=cond_mask, texts=texts
        )
