"""Vision encoders from timm, exposed as named multi-scale maps in NCHW."""

from __future__ import annotations

import timm
import torch
from timm.models import get_pretrained_cfg
from torch import Tensor

import zoo.encoders.timm_presets  # noqa: F401  (registers the toy sizes the tiny recipes name)
from zoo.encoders.base import Encoder
from zoo.registry import register, unknown_message
from zoo.types import FeatureSpec
from zoo.weights import require_file


def takes_img_size(model_name: str) -> bool:
    """Whether timm builds this model for one input size (Swin, ViT: position tables, windows) and so takes one.

    This is timm's own rule for passing `img_size` from a pretrained config (`fixed_input_size`); CNNs (ConvNeXt,
    ResNet) run at any size and have no such argument.
    """
    cfg = get_pretrained_cfg(model_name)
    return cfg is not None and cfg.fixed_input_size


@register("encoder")
class TimmEncoder(Encoder):
    """Any timm backbone with features_only (Swin, ConvNeXt, ResNet, ViT ...) as named NCHW maps.

    A hierarchical model's maps are named by stride (`res2` = stride 4 ... `res5` = 32), the pyramid pixel
    decoders and projectors read. A plain ViT's blocks all keep the patch stride, so its maps are named by depth:
    `layer{i}` is the output of the i-th block, as `SamViTEncoder` names its hidden states, so that a timm ViT
    fills X-SAM's mask side (the connector's `sam_layer*`) in one line.
    """

    def __init__(
        self,
        model_name: str = "swin_base_patch4_window12_384",
        img_size: int | None = 1024,
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        weights: str | None = None,
        drop_path_rate: float = 0.0,
        pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    ) -> None:
        """`model_name` fixes the whole architecture; toy sizes are names too (`swin_toy_patch4_window4`).

        `img_size` reaches only models built for one input size (see `takes_img_size`): recipes give the data's
        size here whatever the model, and a CNN swapped in must not receive it. None keeps timm's default size.
        `weights` is a local checkpoint (safetensors or torch file) loaded through timm's own filter.
        """
        super().__init__()
        if not timm.is_model(model_name):
            raise ValueError(unknown_message("timm model", model_name, timm.list_models()))
        kwargs: dict[str, object] = {}
        if img_size is not None and takes_img_size(model_name):
            kwargs["img_size"] = img_size
        if weights is not None:
            file = require_file(weights, f"encoder '{model_name}'", "encoder.init_args.weights")
            kwargs["pretrained_cfg_overlay"] = {"file": str(file)}
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
        if len({f["reduction"] for f in info.info}) == 1:  # every block at the patch stride: a plain ViT
            self.names = [f"layer{i + 1}" for i in info.out_indices]
        else:
            self.names = [f"res{int(s).bit_length() - 1}" for s in strides]  # stride 4 -> res2 ... 32 -> res5
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{model_name} out_indices {out_indices} give two maps at one stride: {self.names}")
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
