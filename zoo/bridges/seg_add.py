"""X-SAM's bridge: the `<SEG>` state conditions the decoder's learned queries; `<p>…</p>` spans are the classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from zoo.bridges.base import IGNORE, Bridge
from zoo.language.causal_lm import CausalLM
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
    or a caption) carries the language-model loss, for every task as in X-SAM.
    """

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
        self.seg_id, self.open_id, self.close_id = (vocab[t] for t in (seg_token, open_token, close_token))

    def _token_ids(self, batch: Batch) -> dict[str, list[int]]:
        """Token ids of every text the batch needs, from one tokenizer call."""
        texts = {*batch.instructions, *(c for conds in batch.conditions for c in conds)}
        if batch.task == "caption":
            texts.update(batch.answers)
        texts = sorted(texts)
        ids = self.lm.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        return dict(zip(texts, ids, strict=True))

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        task_spec(batch.task)  # an unknown task fails here, naming the candidates
        grids = {"image": self.projector(features[self.image_feature])}
        if self.extra_projector is not None:
            grids["extra"] = self.extra_projector(features[self.extra_feature])
        visual = torch.cat([g.flatten(2).transpose(1, 2) for g in grids.values()], 1)  # [B, T, H]
        tokens = self._token_ids(batch)
        pad, eos = self.lm.tokenizer.pad_token_id, self.lm.tokenizer.eos_token_id
        # Each sample's input is ids with placeholders (pad) where embeddings go: the visual tokens first, then one
        # per visual prompt; a single embedding call then serves the whole batch.
        rows, spans, seg_positions, prompt_slots, prompt_tokens = [], [], [], [], []
        for b in range(len(batch)):
            ids = [pad] * visual.shape[1] + tokens[batch.instructions[b]]
            cond_spans: list[tuple[int, int]] = []
            if batch.task in ("panoptic", "referring"):
                names = batch.conditions[b]
                shuffle = self.training and self.shuffle_categories and batch.task == "panoptic"
                order = torch.randperm(len(names)).tolist() if shuffle else range(len(names))
                cond_spans = [(0, 0)] * len(names)
                for i in order:
                    cond_spans[i] = (len(ids), len(ids) + len(tokens[names[i]]) + 2)
                    ids += [self.open_id, *tokens[names[i]], self.close_id]
            elif is_prompted(batch.task):
                meta = batch.meta[b] if batch.meta else {}
                sources = torch.as_tensor(meta.get(PROMPT_SOURCES, [b] * len(batch.prompts[b])))
                prompt_tokens.append(self.sampler(grids[self.prompt_grid], batch.prompts[b], sources))
                for _ in range(len(batch.prompts[b])):
                    cond_spans.append((len(ids), len(ids) + 3))
                    prompt_slots.append((b, len(ids) + 1))
                    ids += [self.open_id, pad, self.close_id]
            answer = tokens[batch.answers[b]] if batch.task == "caption" else [self.seg_id]
            seg_positions.append(len(ids))
            rows.append((ids + answer + [eos], len(ids)))
            spans.append(cond_spans)

        length = max(len(ids) for ids, _ in rows)
        device = visual.device
        ids = torch.tensor([r + [pad] * (length - len(r)) for r, _ in rows], device=device)
        real = torch.tensor([len(r) for r, _ in rows], device=device)
        mask = (torch.arange(length, device=device)[None] < real[:, None]).long()
        answer_start = torch.tensor([start for _, start in rows], device=device)[:, None]
        positions = torch.arange(length, device=device)[None]
        labels = ids.masked_fill((positions < answer_start) | (mask == 0), IGNORE)
        embeds = self.lm.embed(ids)
        embeds = torch.cat([visual.to(embeds.dtype), embeds[:, visual.shape[1] :]], 1)
        if prompt_slots:
            where = torch.tensor(prompt_slots, device=device).T
            embeds = embeds.index_put((where[0], where[1]), torch.cat(prompt_tokens).to(embeds.dtype))
        hidden, lm_loss = self.lm(embeds, mask, labels)
        if batch.task == "caption":
            return BridgeOutput(lm_loss=lm_loss)
        projected = self.llm_projector(hidden)
        offset = projected[torch.arange(len(batch), device=device), torch.tensor(seg_positions, device=device)][:, None]
        empty = projected.new_zeros(0, projected.shape[-1])
        pooled = [
            torch.stack([projected[b, s:e].mean(0) for s, e in cs]) if cs else empty for b, cs in enumerate(spans)
        ]
        conditions = nn.utils.rnn.pad_sequence(pooled, batch_first=True)
        lengths = torch.tensor([len(cs) for cs in spans], device=device)
        cond_mask = torch.arange(conditions.shape[1], device=device)[None] < lengths[:, None]
        return BridgeOutput(query_offset=offset, conditions=conditions, condition_mask=cond_mask, lm_loss=lm_loss)
