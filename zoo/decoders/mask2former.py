"""Mask2Former's masked-attention transformer decoder, with an entry for externally supplied query content.

The decoder layers, final LayerNorm and mask head are transformers' `Mask2FormerMaskedAttentionDecoder`
(pure PyTorch), configured from our typed arguments. This module replaces transformers'
`Mask2FormerTransformerModule`, which hard-codes learned query content: here it comes from `query_content`
when given (PSALM: the language model's states of the mask tokens), from the learned `query_feat` otherwise.
"""

from __future__ import annotations

from torch import Tensor, nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoder,
    Mask2FormerMLPPredictionHead,
    Mask2FormerSinePositionEmbedding,
)

from zoo.decoders.base import MaskDecoder
from zoo.registry import register
from zoo.types import DecoderLayerOutput, PixelFeatures

NUM_LEVELS = 3  # the decoder's layers cycle over three scales (transformers hard-codes it)


@register("mask_decoder")
class Mask2FormerDecoder(MaskDecoder):
    """Mask2Former masked-attention decoder: queries attend round-robin to 3 scales, masks at every layer.

    Layer l cross-attends only where the previous prediction's sigmoid is >= 0.5 (a query whose mask is empty
    attends everywhere), then self-attends, then runs its FFN. Returns `num_layers + 1` predictions (from the
    initial queries, then after each layer) for deep supervision; `queries` are after the final LayerNorm.
    """

    reads = frozenset({"query_content", "query_offset"})

    def __init__(
        self,
        in_dim: int,
        mask_dim: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        num_layers: int = 9,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        pre_norm: bool = False,
        enforce_input_projection: bool = False,
    ):
        super().__init__(in_dim, mask_dim, hidden_dim, num_queries, num_layers)
        config = Mask2FormerConfig(
            hidden_dim=hidden_dim,
            mask_feature_size=mask_dim,
            num_queries=num_queries,
            decoder_layers=num_layers + 1,  # transformers counts the initial prediction as a layer
            num_attention_heads=num_heads,
            dim_feedforward=ffn_dim,
            pre_norm=pre_norm,
            enforce_input_projection=enforce_input_projection,
            dropout=0.0,  # transformers also uses it as layer-drop probability
        )
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
        self.decoder = Mask2FormerMaskedAttentionDecoder(config)
        self.reset_parameters()

    @property
    def mask_embed(self) -> Mask2FormerMLPPredictionHead:
        """The 3-layer MLP turning a query into its mask embedding (dot product with `mask_features`)."""
        return self.decoder.mask_predictor.mask_embedder

    def reset_parameters(self) -> None:
        """Mask2Former's init: xavier decoder layers, c2-xavier input projections; embeddings stay N(0, 1)."""
        for layer in self.decoder.layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            nn.init.zeros_(layer.cross_attn.in_proj_bias)
        for projection in self.input_projections:
            if isinstance(projection, nn.Conv2d):
                nn.init.kaiming_uniform_(projection.weight, a=1)
                nn.init.zeros_(projection.bias)

    def initial_content(self, query_content: Tensor | None, batch: int, query_offset: Tensor | None = None) -> Tensor:
        """The layer-0 query content, [Q, B, D] (sequence first, as transformers' decoder takes it).

        `query_offset` [B, 1 or Q, D] is added to the learned content (X-SAM adds the `<SEG>` state to every query).
        """
        if query_content is None:
            content = self.query_feat.weight[:, None].expand(-1, batch, -1)
            if query_offset is None:
                return content
            if (
                query_offset.ndim != 3
                or query_offset.shape[0] != batch
                or query_offset.shape[1] not in (1, self.num_queries)
            ):
                raise ValueError(
                    f"query_offset must be [batch, 1 or num_queries, hidden_dim] = [{batch}, 1|{self.num_queries}, "
                    f"{self.hidden_dim}]; got {list(query_offset.shape)}"
                )
            return content + query_offset.transpose(0, 1).to(content.dtype)
        if query_offset is not None:
            raise ValueError("give the decoder either query_content (replacing its queries) or query_offset, not both")
        expected = (batch, self.num_queries, self.hidden_dim)
        if tuple(query_content.shape) != expected:
            raise ValueError(
                f"query_content must be [batch, num_queries, hidden_dim] = {list(expected)} for this "
                f"Mask2FormerDecoder (num_queries={self.num_queries}, hidden_dim={self.hidden_dim}); "
                f"got {list(query_content.shape)}"
            )
        return query_content.transpose(0, 1)

    def forward(
        self, pixel: PixelFeatures, query_content: Tensor | None = None, query_offset: Tensor | None = None
    ) -> list[DecoderLayerOutput]:
        levels = pixel.multi_scale
        if len(levels) != NUM_LEVELS or any(x.shape[1] != self.in_dim for x in levels):
            got = [tuple(x.shape[1:]) for x in levels]
            raise ValueError(f"Mask2FormerDecoder needs {NUM_LEVELS} maps of {self.in_dim} channels, got {got}")
        if (channels := pixel.mask_features.shape[1]) != self.mask_dim:
            raise ValueError(f"mask_features must have {self.mask_dim} channels, got {channels}")
        batch = levels[0].shape[0]
        keys, pos = [], []
        for level, (x, projection) in enumerate(zip(levels, self.input_projections, strict=True)):
            pos.append(self.position_embedding(x.shape, x.device, x.dtype).flatten(2).permute(2, 0, 1))
            key = projection(x).flatten(2) + self.level_embed.weight[level][None, :, None]
            keys.append(key.permute(2, 0, 1))
        out = self.decoder(
            inputs_embeds=self.initial_content(query_content, batch, query_offset),
            multi_stage_positional_embeddings=pos,
            pixel_embeddings=pixel.mask_features,
            encoder_hidden_states=keys,
            query_position_embeddings=self.query_embed.weight[:, None].expand(-1, batch, -1),
            feature_size_list=[x.shape[-2:] for x in levels],
            return_dict=True,
        )
        return [
            DecoderLayerOutput(queries=queries.transpose(0, 1), masks=masks)
            for queries, masks in zip(out.intermediate_hidden_states, out.masks_queries_logits, strict=True)
        ]
