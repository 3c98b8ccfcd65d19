"""X-SAM's bridge: the `<SEG>` state conditions the decoder's learned queries; `<p>…</p>` spans are the classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from zoo.bridges.base import Bridge
from zoo.language.causal_lm import CausalLM
from zoo.language.generation import GenerationSettings
from zoo.language.sequence import SequenceBuilder, SequenceLayout, draw_order, embed_batch
from zoo.projectors.base import Projector
from zoo.projectors.prompt_sampler import PointSampler
from zoo.registry import register
from zoo.tasks import is_prompted, task_spec
from zoo.types import Batch, BridgeOutput, Dims, FeatureSpec

PROMPT_SOURCES = "prompt_sources"
"""Optional `Batch.meta[b]` key: per visual prompt, the batch index of the image its mask is drawn on (X-SAM's
visual grounding takes a category's prompt from another image); absent means the sample's own image."""


@register("bridge")
class SegAdd(Bridge):
    """X-SAM: image tokens (+ extra tokens) and the instruction go through the LLM, which answers `<SEG>`.

    The projected hidden state at `<SEG>` is added to every learned decoder query (`query_offset`); each condition
    is wrapped in `<p>…</p>` (a category name, an expression, or one visual-prompt token pooled by the sampler)
    and its embedding is the mean projected state over the span, ends included. The answer (`<SEG>` then EOS,
    or a caption) carries the language-model loss, for every task as in X-SAM. `template` and `texts` lay the
    sequence out (`zoo.language.sequence`); `generation`, when set, also has the LM answer each sample at
    validation, test and predict time (`BridgeOutput.texts`).
    """

    produces = frozenset({"query_offset"})

    def __init__(
        self,
        dims: Dims,
        language_model: CausalLM,
        projector: Callable[[FeatureSpec, int], Projector],
        image_feature: str,
        extra_projector: Callable[[FeatureSpec, int], Projector] | None = None,
        extra_feature: str | None = None,
        sampler: PointSampler | None = None,
        prompt_grid: Literal["image", "extra"] = "extra",
        shuffle_categories: bool = True,
        seg_token: str = "<SEG>",
        open_token: str = "<p>",
        close_token: str = "</p>",
        template: str = "minimal",
        texts: str = "xsam-minimal",
        generation: GenerationSettings | None = None,
    ) -> None:
        """`projector` maps `image_feature` (X-SAM: SigLIP) to LLM tokens; `extra_projector` maps `extra_feature`
        (X-SAM: SAM's layer -2, pixel-shuffled) to more tokens placed after them; visual prompts sample the
        `prompt_grid` one."""
        super().__init__()
        for name in (image_feature, extra_feature):
            if name is not None and name not in dims.features:
                raise ValueError(f"feature '{name}' is not an encoder output: {list(dims.features)}")
        if (extra_projector is None) != (extra_feature is None):
            raise ValueError("SegAdd needs both `extra_projector` and `extra_feature`, or neither")
        if prompt_grid == "extra" and extra_projector is None:
            raise ValueError("prompt_grid 'extra' needs an extra projector; set prompt_grid: image")
        self.lm = language_model
        hidden = language_model.hidden_size
        self.image_feature, self.extra_feature = image_feature, extra_feature
        self.projector = projector(dims.features[image_feature], hidden)
        self.extra_projector = extra_projector(dims.features[extra_feature], hidden) if extra_projector else None
        self.sampler = sampler if sampler is not None else PointSampler()
        self.prompt_grid = prompt_grid
        self.llm_projector = nn.Sequential(
            nn.Linear(hidden, dims.decoder_dim), nn.GELU(), nn.Linear(dims.decoder_dim, dims.decoder_dim)
        )
        self.shuffle_categories = shuffle_categories
        vocab = language_model.tokenizer.get_vocab()
        missing = [t for t in (seg_token, open_token, close_token) if t not in vocab]
        if missing:
            raise ValueError(f"the language model's tokenizer lacks {missing}; add them to its `extra_tokens`")
        self.seg_id = vocab[seg_token]
        tokens = {"seg_token": seg_token, "open_token": open_token, "close_token": close_token}
        self.builder = SequenceBuilder(language_model, template, texts, slots=("<image>", "<region>"), tokens=tokens)
        self.builder.require_in_answers("{seg_token}", "the token whose state offsets the queries")
        self.generation = generation

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        task_spec(batch.task)  # an unknown task fails here, naming the candidates
        grids = {"image": self.projector(features[self.image_feature])}
        if self.extra_projector is not None:
            grids["extra"] = self.extra_projector(features[self.extra_feature])
        visual = torch.cat([g.flatten(2).transpose(1, 2) for g in grids.values()], 1)  # [B, T, H]
        generate = self.generation is not None and not self.training
        layouts, prompts = [], []
        for b in range(len(batch)):
            rng = batch.generators[b] if batch.generators else None
            conditions: list[str | Tensor] = []
            order = None
            if batch.task in ("panoptic", "referring"):
                conditions = batch.conditions[b]
                if self.training and self.shuffle_categories and batch.task == "panoptic":
                    # The sample's own stream, not torch's global one (the one change to the tiny recipes' draws):
                    # a shuffle then no longer depends on how the global batch is split over processes.
                    order = draw_order(len(conditions), rng)
            elif is_prompted(batch.task):
                meta = batch.meta[b] if batch.meta else {}
                sources = torch.as_tensor(meta.get(PROMPT_SOURCES, [b] * len(batch.prompts[b])))
                conditions = list(self.sampler(grids[self.prompt_grid], batch.prompts[b], sources))
            slots = {"<image>": visual[b]}
            layouts.append(self.builder.build_sample(batch, b, conditions, order, slots, training=self.training))
            if generate:
                prompts.append(self.builder.build_sample(batch, b, conditions, order, slots, prompt=True))

        embeds, mask, labels = embed_batch(self.lm, layouts, one_call=True)
        hidden, lm_loss = self.lm(embeds, mask, labels)
        texts = self.builder.generate(prompts, self.generation).texts if generate else None
        if batch.task == "caption":
            return BridgeOutput(lm_loss=lm_loss, texts=texts)
        device = visual.device
        projected = self.llm_projector(hidden)
        seg_positions = torch.tensor([self._seg_position(layout) for layout in layouts], device=device)
        offset = projected[torch.arange(len(batch), device=device), seg_positions][:, None]
        empty = projected.new_zeros(0, projected.shape[-1])
        spans = [layout.conditions for layout in layouts]
        pooled = [
            torch.stack([projected[b, s:e].mean(0) for s, e in cs]) if cs else empty for b, cs in enumerate(spans)
        ]
        conditions = nn.utils.rnn.pad_sequence(pooled, batch_first=True)
        lengths = torch.tensor([len(cs) for cs in spans], device=device)
        cond_mask = torch.arange(conditions.shape[1], device=device)[None] < lengths[:, None]
        return BridgeOutput(
            query_offset=offset, conditions=conditions, condition_mask=cond_mask, lm_loss=lm_loss, texts=texts
        )

    def _seg_position(self, layout: SequenceLayout) -> int:
        """Where the answer's first `<SEG>` sits: its state offsets the queries."""
        positions = layout.positions(self.seg_id)
        if not positions:
            raise ValueError("a SegAdd sequence has no <SEG> token; its texts must answer with {seg_token}")
        return positions[0]
