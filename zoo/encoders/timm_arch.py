"""FocalNet and DaViT (SEEM's backbones) from timm's model classes, at any size.

`TimmEncoder` goes through timm's named entry points, which fix the width of these two families (FocalNet's hard-
code `embed_dim` and `depths`; DaViT's width is `embed_dims`), so tiny variants cannot be asked for there. These
encoders build timm's classes directly with the same feature extraction and checkpoint filters timm uses.
"""

from __future__ import annotations

import torch
from timm.models import build_model_with_cfg, davit, focalnet
from torch import Tensor, nn

from zoo.encoders.base import Encoder
from zoo.registry import register
from zoo.types import FeatureSpec
from zoo.weights import require_file


class TimmArchEncoder(Encoder):
    """Base: a timm model class built features-only at the given size; maps named res2..res5 by stride."""

    def __init__(
        self,
        model_cls: type[nn.Module],
        variant: str,
        arch: dict,
        weights: str | None,
        out_indices: tuple[int, ...],
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        **build: object,
    ) -> None:
        super().__init__()
        if weights is not None:
            file = require_file(weights, f"encoder '{variant}'", "encoder.init_args.weights")
            build["pretrained_cfg_overlay"] = {"file": str(file)}
        self.body = build_model_with_cfg(
            model_cls,
            variant,
            pretrained=weights is not None,
            features_only=True,
            feature_cfg={"flatten_sequential": True, "out_indices": out_indices},
            **build,
            **arch,
        )
        info = self.body.feature_info
        strides = info.reduction()
        self.names = [f"res{int(s).bit_length() - 1}" for s in strides]
        self.output_specs = {
            n: FeatureSpec(channels=c, stride=s) for n, c, s in zip(self.names, info.channels(), strides, strict=True)
        }
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        maps = self.body((images - self.pixel_mean) / self.pixel_std)
        return dict(zip(self.names, maps, strict=True))


@register("encoder")
class FocalNetEncoder(TimmArchEncoder):
    """FocalNet (focal modulation), SEEM's Focal-T/L backbone; defaults are Focal-T with SEEM's 3 focal levels.

    `weights` is a local timm-format FocalNet checkpoint (loaded through timm's key filter). SEEM's own Focal-T is
    the depthwise `focal_dw` variant with UniCL weights; timm's FocalNet is the closest published architecture.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        focal_levels: tuple[int, ...] = (3, 3, 3, 3),
        focal_windows: tuple[int, ...] = (3, 3, 3, 3),
        use_overlap_down: bool = False,
        use_post_norm: bool = False,
        layerscale_value: float | None = None,
        drop_path_rate: float = 0.3,
        weights: str | None = None,
        variant: str = "focalnet_tiny_lrf",
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    ) -> None:
        arch = dict(
            embed_dim=embed_dim,
            depths=tuple(depths),
            focal_levels=tuple(focal_levels),
            focal_windows=tuple(focal_windows),
            use_overlap_down=use_overlap_down,
            use_post_norm=use_post_norm,
            layerscale_value=layerscale_value,
            drop_path_rate=drop_path_rate,
        )
        super().__init__(
            focalnet.FocalNet,
            variant,
            arch,
            weights,
            out_indices,
            pixel_mean,
            pixel_std,
            pretrained_filter_fn=focalnet.checkpoint_filter_fn,
        )


@register("encoder")
class DaViTEncoder(TimmArchEncoder):
    """DaViT (dual spatial / channel attention), SEEM's DaViT-d3/d5 backbone; defaults are timm's DaViT-T."""

    def __init__(
        self,
        embed_dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (1, 1, 3, 1),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        drop_path_rate: float = 0.1,
        weights: str | None = None,
        variant: str = "davit_tiny",
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    ) -> None:
        arch = dict(
            embed_dims=tuple(embed_dims),
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
            drop_path_rate=drop_path_rate,
        )
        super().__init__(
            davit.DaVit,
            variant,
            arch,
            weights,
            out_indices,
            pixel_mean,
            pixel_std,
            pretrained_filter_fn=davit.checkpoint_filter_fn,
        )
