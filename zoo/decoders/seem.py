"""The SEEM decoder: one masked-attention transformer mixing object, grounding and spatial queries with text
tokens, visual-prompt tokens and memory prompts, as its attention graph says.

Per layer (post-norm, as Mask2Former): masked cross-attention to one of three scales (round robin), then
self-attention under the graph's mask, then an FFN; every layer, and the initial queries, predict masks for deep
supervision. Visual prompts become tokens by sampling the current scale's features at up to `prompt_points`
positive and negative points per object, through a per-scale projection, plus a positive/negative indicator.
Spatial queries (`queries_per_prompt` per object) are copies of object queries, random in training and fixed in
evaluation; memory prompts (`num_memories` per object) cross-attend only inside the previous round's mask. A
visual prompt is answered by its own queries, scored by mask embedding x the mean mask feature under the prompt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerSinePositionEmbedding

from zoo.decoders.base import MaskDecoder
from zoo.decoders.seem_attention import PER_PROMPT, AttentionGraph
from zoo.decoders.seem_prompts import PromptPoints, per_object, previous_blocked, prompt_points, sample
from zoo.registry import register
from zoo.types import MASKED, DecoderLayerOutput, PixelFeatures, PromptInputs

NUM_LEVELS = 3


class SeemLayer(nn.Module):
    """Masked cross-attention (for the variables that read the image), self-attention, FFN; post-norm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.self_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: Tensor,
        pos: Tensor,
        cross: Tensor,
        memory: tuple[Tensor, Tensor],
        cross_mask: Tensor,
        self_mask: Tensor,
    ) -> Tensor:
        """`x`, `pos` [B, S, D]; `cross` [Sc] indices of cross-attending variables; `memory` the scale's features and
        positions [B, hw, D]; masks already repeated per head (True = blocked)."""
        if cross.numel():
            src, src_pos = memory
            xc = x[:, cross]
            attended = self.cross_attn(
                xc + pos[:, cross], src + src_pos, src, attn_mask=cross_mask, need_weights=False
            )[0]
            x = x.index_copy(1, cross, self.cross_norm(xc + attended))
        q = x + pos
        x = self.self_norm(x + self.self_attn(q, q, x, attn_mask=self_mask, need_weights=False)[0])
        return self.ffn_norm(x + self.ffn(x))


