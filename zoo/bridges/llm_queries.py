"""PSALM's bridge: the language model's output states at learnable mask tokens become the decoder queries."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.bridges.base import IGNORE, Bridge
from zoo.language.causal_lm import CausalLM
from zoo.projectors.base import Projector
from zoo.registry import register
from zoo.tasks import condition_groups, is_prompted, task_spec
from zoo.types import Batch, BridgeOutput, Dims, FeatureSpec


class _Sequence:
    """One sample's LLM input assembled from text and embedding chunks, remembering where each span sits."""

    def __init__(self) -> None:
        self.chunks: list[Tensor] = []
        self.labels: list[Tensor] = []
        self.length = 0

    def add(self, embeds: Tensor, labels: Tensor | None = None) -> tuple[int, int]:
        start = self.length
        self.chunks.append(embeds)
        n = embeds.shape[0]
        self.labels.append(labels if labels is not None else torch.full((n,), IGNORE, device=embeds.device))
        self.length += n
        return start, self.length


@register("bridge")
class LLMQueries(Bridge):
    """PSALM: mask tokens follow image, instruction and conditions through the LLM and become the queries.

    Conditions are pooled over their spans (category names, the expression, one region token per visual prompt);
    `background` is itself a text class, the last one, so generic segmentation scores K+1 conditions.
    """

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
        self.seg_id = language_model.tokenizer.convert_tokens_to_ids(seg_token)

    def _text(self, text: str, seg: bool = False) -> Tensor:
        ids = self.lm.token_ids(text) + ([self.seg_id] if seg else [])
        return torch.tensor(ids, dtype=torch.long, device=self.lm.device)

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
        sequences, spans, query_spans = [], [], []
        for b in range(len(batch)):
            rng = batch.generators[b] if batch.generators else None
            seq = _Sequence()
            seq.add(image_tokens[b])
            seq.add(self.lm.embed(self._text(batch.instructions[b])))
            cond_spans: list[tuple[int, int]] = []
            if batch.task == "panoptic":
                names = [*batch.conditions[b], self.background]
                order = range(len(names))
                if self.training and self.shuffle_categories:
                    order = torch.randperm(len(names), generator=rng, device=rng.device if rng else None).tolist()
                cond_spans = [(0, 0)] * len(names)
                for i in order:
                    cond_spans[i] = seq.add(self.lm.embed(self._text(names[i], seg=True)))
            elif batch.task == "referring":
                cond_spans = [seq.add(self.lm.embed(self._text(c, seg=True))) for c in batch.conditions[b]]
            elif is_prompted(batch.task):
                regions = self.region_tokens(grid[b], batch.prompts[b], rng)
                cond_spans = [seq.add(region[None]) for region in regions]
            if caption:
                ids = self._text(batch.answers[b])
                eos = torch.tensor([self.lm.tokenizer.eos_token_id], device=ids.device)
                ids = torch.cat([ids, eos])
                seq.add(self.lm.embed(ids), labels=ids)
            else:
                query_spans.append(seq.add(self.mask_tokens.to(image_tokens.dtype)))
            sequences.append(seq)
            spans.append(cond_spans)

        embeds, mask, labels = self._pad(sequences)
        hidden, lm_loss = self.lm(embeds, mask, labels if caption else None)
        if caption:
            return BridgeOutput(lm_loss=lm_loss)
        queries = torch.stack([hidden[b, s:e] for b, (s, e) in enumerate(query_spans)])
        pooled = [torch.stack([hidden[b, s:e].mean(0) for s, e in cs]) for b, cs in enumerate(spans) if cs]
        conditions, cond_mask = None, None
        if pooled:
            conditions = nn.utils.rnn.pad_sequence(pooled, batch_first=True)
            lengths = torch.tensor([len(cs) for cs in spans], device=conditions.device)
            cond_mask = torch.arange(conditions.shape[1], device=conditions.device)[None] < lengths[:, None]
            conditions = self.condition_proj[task_spec(batch.task).condition_group](conditions)
        return BridgeOutput(query_content=self.query_proj(queries), conditions=conditions, condition_mask=cond_mask)

    @staticmethod
    def _pad(sequences: list[_Sequence]) -> tuple[Tensor, Tensor, Tensor]:
        """Right-pad the samples to one length: embeddings, attention mask and labels."""
        embeds = nn.utils.rnn.pad_sequence([torch.cat(s.chunks) for s in sequences], batch_first=True)
        labels = nn.utils.rnn.pad_sequence(
            [torch.cat(s.labels) for s in sequences], batch_first=True, padding_value=IGNORE
        )
        lengths = torch.tensor([s.length for s in sequences], device=embeds.device)
        mask = (torch.arange(embeds.shape[1], device=embeds.device)[None] < lengths[:, None]).long()
        return embeds, mask, labels
