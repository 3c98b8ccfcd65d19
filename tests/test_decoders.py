"""Behaviour of the deformable pixel decoder and the Mask2Former masked-attention decoder, on tiny sizes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerTransformerModule,
)

from zoo.decoders import Mask2FormerDecoder, MSDeformAttnPixelDecoder
from zoo.registry import components, describe
from zoo.types import FeatureSpec, PixelFeatures

HIDDEN = 32
SWIN_SPECS = {
    "res2": FeatureSpec(16, 4),
    "res3": FeatureSpec(32, 8),
    "res4": FeatureSpec(64, 16),
    "res5": FeatureSpec(128, 32),
}
XSAM_SPECS = {"level0": FeatureSpec(24, 8), "level1": FeatureSpec(40, 16), "level2": FeatureSpec(48, 32)}


def make_features(specs: dict[str, FeatureSpec], batch: int = 2, size: int = 64) -> dict[str, Tensor]:
    return {name: torch.randn(batch, s.channels, size // s.stride, size // s.stride) for name, s in specs.items()}


def pixel_decoder(specs: dict[str, FeatureSpec], mask_dim: int = HIDDEN) -> MSDeformAttnPixelDecoder:
    return MSDeformAttnPixelDecoder(specs, hidden_dim=HIDDEN, mask_dim=mask_dim, num_layers=1, ffn_dim=64)


def mask_decoder(in_dim: int = HIDDEN, mask_dim: int = HIDDEN, **kwargs) -> Mask2FormerDecoder:
    options = dict(hidden_dim=HIDDEN, num_queries=4, num_layers=2, ffn_dim=64) | kwargs
    return Mask2FormerDecoder(in_dim, mask_dim, **options)


def pixel_features(batch: int = 2, in_dim: int = HIDDEN, mask_dim: int = HIDDEN) -> PixelFeatures:
    """Hand-made features of a 64² image: strides 32/16/8 (coarse to fine), mask features at stride 4."""
    return PixelFeatures(
        mask_features=torch.randn(batch, mask_dim, 16, 16),
        multi_scale=[torch.randn(batch, in_dim, s, s) for s in (2, 4, 8)],
    )


@pytest.fixture(autouse=True)
def seeded_single_thread() -> Iterator[None]:
    """Seeded; one intra-op thread, since these tiny ops oversubscribe a shared 2-core machine otherwise."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_components_are_registered_with_descriptions() -> None:
    assert describe(components("pixel_decoder")["pixel_decoder"]["MSDeformAttnPixelDecoder"])
    assert describe(components("mask_decoder")["mask_decoder"]["Mask2FormerDecoder"])


