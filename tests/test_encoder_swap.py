"""A swap is one line: every tiny recipe's encoder, replaced by another timm family through one command-line
argument, is that family's whole network (none of the toy's sizes merged in) and trains a step."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import torch

from tests.cli_helpers import logged_losses, small
from tests.conftest import ROOT
from zoo.cli import ZooCLI
from zoo.encoders import TimmEncoder

RECIPES = ROOT / "recipes"
CONVNEXT = {"model_name": "convnext_atto"}
RESNET = {"model_name": "resnet10t"}
# X-SAM's connector and SAM-token projector read ViT layers by depth (`sam_layer2`..); a timm ViT names its maps
# so too. Patch 8 keeps the tiny SAM's 12x12 grid at 96 px, which the connector folds down to stride 32.
VIT = {"model_name": "vit_small_patch8_224", "img_size": 96}


def timm_encoder(init_args: dict) -> str:
    return json.dumps({"class_path": "TimmEncoder", "init_args": init_args})


# The toy Swin is a timm name, so naming another model replaces it whole (its sizes are not init_args to merge).
CNN_NAME = f"--model.net.encoder.init_args.model_name={CONVNEXT['model_name']}"
# Another class: jsonargparse drops the init_args the new class lacks (FocalNet's sizes, SAM's `arch`).
CNN_CLASS = f"--model.net.encoder={timm_encoder(RESNET)}"
VIT_CLASS = f"--model.net.encoder={timm_encoder(VIT)}"
VIT_MASK_SIDE = f"--model.net.encoder.init_args.encoders.sam={timm_encoder(VIT)}"

# recipe: (its config layers, the one-line swap, the swapped encoder's module path, the timm model it must be)
SWAPS = {
    "psalm/tiny.yaml": (["psalm/tiny.yaml"], CNN_NAME, "encoder", CONVNEXT),
    "psalm/tiny_stage1.yaml": (["psalm/tiny_stage1.yaml"], CNN_NAME, "encoder", CONVNEXT),
    "psalm/tiny_stage2.yaml": (["psalm/tiny_stage2.yaml"], CNN_NAME, "encoder", CONVNEXT),
    "seem/tiny.yaml": (["seem/tiny.yaml"], CNN_CLASS, "encoder", RESNET),
    "xsam/tiny.yaml": (["xsam/tiny.yaml"], VIT_MASK_SIDE, "encoder.sam", VIT),
    "xsam/tiny_stage1.yaml": (["xsam/tiny_stage1.yaml"], VIT_MASK_SIDE, "encoder.sam", VIT),
    "xsam/tiny_stage2.yaml": (["xsam/tiny_stage2.yaml"], VIT_MASK_SIDE, "encoder.sam", VIT),
    "ablations/tiny_psalm_dual_encoder.yaml": (
        ["psalm/tiny.yaml", "ablations/tiny_psalm_dual_encoder.yaml"],
        VIT_MASK_SIDE,
        "encoder.sam",
        VIT,
    ),
    "ablations/tiny_psalm_qwen2.yaml": (
        ["psalm/tiny.yaml", "ablations/tiny_psalm_qwen2.yaml"],
        CNN_NAME,
        "encoder",
        CONVNEXT,
    ),
    "ablations/tiny_seem_decoder_on_sam.yaml": (
        ["seem/tiny.yaml", "ablations/tiny_seem_decoder_on_sam.yaml"],
        VIT_CLASS,
        "encoder",
        VIT,
    ),
    "ablations/tiny_xsam_llm_queries.yaml": (
        ["xsam/tiny.yaml", "_base/reset_bridge.yaml", "ablations/tiny_xsam_llm_queries.yaml"],
        VIT_MASK_SIDE,
        "encoder.sam",
        VIT,
    ),
    "ablations/tiny_xsam_qwen2.yaml": (
        ["xsam/tiny.yaml", "ablations/tiny_xsam_qwen2.yaml"],
        VIT_MASK_SIDE,
        "encoder.sam",
        VIT,
    ),
}


def test_every_tiny_recipe_has_a_swap() -> None:
    tiny = {
        str(p.relative_to(RECIPES))
        for p in RECIPES.rglob("tiny*.yaml")
        if "model:" in p.read_text()  # curricula and grids are plans over recipes, not recipes
    }
    assert tiny == set(SWAPS)


@pytest.mark.parametrize("recipe", sorted(SWAPS))
def test_one_line_swaps_the_encoder_and_trains(recipe: str, tmp_path: Path) -> None:
    layers, swap, where, timm_args = SWAPS[recipe]
    args = ["fit", *(a for layer in layers for a in ("--config", str(RECIPES / layer))), swap]
    # One step, no validation; a mixture has no `num_images` to shrink.
    args += [a for a in small(tmp_path, steps=1) if not a.startswith("--data.train.")]
    args.append("--trainer.limit_val_batches=0")
    texts = [(RECIPES / layer).read_text() for layer in layers]
    if any("init_from" in text for text in texts):
        args.append("--model.init_from=null")
    if any("ModelCheckpoint" in text for text in texts):
        args.append(f"--trainer.callbacks.dirpath={tmp_path / 'checkpoints'}")
    cli = ZooCLI(args=args)

    encoder = cli.model.net.get_submodule(where)
    reference = timm.create_model(**timm_args, features_only=True, out_indices=(0, 1, 2, 3))
    shapes = {k: v.shape for k, v in encoder.body.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}  # the named model whole
    assert cli.trainer.global_step == 1
    losses = logged_losses(Path(cli.trainer.log_dir))
    assert losses and all(math.isfinite(v) for v in losses.values())


def test_toy_swin_is_swin_base_at_toy_sizes_draw_for_draw() -> None:
    """Naming the preset changes none of the tiny recipes' random weights, which their metrics depend on."""
    sizes = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=4)
    torch.manual_seed(0)
    overridden = timm.create_model("swin_base_patch4_window12_384", features_only=True, img_size=96, **sizes)
    next_draw = torch.rand(4)
    torch.manual_seed(0)
    preset = TimmEncoder(model_name="swin_toy_patch4_window4", img_size=96).body
    assert torch.equal(torch.rand(4), next_draw)
    expected = overridden.state_dict()
    assert list(preset.state_dict()) == list(expected)
    assert all(torch.equal(value, expected[name]) for name, value in preset.state_dict().items())
