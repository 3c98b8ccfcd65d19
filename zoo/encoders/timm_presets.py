"""Toy-size timm models for the tiny recipes, registered under their own names as timm registers its sizes.

A tiny recipe names its encoder's size in one line (`model_name: swin_toy_patch4_window4`), so an overlay that
names another model (`model_name: convnext_atto`) replaces the whole architecture: were the toy sizes init_args
beside the name, jsonargparse would merge them into the other model's arguments. Imported by `TimmEncoder`.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, swin_transformer

# timm's register_model reads the pretrained config of each name from its module's `default_cfgs`. A Swin's
# position tables and windows are sized for one input (`fixed_input_size`), 96 px by default like the tiny data.
default_cfgs = generate_default_cfgs(
    {
        "swin_toy_patch4_window4": {
            "input_size": (3, 96, 96),
            "fixed_input_size": True,
            "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD,
            "first_conv": "patch_embed.proj",
            "classifier": "head.fc",
        }
    }
)


@register_model
def swin_toy_patch4_window4(pretrained: bool = False, **kwargs: Any) -> swin_transformer.SwinTransformer:
    """Swin at toy size (the tiny PSALM's): width 16, one block per stage, heads 1/2/2/4, window 4.

    Built as timm builds its own Swins, so it is the network `swin_base_patch4_window12_384` gives with these
    sizes as overrides, parameter for parameter and draw for draw.
    """
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    model_args = dict(patch_size=4, window_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))
    return build_model_with_cfg(
        swin_transformer.SwinTransformer,
        "swin_toy_patch4_window4",
        pretrained,
        pretrained_filter_fn=swin_transformer.checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **dict(model_args, **kwargs),
    )
