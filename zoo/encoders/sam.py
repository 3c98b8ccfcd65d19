"""SAM's ViT image encoder (transformers), exposing the hidden states of chosen layers as feature maps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import SamVisionConfig, SamVisionModel

from zoo.encoders.base import Encoder
from zoo.kernels.sam_attention import use_fused_attention
from zoo.registry import register
from zoo.types import FeatureSpec
from zoo.weights import from_local


@dataclass
class SamViTArch:
    """Size of a randomly initialised SAM ViT (tiny recipes); the defaults are SAM ViT-L."""

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    mlp_dim: int = 4096
    patch_size: int = 16
    image_size: int = 1024
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (5, 11, 17, 23)
    initializer_range: float = 0.02  # transformers' SAM default (1e-10) would leave a random encoder constant


def layer_indices(layers: tuple[int, ...], num_layers: int) -> list[int]:
    """Hidden-state indices (0 = patch embeddings, i = after layer i), negatives counted from the end, deduped."""
    out: list[int] = []
    for layer in layers:
        index = layer if layer >= 0 else num_layers + 1 + layer
        if not 0 <= index <= num_layers:
            raise ValueError(
                f"layer {layer} is outside the encoder's hidden states 0..{num_layers} (or -1..-{num_layers + 1})"
            )
        if index not in out:
            out.append(index)
    return out


def hf_vision_model(cls: type, config_cls: type, pretrained: str | None, arch: object | None, what: str) -> nn.Module:
    """A transformers vision model from local weights (a full SAM/SigLIP checkpoint is fine) or random at `arch`."""
    if (pretrained is None) == (arch is None):
        raise ValueError(f"{what} needs exactly one of `pretrained` (local weights) or `arch` (random init)")
    if arch is not None:
        return cls(config_cls(**{k: list(v) if isinstance(v, tuple) else v for k, v in vars(arch).items()}))
    return from_local(cls.from_pretrained, pretrained, f"{what} weights")


@register("encoder")
class SamViTEncoder(Encoder):
    """SAM ViT image encoder: the hidden states after chosen layers, each a [B, C, H/p, W/p] map `layer{i}`.

    X-SAM reads layers 12/18/24 for its segmentation connector and layer -2 for its LLM projector. Layers after
    the deepest one read, and SAM's neck, are dropped: they would be computed and never used. The input must be
    `image_size` square (SAM's position embeddings are fixed; its processor pads to 1024).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        arch: SamViTArch | None = None,
        layers: tuple[int, ...] = (12, 18, 24, -2),
        pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    ) -> None:
        """Give `pretrained` (a local SAM checkpoint folder, e.g. facebook/sam-vit-large) or `arch`."""
        super().__init__()
        model = hf_vision_model(SamVisionModel, SamVisionConfig, pretrained, arch, "SamViTEncoder")
        config = model.config
        self.indices = layer_indices(layers, config.num_hidden_layers)
        self.body = model.vision_encoder
        self.body.layers = self.body.layers[: max(self.indices)]
        self.body.neck = nn.Identity()
        use_fused_attention(self.body)  # exact decomposed rel-pos attention through fused SDPA kernels
        self.image_size = config.image_size
        self.names = [f"layer{i}" for i in self.indices]
        spec = FeatureSpec(channels=config.hidden_size, stride=config.patch_size)
        self.output_specs = {name: spec for name in self.names}
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"SamViTEncoder takes {self.image_size}x{self.image_size} images (its position embeddings are fixed), "
                f"got {list(images.shape[-2:])}; resize/pad the data or set the encoder's image_size"
            )
        x = (images - self.pixel_mean) / self.pixel_std
        hidden = self.body(pixel_values=x, output_hidden_states=True).hidden_states  # [B, h, w, C] each
        return {name: hidden[i].permute(0, 3, 1, 2) for name, i in zip(self.names, self.indices, strict=True)}
