"""Every registered component builds at toy size and its forward matches what it declares."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import swin_like_specs, tiny_encoder_args
from tests.test_data_roundtrip import DATA_CHECKS
from tests.test_seem import SEEM_CHECKS
from tests.test_xsam import XSAM_CHECKS
from zoo import registry
from zoo.bridges import LearnedQueries, LLMQueries
from zoo.data import SyntheticSegmentation, collate
from zoo.decoders import Mask2FormerDecoder, MSDeformAttnPixelDecoder
from zoo.encoders import TimmEncoder
from zoo.heads import ConditionHead, LinearClassHead
from zoo.language import CausalLM, LMArch
from zoo.losses import SetCriterion
from zoo.projectors import ConvProjector, MLPProjector
from zoo.types import BridgeOutput, Dims, FeatureSpec, PixelFeatures, Prediction

SPECS = swin_like_specs()


def tiny_lm() -> CausalLM:
    return CausalLM(
        arch=LMArch(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        tokenizer="synthetic-words",
    )


def batch_of(task: str, n: int = 2):
    ds = SyntheticSegmentation(num_images=4, image_size=64, tasks=[task])
    return collate([ds[i] for i in range(n)])


def check_encoder() -> None:
    enc = TimmEncoder(**tiny_encoder_args())
    out = enc(torch.rand(2, 3, 64, 64))
    assert list(out) == list(enc.output_specs)
    for name, spec in enc.output_specs.items():
        assert out[name].shape == (2, spec.channels, 64 // spec.stride, 64 // spec.stride)


def check_projector(cls: type) -> None:
    spec = FeatureSpec(64, 16)
    proj = cls(spec, 48)
    out = proj(torch.rand(2, 64, 4, 4))
    assert out.shape == (2, 48, 64 // proj.out_stride, 64 // proj.out_stride)


def check_pixel_decoder() -> None:
    dec = MSDeformAttnPixelDecoder(SPECS, hidden_dim=32, mask_dim=24, num_layers=1, num_heads=4, ffn_dim=64)
    feats = {n: torch.rand(2, s.channels, 64 // s.stride, 64 // s.stride) for n, s in SPECS.items()}
    out = dec(feats)
    assert out.mask_features.shape == (2, 24, 64 // dec.mask_stride, 64 // dec.mask_stride)
    assert len(out.multi_scale) == dec.num_levels
    assert all(m.shape[1] == dec.hidden_dim for m in out.multi_scale)


def check_mask_decoder() -> None:
    dec = Mask2FormerDecoder(32, 24, hidden_dim=32, num_queries=5, num_layers=2, num_heads=4, ffn_dim=64)
    pixel = PixelFeatures(torch.rand(2, 24, 16, 16), [torch.rand(2, 32, s, s) for s in (2, 4, 8)])
    layers = dec(pixel)
    assert len(layers) == dec.num_layers + 1
    assert layers[-1].queries.shape == (2, 5, dec.hidden_dim) and layers[-1].masks.shape == (2, 5, 16, 16)


def check_bridges(cls: type) -> None:
    dims = Dims(SPECS, decoder_dim=32, num_queries=5)
    feats = {n: torch.rand(2, s.channels, 64 // s.stride, 64 // s.stride) for n, s in SPECS.items()}
    if cls is LearnedQueries:
        out = cls(dims)(batch_of("panoptic"), feats)
        assert out.query_content is None and out.conditions is None
        return
    bridge = cls(dims, tiny_lm(), ConvProjector)
    for task, k in (("panoptic", 8), ("referring", 1), ("interactive", None)):
        batch = batch_of(task)
        out = bridge(batch, feats)
        assert out.query_content.shape == (2, 5, 32)
        expected = k if k is not None else max(len(p) for p in batch.prompts)
        assert out.conditions.shape == (2, expected, 32)
    caption = bridge(batch_of("caption"), feats)
    assert caption.lm_loss is not None and caption.lm_loss.ndim == 0


def check_heads(cls: type) -> None:
    queries = torch.rand(2, 5, 32)
    if cls is LinearClassHead:
        assert cls(32, num_classes=7)(queries, BridgeOutput(), "panoptic").shape == (2, 5, 8)
        return
    cond = BridgeOutput(conditions=torch.rand(2, 3, 32), condition_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]).bool())
    logits = cls(32)(queries, cond, "referring")
    assert logits.shape == (2, 5, 3) and (logits[1, :, 2] < -1e3).all()


def check_language_model() -> None:
    lm = tiny_lm()
    ids = torch.tensor([lm.token_ids("red circle")])
    hidden, loss = lm(lm.embed(ids), torch.ones_like(ids), labels=ids)
    assert hidden.shape == (1, ids.shape[1], lm.hidden_size) and loss.ndim == 0
    assert lm.tokenizer.convert_tokens_to_ids("[SEG]") != lm.tokenizer.unk_token_id
    # Memoised ids equal the tokenizer's, and a caller extending its list leaves the memo intact.
    direct = lm.tokenizer("red circle", add_special_tokens=False)["input_ids"]
    first = lm.token_ids("red circle")
    first.append(0)
    assert lm.token_ids("red circle") == direct


def check_criterion() -> None:
    crit = SetCriterion(num_points=64)
    pred = [Prediction(torch.randn(1, 4, 3), torch.randn(1, 4, 8, 8))]
    losses = crit(pred, [torch.rand(2, 32, 32) > 0.5], [torch.tensor([0, 1])], "panoptic")
    assert set(losses) == {"loss_class", "loss_mask", "loss_dice"}


def check_dataset() -> None:
    ds = SyntheticSegmentation(num_images=2, image_size=64)
    sample = ds[0]
    assert sample.image.shape == (3, 64, 64) and len(ds.sample_tasks) == len(ds)


CHECKS = {
    "TimmEncoder": check_encoder,
    "ConvProjector": lambda: check_projector(ConvProjector),
    "MLPProjector": lambda: check_projector(MLPProjector),
    "MSDeformAttnPixelDecoder": check_pixel_decoder,
    "Mask2FormerDecoder": check_mask_decoder,
    "LearnedQueries": lambda: check_bridges(LearnedQueries),
    "LLMQueries": lambda: check_bridges(LLMQueries),
    "ConditionHead": lambda: check_heads(ConditionHead),
    "LinearClassHead": lambda: check_heads(LinearClassHead),
    "CausalLM": check_language_model,
    "SetCriterion": check_criterion,
    "SyntheticSegmentation": check_dataset,
}
CHECKS.update(XSAM_CHECKS)
CHECKS.update(DATA_CHECKS)
CHECKS.update(SEEM_CHECKS)


def test_every_registered_component_has_a_check() -> None:
    registered = {name for table in registry.components().values() for name in table}
    assert registered == set(CHECKS), "add a tiny build+forward check for each new component"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_component_builds_and_matches_its_declared_output(name: str) -> None:
    CHECKS[name]()
