"""Vision encoders from timm, exposed as named multi-scale maps in NCHW."""

from __future__ import annotations

import timm
import torch
from torch import Tensor

from zoo.encoders.base import Encoder
from zoo.registry import register, unknown_message
from zoo.types import FeatureSpec
from zoo.weights import require_file


@register("encoder")
class TimmEncoder(Encoder):
    """Any timm backbone with features_only (Swin, ConvNeXt, ...), maps named res2..res5 by stride."""

    def __init__(
        self,
        model_name: str = "swin_base_patch4_window12_384",
        img_size: int | None = 1024,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        weights: str | None = None,
        embed_dim: int | None = None,
        depths: tuple[int, ...] | None = None,
        num_heads: tuple[int, ...] | None = None,
        window_size: int | None = None,
        drop_path_rate: float = 0.0,
        pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    ) -> None:
        """`weights` is a local checkpoint (safetensors or torch file) loaded through timm's own filter.

        The architecture overrides (embed_dim, depths, ...) exist for tiny test variants; None keeps the
        model's default.
        """
        super().__init__()
        overrides = {
            "img_size": img_size,
            "embed_dim": embed_dim,
            "depths": depths,
            "num_heads": num_heads,
            "window_size": window_size,
        }
        kwargs = {k: v for k, v in overrides.items() if v is not None}
        if weights is not None:
            file = require_file(weights, f"encoder '{model_name}'", "encoder.init_args.weights")
            kwargs["pretrained_cfg_overlay"] = {"file": str(file)}
        if not timm.is_model(model_name):
            raise ValueError(unknown_message("timm model", model_name, timm.list_models()))
        self.body = timm.create_model(
            model_name,
            pretrained=weights is not None,
            features_only=True,
            out_indices=out_indices,
            drop_path_rate=drop_path_rate,
            **kwargs,
        )
        info = self.body.feature_info
        strides = info.reduction()
        self.names = [f"res{int(s).bit_length() - 1}" for s in strides]  # stride 4 -> res2 ... 32 -> res5
        self.output_specs = {
            n: FeatureSpec(channels=c, stride=s) for n, c, s in zip(self.names, info.channels(), strides, strict=True)
        }
        self.channels_last = getattr(self.body, "output_fmt", "NCHW") == "NHWC"
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = (images - self.pixel_mean) / self.pixel_std
        maps = self.body(x)
        if self.channels_last:
            maps = [m.permute(0, 3, 1, 2).contiguous() for m in maps]
        return dict(zip(self.names, maps, strict=True))
