"""SigLIP vision tower (transformers): one layer's patch tokens as a feature map, for a language model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from zoo.encoders.base import Encoder
from zoo.encoders.sam import hf_vision_model, layer_indices
from zoo.registry import register
from zoo.types import FeatureSpec


@dataclass
class SiglipArch:
    """Size of a randomly initialised SigLIP vision tower (tiny recipes); the defaults are so400m-patch14-384."""

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    image_size: int = 384
    patch_size: int = 14


@register("encoder")
class SiglipEncoder(Encoder):
    """SigLIP vision tower: the patch tokens after `select_layer` (X-SAM: -2) as a [B, C, g, g] map `layer{i}`.

    Images are resized to the tower's own square `image_size` (X-SAM feeds SigLIP a 384 px view while SAM sees
    1024 px), so the declared stride is the patch size in that view. The layers after `select_layer`, the final
    LayerNorm and the pooling head are dropped: X-SAM never reads them.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        arch: SiglipArch | None = None,
        select_layer: int = -2,
        pixel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        pixel_std: tuple[float, float, float] = (0.5, 0.5, 0.5),
    ) -> None:
        """Give `pretrained` (a local SigLIP or SigLIP2 fixed-resolution checkpoint folder) or `arch`."""
        super().__init__()
        model = hf_vision_model(SiglipVisionModel, SiglipVisionConfig, pretrained, arch, "SiglipEncoder")
        config = model.config
        (self.index,) = layer_indices((select_layer,), config.num_hidden_layers)
        model.encoder.layers = model.encoder.layers[: self.index]
        model.post_layernorm = nn.Identity()
        if model.use_head:
            del model.head
            model.use_head = False
        self.body = model
        self.image_size = config.image_size
        self.grid = config.image_size // config.patch_size
        self.name = f"layer{self.index}"
        self.output_specs = {self.name: FeatureSpec(channels=config.hidden_size, stride=config.patch_size)}
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        x = (images - self.pixel_mean) / self.pixel_std
        tokens = self.body(pixel_values=x).last_hidden_state  # [B, g*g, C], after layer `index`
        return {self.name: tokens.transpose(1, 2).reshape(len(images), -1, self.grid, self.grid)}