def test_swin_pyramid_gives_stride4_mask_features_and_coarse_to_fine_scales() -> None:
    decoder = pixel_decoder(SWIN_SPECS, mask_dim=16)
    out = decoder(make_features(SWIN_SPECS))
    assert decoder.mask_stride == 4 and decoder.num_levels == 3
    assert out.mask_features.shape == (2, 16, 64 // decoder.mask_stride, 64 // decoder.mask_stride)
    assert [tuple(x.shape[1:]) for x in out.multi_scale] == [(HIDDEN, 2, 2), (HIDDEN, 4, 4), (HIDDEN, 8, 8)]
    assert decoder.fpn_inputs == ["res2"]


def test_three_level_pyramid_keeps_mask_features_at_its_finest_stride() -> None:
    decoder = pixel_decoder(XSAM_SPECS)
    out = decoder(make_features(XSAM_SPECS))
    assert decoder.mask_stride == 8
    assert out.mask_features.shape == (2, HIDDEN, 8, 8)
    assert [x.shape[-1] for x in out.multi_scale] == [2, 4, 8]
    assert hasattr(decoder, "adapter_1") and not hasattr(decoder, "adapter_2")  # X-SAM's lateral on stride 8


def test_num_levels_and_common_stride_choose_the_scales() -> None:
    options = dict(hidden_dim=HIDDEN, num_layers=1, num_levels=2, common_stride=8)
    decoder = MSDeformAttnPixelDecoder(SWIN_SPECS, **options)
    out = decoder(make_features(SWIN_SPECS))
    assert [x.shape[-1] for x in out.multi_scale] == [2, 4]
    assert decoder.fpn_inputs == ["res3"] and decoder.mask_stride == 8
    assert out.mask_features.shape[-1] == 8


def test_missing_input_feature_is_named() -> None:
    features = make_features(SWIN_SPECS)
    del features["res2"]
    with pytest.raises(KeyError, match="res2"):
        pixel_decoder(SWIN_SPECS)(features)


def test_pixel_decoder_is_differentiable_and_runs_under_bf16_autocast() -> None:
    decoder = pixel_decoder(SWIN_SPECS)
    features = {k: v.requires_grad_() for k, v in make_features(SWIN_SPECS).items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = decoder(features)
        masks = mask_decoder()(out)[-1].masks
        loss = sum(x.float().square().mean() for x in [out.mask_features, *out.multi_scale])
    assert out.mask_features.dtype == masks.dtype == torch.bfloat16
    assert all(torch.isfinite(x).all() for x in [out.mask_features, *out.multi_scale, masks])
    loss.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features.values())
    offsets = decoder.encoder.layers[0].self_attn.sampling_offsets.weight  # gradients reach the sampling
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0


@pytest.mark.parametrize("specs", [SWIN_SPECS, XSAM_SPECS], ids=["swin", "xsam"])
def test_pixel_decoder_matches_transformers_with_the_same_weights(specs: dict[str, FeatureSpec]) -> None:
    """At transformers' fixed 3 levels / 4 points: same keys (X-SAM checkpoints load as is), same outputs."""
    ours = MSDeformAttnPixelDecoder(specs, hidden_dim=HIDDEN, mask_dim=16, num_layers=2, ffn_dim=64)
    strides = [s.stride for s in specs.values()]
    config = Mask2FormerConfig(
        feature_size=HIDDEN,
        mask_feature_size=16,
        encoder_layers=2,
        encoder_feedforward_dim=64,
        feature_strides=strides,
    )
    reference = Mask2FormerPixelDecoder(config, [s.channels for s in specs.values()])
    reference.load_state_dict(ours.state_dict(), strict=True)
    features = make_features(specs)
    with torch.no_grad():
        out, expected = ours(features), reference(list(features.values()))
    torch.testing.assert_close(out.mask_features, expected.mask_features)
    for x, y in zip(out.multi_scale, expected.multi_scale_features, strict=True):
        torch.testing.assert_close(x, y)


def test_mask_decoder_matches_transformers_with_the_same_weights() -> None:
    ours = mask_decoder(in_dim=24, mask_dim=16)
    config = Mask2FormerConfig(
        hidden_dim=HIDDEN, mask_feature_size=16, num_queries=4, decoder_layers=3, dim_feedforward=64
    )
    reference = Mask2FormerTransformerModule(24, config)
    state = {  # X-SAM's checkpoints use transformers' names for the two query tables
        k.replace("query_embed.", "queries_embedder.").replace("query_feat.", "queries_features."): v
        for k, v in ours.state_dict().items()
    }
    if isinstance(reference.input_projections, list):  # transformers <= 5.17 leaves them unregistered
        reference.input_projections = nn.ModuleList(reference.input_projections)
    reference.load_state_dict(state, strict=True)
    pixel = pixel_features(in_dim=24, mask_dim=16)
    with torch.no_grad():
        outs, expected = ours(pixel), reference(pixel.multi_scale, pixel.mask_features)
    for out, masks, queries in zip(
        outs, expected.masks_queries_logits, expected.intermediate_hidden_states, strict=True
    ):
        torch.testing.assert_close(out.masks, masks)
        torch.testing.assert_close(out.queries, queries.transpose(0, 1))


@pytest.mark.parametrize("pre_norm", [False, True])
def test_decoder_returns_deep_supervision_at_mask_feature_resolution(pre_norm: bool) -> None:
    decoder = mask_decoder(in_dim=24, mask_dim=16, num_layers=3, pre_norm=pre_norm)  # with input projections
    outs = decoder(pixel_features(batch=3, in_dim=24, mask_dim=16))
    assert len(outs) == decoder.num_layers + 1 == 4
    for out in outs:
        assert out.queries.shape == (3, decoder.num_queries, decoder.hidden_dim)
        assert out.masks.shape == (3, decoder.num_queries, 16, 16)


def test_input_projections_only_when_widths_differ_or_enforced() -> None:
    assert isinstance(mask_decoder(in_dim=24).input_projections[0], nn.Conv2d)
    assert isinstance(mask_decoder().input_projections[0], nn.Identity)
    assert isinstance(mask_decoder(enforce_input_projection=True).input_projections[0], nn.Conv2d)


def test_decoder_rejects_wrong_scales() -> None:
    pixel = pixel_features()
    with pytest.raises(ValueError, match="3 maps"):
        mask_decoder()(PixelFeatures(pixel.mask_features, pixel.multi_scale[:2]))


def test_query_content_replaces_learned_queries_and_receives_gradients() -> None:
    decoder, pixel = mask_decoder(), pixel_features()
    content = torch.randn(2, decoder.num_queries, HIDDEN, requires_grad=True)
    learned = decoder(pixel)
    given = decoder(pixel, content)
    assert not torch.allclose(learned[-1].masks, given[-1].masks)
    assert not torch.allclose(learned[0].queries, given[0].queries)  # already the initial prediction differs
    sum(out.masks.mean() for out in given).backward()
    assert content.grad is not None and content.grad.abs().sum() > 0
    assert decoder.query_feat.weight.grad is None  # the learned content is not used
    assert decoder.query_embed.weight.grad is not None  # the positional queries still are


def test_query_content_with_wrong_query_count_raises() -> None:
    decoder = mask_decoder()
    with pytest.raises(ValueError, match=r"num_queries=4"):
        decoder(pixel_features(), torch.randn(2, 5, HIDDEN))


def fix_predicted_masks(decoder: Mask2FormerDecoder, pixel: PixelFeatures, logits: Tensor) -> None:
    """Make every query predict `logits` [h, w]: all mask embeddings e0, `logits` on mask channel 0."""
    last = [m for m in decoder.mask_embed.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = 1.0
    pixel.mask_features.zero_()
    pixel.mask_features[:, 0] = logits


def layer1_output(decoder: Mask2FormerDecoder, pixel: PixelFeatures) -> Tensor:
    with torch.no_grad():
        return decoder(pixel)[1].queries


def test_cross_attention_ignores_features_outside_the_predicted_masks() -> None:
    decoder, pixel = mask_decoder(), pixel_features()
    left_half = torch.full((16, 16), -10.0)
    left_half[:, :8] = 10.0
    fix_predicted_masks(decoder, pixel, left_half)  # at layer 1's (coarsest, 2x2) scale: column 0 only
    reference = layer1_output(decoder, pixel)

    outside = PixelFeatures(pixel.mask_features, [x.clone() for x in pixel.multi_scale])
    outside.multi_scale[0][..., 1:] += 5.0 * torch.randn_like(outside.multi_scale[0][..., 1:])
    torch.testing.assert_close(layer1_output(decoder, outside), reference)

    inside = PixelFeatures(pixel.mask_features, [x.clone() for x in pixel.multi_scale])
    inside.multi_scale[0][..., :1] += 5.0 * torch.randn_like(inside.multi_scale[0][..., :1])
    assert not torch.allclose(layer1_output(decoder, inside), reference, atol=1e-4)


def test_query_with_empty_mask_attends_everywhere() -> None:
    decoder, pixel = mask_decoder(), pixel_features()
    fix_predicted_masks(decoder, pixel, torch.full((16, 16), -10.0))
    reference = layer1_output(decoder, pixel)
    assert torch.isfinite(reference).all()
    perturbed = PixelFeatures(pixel.mask_features, [x.clone() for x in pixel.multi_scale])
    perturbed.multi_scale[0][..., 1:] += 5.0 * torch.randn_like(perturbed.multi_scale[0][..., 1:])
    assert not torch.allclose(layer1_output(decoder, perturbed), reference, atol=1e-4)


def mask_loss(logits: Tensor, target: Tensor) -> Tensor:
    probs = logits.sigmoid().flatten(1)
    dice = 1 - (2 * (probs * target.flatten(1)).sum(-1) + 1) / (probs.sum(-1) + target.flatten(1).sum(-1) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + dice.mean()


def test_pixel_and_mask_decoder_overfit_a_fixed_target() -> None:
    pixel_dec, mask_dec = pixel_decoder(SWIN_SPECS), mask_decoder()
    features = make_features(SWIN_SPECS, batch=2)
    target = torch.zeros(2, mask_dec.num_queries, 16, 16)
    for q in range(mask_dec.num_queries):  # a different square per query
        target[:, q, 4 * q : 4 * q + 6, 2 + 2 * q : 10 + 2 * q] = 1.0
    params = list(pixel_dec.parameters()) + list(mask_dec.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(40):
        outs = mask_dec(pixel_dec(features))
        loss = sum(mask_loss(out.masks, target) for out in outs) / len(outs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
