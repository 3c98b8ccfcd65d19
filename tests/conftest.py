"""Shared tiny builders: every test works on toy sizes with random weights, on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zoo.types import FeatureSpec

ROOT = Path(__file__).resolve().parents[1]
TINY_RECIPE = ROOT / "recipes" / "psalm" / "tiny.yaml"


def tiny_encoder_args() -> dict:
    return dict(model_name="swin_toy_patch4_window4", img_size=64)


def swin_like_specs() -> dict[str, FeatureSpec]:
    return {f"res{i + 2}": FeatureSpec(16 * 2**i, 4 * 2**i) for i in range(4)}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