@register("mask_decoder")
class SeemDecoder(MaskDecoder):
    """SEEM's decoder: object / grounding / spatial queries, text and visual-prompt tokens, memory prompts.

    Returns `num_layers + 1` predictions of the task's query group (`attention.outputs`). Panoptic and referring
    queries are scored by the head against text; visual-prompt queries are scored here (`logits`), each prompt only
    by its own queries (the others get `MASKED`), which is what restricts SEEM's matching per prompt.
    """

    reads = frozenset({"query_content", "prompts"})

    def __init__(
        self,
        in_dim: int,
        mask_dim: int,
        hidden_dim: int = 512,
        num_queries: int = 101,
        num_layers: int = 9,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        queries_per_prompt: int = 3,
        num_memories: int = 32,
        prompt_points: int = 512,
        enforce_input_projection: bool = False,
        attention: AttentionGraph | None = None,
    ) -> None:
        super().__init__(in_dim, mask_dim, hidden_dim, num_queries, num_layers)
        for name, value in (("queries_per_prompt", queries_per_prompt), ("num_memories", num_memories)):
            if value < 1:
                raise ValueError(f"SeemDecoder {name} must be at least 1, got {value}")
        self.num_heads = num_heads
        self.queries_per_prompt, self.num_memories, self.prompt_points = queries_per_prompt, num_memories, prompt_points
        self.attention = attention or AttentionGraph()
        self.position_embedding = Mask2FormerSinePositionEmbedding(
            num_position_features=hidden_dim // 2, normalize=True
        )
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(NUM_LEVELS, hidden_dim)
        project = in_dim != hidden_dim or enforce_input_projection
        self.input_projections = nn.ModuleList(
            nn.Conv2d(in_dim, hidden_dim, kernel_size=1) if project else nn.Identity() for _ in range(NUM_LEVELS)
        )
        self.layers = nn.ModuleList(SeemLayer(hidden_dim, num_heads, ffn_dim) for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.mask_embed = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, mask_dim),
        )
        self.spatial_embed = nn.Parameter(torch.empty(NUM_LEVELS, hidden_dim, hidden_dim))  # mask_sptial_embed
        self.pn_indicator = nn.Embedding(2, hidden_dim)  # 0: positive point, 1: negative point
        self.memory_feat = nn.Embedding(num_memories, hidden_dim)  # spatial_featured
        self.memory_embed = nn.Embedding(num_memories, hidden_dim)  # spatial_embed
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Mask2Former's init (xavier layers, c2-xavier projections); SEEM's trunc-normal spatial projections."""
        for layer in self.layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for projection in self.input_projections:
            if isinstance(projection, nn.Conv2d):
                nn.init.kaiming_uniform_(projection.weight, a=1)
                nn.init.zeros_(projection.bias)
        nn.init.trunc_normal_(self.spatial_embed, std=0.02)

    def forward(
        self, pixel: PixelFeatures, query_content: Tensor | None = None, prompts: PromptInputs | None = None
    ) -> list[DecoderLayerOutput]:
        levels = pixel.multi_scale
        if len(levels) != NUM_LEVELS or any(x.shape[1] != self.in_dim for x in levels):
            got = [tuple(x.shape[1:]) for x in levels]
            raise ValueError(f"SeemDecoder needs {NUM_LEVELS} maps of {self.in_dim} channels, got {got}")
        prompts = prompts or PromptInputs(task="panoptic")
        available = {"queries_object", "queries_grounding"}
        if prompts.tokens is not None:
            available.add("tokens_grounding")
        if prompts.positive is not None:
            available |= PER_PROMPT
        groups = self.attention.active(prompts.task, available)
        num = max((len(p) for p in prompts.positive), default=0) if prompts.positive is not None else 0
        points = None
        if "queries_spatial" in groups or "tokens_spatial" in groups:
            points = prompt_points(prompts, num, self.prompt_points, self.training)
        x, pos, group_ids, owners, valid, spans = self._sequence(groups, query_content, prompts, num, points, levels)
        self_mask = self.attention.self_attention_mask(groups, group_ids, owners, valid)
        self_mask = self_mask.repeat_interleave(self.num_heads, 0)

        src, src_pos = self._scales(levels)
        sizes = [tuple(x.shape[-2:]) for x in levels]
        memory = [
            (s.flatten(2).transpose(1, 2), p.flatten(2).transpose(1, 2)) for s, p in zip(src, src_pos, strict=True)
        ]
        # Visual prompts are drawn on the image itself, or on a reference image's features (SEEM's example prompt).
        drawn = prompts.reference or pixel
        drawn_src, drawn_pos = (src, src_pos) if prompts.reference is None else self._scales(drawn.multi_scale)

        device = x.device
        cross_groups = [g for g in groups if g in self.attention.cross_attention]
        cross = torch.cat([torch.arange(*spans[g], device=device) for g in cross_groups] + [owners[:0]])
        query_groups = [g for g in groups if g.startswith("queries_")]
        query_index = torch.cat([torch.arange(*spans[g], device=device) for g in query_groups])
        out_group = self.attention.outputs[prompts.task]
        out_start = sum(spans[g][1] - spans[g][0] for g in query_groups[: query_groups.index(out_group)])
        out_slice = slice(out_start, out_start + spans[out_group][1] - spans[out_group][0])
        prompt_embed = None
        if out_group == "queries_spatial":
            prompt_embed = self._prompt_embeddings(drawn.mask_features, points, num)
        memory_blocked = None
        if "memories_spatial" in cross_groups:
            memory_blocked = [previous_blocked(prompts, num, size, device) for size in sizes]

        def predict(x: Tensor, level: int) -> tuple[DecoderLayerOutput, Tensor]:
            """This layer's prediction, and the next layer's cross-attention block (True = blocked)."""
            normed = self.decoder_norm(x)
            embeds = self.mask_embed(normed[:, query_index])
            masks = torch.einsum("bqc,bchw->bqhw", embeds, pixel.mask_features)
            logits = None if prompt_embed is None else self._spatial_logits(embeds[:, out_slice], prompt_embed, num)
            out = DecoderLayerOutput(normed[:, slice(*spans[out_group])], masks[:, out_slice], logits)
            blocked = torch.zeros(*x.shape[:2], sizes[level][0] * sizes[level][1], dtype=torch.bool, device=device)
            resized = F.interpolate(masks.detach(), size=sizes[level], mode="bilinear", align_corners=False)
            blocked[:, query_index] = resized.flatten(2).sigmoid() < 0.5
            if memory_blocked is not None:
                start, end = spans["memories_spatial"]
                blocked[:, start:end] = memory_blocked[level].repeat_interleave(self.num_memories, 1)
            blocked = blocked[:, cross]
            blocked[blocked.all(-1)] = False  # a variable with an empty mask attends everywhere (Mask2Former)
            return out, blocked.repeat_interleave(self.num_heads, 0)

        out, cross_mask = predict(x, 0)
        outputs = [out]
        for i, layer in enumerate(self.layers):
            level = i % NUM_LEVELS
            if "tokens_spatial" in spans:
                x, pos = self._spatial_tokens(x, pos, spans["tokens_spatial"], drawn_src, drawn_pos, level, points)
            x = layer(x, pos, cross, memory[level], cross_mask, self_mask)
            out, cross_mask = predict(x, (i + 1) % NUM_LEVELS)
            outputs.append(out)
        return outputs

    def _sequence(
        self,
        groups: list[str],
        query_content: Tensor | None,
        prompts: PromptInputs,
        num: int,
        points: PromptPoints | None,
        levels: list[Tensor],
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, dict[str, tuple[int, int]]]:
        """The active groups' variables end to end: content and positions [B, S, D], group index [S], owner object
        [S] (-1 = shared), validity [B, S], and each group's span."""
        batch, device = levels[0].shape[0], levels[0].device
        expected = (batch, self.num_queries, self.hidden_dim)
        if query_content is not None and tuple(query_content.shape) != expected:
            raise ValueError(
                f"query_content must be [batch, num_queries, hidden_dim] = {list(expected)}, "
                f"got {list(query_content.shape)}"
            )
        content = query_content if query_content is not None else self.query_feat.weight[None].expand(batch, -1, -1)
        query_pos = self.query_embed.weight[None].expand(batch, -1, -1)
        parts = []
        for group in groups:
            if group in ("queries_object", "queries_grounding"):
                shared = torch.full((self.num_queries,), -1, dtype=torch.long, device=device)
                every = torch.ones(batch, self.num_queries, dtype=torch.bool, device=device)
                parts.append((content, query_pos, shared, every))
            elif group == "tokens_grounding":
                tokens = prompts.tokens.to(content.dtype)
                shared = torch.full((tokens.shape[1],), -1, dtype=torch.long, device=device)
                parts.append((tokens, torch.zeros_like(tokens), shared, prompts.token_mask))
            elif group == "queries_spatial":  # copies of object queries: random in training, fixed in evaluation
                n = self.queries_per_prompt
                if self.training:
                    pick = torch.randint(self.num_queries, (batch, num * n), device=device)
                else:
                    fixed = torch.linspace(0, self.num_queries - 1, n, device=device).round().long()
                    pick = fixed.repeat(num)[None].expand(batch, -1)
                rows = torch.arange(batch, device=device)[:, None]
                parts.append((content[rows, pick], query_pos[rows, pick], *per_object(prompts, num, n, device)))
            elif group == "tokens_spatial":  # content and positions are read from each layer's scale
                placeholder = content.new_zeros(batch, points.coords.shape[1], self.hidden_dim)
                parts.append((placeholder, placeholder, points.owner, points.valid))
            elif group == "memories_spatial":
                feat = self.memory_feat.weight.repeat(num, 1)[None].expand(batch, -1, -1)
                pos = self.memory_embed.weight.repeat(num, 1)[None].expand(batch, -1, -1)
                parts.append((feat, pos, *per_object(prompts, num, self.num_memories, device)))
        sizes = [part[0].shape[1] for part in parts]
        ends = torch.tensor(sizes).cumsum(0).tolist()
        spans = {g: (end - size, end) for g, size, end in zip(groups, sizes, ends, strict=True)}
        group_ids = torch.cat([torch.full((size,), g, device=device) for g, size in enumerate(sizes)])
        content, pos, owner, valid = (torch.cat([part[i] for part in parts], 1 if i != 2 else 0) for i in range(4))
        return content, pos, group_ids, owner, valid, spans

    def _scales(self, levels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per scale, the projected features plus level embedding and the sine positions, [B, D, h, w] each."""
        src, pos = [], []
        for i, (x, projection) in enumerate(zip(levels, self.input_projections, strict=True)):
            src.append(projection(x) + self.level_embed.weight[i][None, :, None, None])
            pos.append(self.position_embedding(x.shape, x.device, x.dtype).to(x.dtype))
        return src, pos

    def _spatial_tokens(
        self,
        x: Tensor,
        pos: Tensor,
        span: tuple[int, int],
        src: list[Tensor],
        src_pos: list[Tensor],
        level: int,
        points: PromptPoints,
    ) -> tuple[Tensor, Tensor]:
        """Write this scale's visual-prompt tokens into the sequence: projected features at the prompt points plus
        the positive/negative indicator, positioned by the sine embedding at those points."""
        tokens = sample(src[level], points.coords) @ self.spatial_embed[level] + self.pn_indicator(points.negative)
        start, end = span
        x = torch.cat([x[:, :start], tokens.to(x.dtype), x[:, end:]], 1)
        pos = torch.cat([pos[:, :start], sample(src_pos[level], points.coords).to(pos.dtype), pos[:, end:]], 1)
        return x, pos

    def _prompt_embeddings(self, mask_features: Tensor, points: PromptPoints, num: int) -> Tensor:
        """Each object's mean mask feature over its positive prompt points, [B, num, mask_dim] (SEEM's
        `spatial_query_pos`): a query's score is then its mask logit averaged over the prompt."""
        sampled = sample(mask_features, points.coords)  # [B, num * L, C]
        batch = sampled.shape[0]
        weight = (points.valid & (points.negative == 0)).to(sampled.dtype).view(batch, num, -1)
        sampled = sampled.view(batch, num, -1, sampled.shape[-1])
        return (sampled * weight[..., None]).sum(2) / weight.sum(2, keepdim=True).clamp(min=1)

    def _spatial_logits(self, embeds: Tensor, prompt_embed: Tensor, num: int) -> Tensor:
        """[B, num * n, num] log-probabilities of spatial queries for each prompt; a prompt's own queries only."""
        logits = torch.einsum("bqc,bkc->bqk", embeds, prompt_embed.to(embeds.dtype))
        owner = torch.arange(num, device=embeds.device).repeat_interleave(self.queries_per_prompt)
        own = owner[:, None] == torch.arange(num, device=embeds.device)[None]
        # Log-softmax over the prompt's own queries: the scores rank them the same for any reader (sigmoid top-1
        # included) and train the same under SEEM's cross-entropy over queries.
        return logits.masked_fill(~own[None], MASKED).log_softmax(1).masked_fill(~own[None], MASKED)
