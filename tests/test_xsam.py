"""X-SAM's parts: dual encoders, projectors, connector, <SEG>-add bridge, cosine head and visual-prompt sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import SamConfig, SamModel, SamVisionModel, SiglipConfig, SiglipModel, SiglipVisionModel

from zoo.bridges import SegAdd
from zoo.bridges.seg_add import PROMPT_SOURCES
from zoo.connectors import SamConnector
from zoo.data import SyntheticSegmentation, collate
from zoo.decoders import Mask2FormerDecoder
from zoo.encoders import MultiEncoder, SamViTArch, SamViTEncoder, SiglipArch, SiglipEncoder
from zoo.heads import CosineHead
from zoo.heads.cosine_head import log_odds
from zoo.language import CausalLM, LMArch
from zoo.optim import WarmupMultiStep
from zoo.projectors import MLPProjector, PixelShuffleProjector, PointSampler
from zoo.projectors.pixel_shuffle import shuffle
from zoo.types import BridgeOutput, Dims, FeatureSpec

SAM = SamViTArch(
    hidden_size=16, num_hidden_layers=3, num_attention_heads=2, mlp_dim=32, patch_size=8, image_size=64,
    window_size=4, global_attn_indexes=(1,),
)  # fmt: skip
SIGLIP = SiglipArch(
    hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=32, patch_size=8
)


def sam_encoder(layers: tuple[int, ...] = (1, 2, 3, -2)) -> SamViTEncoder:
    return SamViTEncoder(arch=SAM, layers=layers)


def siglip_encoder() -> SiglipEncoder:
    return SiglipEncoder(arch=SIGLIP)


def dual_encoder() -> MultiEncoder:
    return MultiEncoder({"siglip": siglip_encoder(), "sam": sam_encoder()})


def tiny_lm() -> CausalLM:
    arch = LMArch(model_type="phi3", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    return CausalLM(arch=arch, tokenizer="synthetic-words", extra_tokens=("<SEG>", "<p>", "</p>"))


def seg_add(encoder: MultiEncoder, decoder_dim: int = 24) -> SegAdd:
    dims = Dims(encoder.output_specs, decoder_dim=decoder_dim, num_queries=5)
    return SegAdd(dims, tiny_lm(), MLPProjector, "siglip_layer2", PixelShuffleProjector, "sam_layer2", PointSampler(16))


def batch_of(task: str, n: int = 2):
    ds = SyntheticSegmentation(num_images=4, image_size=64, tasks=[task])
    return collate([ds[i] for i in range(n)])


def test_sam_encoder_gives_the_hidden_states_of_the_chosen_layers() -> None:
    enc = sam_encoder((1, 3, -2))
    full = SamVisionModel(SamConfig(vision_config=vars(SAM) | {"global_attn_indexes": [1]}).vision_config)
    full.vision_encoder.load_state_dict(enc.body.state_dict(), strict=False)
    images = torch.rand(2, 3, 64, 64)
    expected = full(pixel_values=(images - enc.pixel_mean) / enc.pixel_std, output_hidden_states=True).hidden_states
    out = enc(images)
    assert list(out) == ["layer1", "layer3", "layer2"] == list(enc.output_specs)
    for name, index in (("layer1", 1), ("layer3", 3), ("layer2", 2)):
        assert out[name].shape == (2, 16, 8, 8) and enc.output_specs[name] == FeatureSpec(16, 8)
        torch.testing.assert_close(out[name], expected[index].permute(0, 3, 1, 2))
    assert len(sam_encoder((1,)).body.layers) == 1  # nothing past the deepest layer read is kept
    with pytest.raises(ValueError, match="64x64"):
        enc(torch.rand(1, 3, 32, 32))


def test_siglip_encoder_gives_the_tokens_of_the_selected_layer_as_a_grid() -> None:
    enc = siglip_encoder()
    full = SiglipVisionModel(SiglipConfig(vision_config=vars(SIGLIP)).vision_config)
    full.load_state_dict(enc.body.state_dict(), strict=False)
    images = torch.rand(2, 3, 64, 64)  # resized to the tower's own 32 px view
    view = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    expected = full(pixel_values=(view - 0.5) / 0.5, output_hidden_states=True).hidden_states[-2]
    out = enc(images)["layer2"]
    assert out.shape == (2, 16, 4, 4)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), expected)


def test_encoders_load_local_full_checkpoints(tmp_path: Path) -> None:
    sam = SamModel(SamConfig(vision_config=vars(SAM) | {"global_attn_indexes": [1]}))
    sam.save_pretrained(tmp_path / "sam")
    loaded = SamViTEncoder(pretrained=str(tmp_path / "sam"), layers=(2,))
    assert torch.equal(loaded.body.pos_embed, sam.vision_encoder.pos_embed)
    siglip = SiglipModel(
        SiglipConfig(
            vision_config=vars(SIGLIP),
            text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
        )
    )
    siglip.save_pretrained(tmp_path / "siglip")
    loaded = SiglipEncoder(pretrained=str(tmp_path / "siglip"))
    assert torch.equal(
        loaded.body.embeddings.patch_embedding.weight, siglip.vision_model.embeddings.patch_embedding.weight
    )
    with pytest.raises(FileNotFoundError, match="never downloads"):
        SamViTEncoder(pretrained=str(tmp_path / "missing"))


def test_multi_encoder_prefixes_maps_and_runs_only_the_encoders_read() -> None:
    enc = dual_encoder()
    assert list(enc.output_specs) == ["siglip_layer2", "sam_layer1", "sam_layer2", "sam_layer3"]
    calls = []
    enc.siglip.register_forward_hook(lambda *_: calls.append("siglip"))
    enc.sam.register_forward_hook(lambda *_: calls.append("sam"))
    features = enc(torch.rand(1, 3, 64, 64))
    assert features["sam_layer3"].shape == (1, 16, 8, 8) and features["sam_layer1"].shape == (1, 16, 8, 8)
    assert calls == ["sam"]  # SigLIP never ran: nothing read its map
    assert set(features) == set(enc.output_specs)
    with pytest.raises(ValueError, match="plain word"):
        MultiEncoder({"sam_vit": sam_encoder()})


def test_pixel_shuffle_folds_and_unfolds_and_the_projector_sizes_itself() -> None:
    x = torch.rand(2, 8, 6, 6)
    assert shuffle(x, 0.5).shape == (2, 32, 3, 3)
    torch.testing.assert_close(shuffle(shuffle(x, 0.5), 2), x)
    proj = PixelShuffleProjector(FeatureSpec(8, 16), hidden_size=20)
    assert proj(x).shape == (2, 20, 3, 3) and proj.out_stride == 32
    with pytest.raises(ValueError, match="cannot be folded"):
        shuffle(torch.rand(1, 4, 5, 5), 0.5)


def test_connector_builds_x_sams_pyramid_from_sam_vit_l_layers() -> None:
    specs = {f"sam_layer{i}": FeatureSpec(1024, 16) for i in (12, 18, 24)}
    connector = SamConnector(specs, layers=list(specs), dim=8)
    assert connector.output_specs == {
        "res3": FeatureSpec(512, 8),
        "res4": FeatureSpec(1024, 16),
        "res5": FeatureSpec(2048, 32),
    }
    out = connector({name: torch.rand(1, 1024, 4, 4) for name in specs})
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res3": (1, 512, 8, 8),
        "res4": (1, 1024, 4, 4),
        "res5": (1, 2048, 2, 2),
    }
    with pytest.raises(ValueError, match="not encoder outputs"):
        SamConnector(specs, layers=["sam_layer6", "sam_layer12", "sam_layer18"])


def test_cosine_head_scores_cosine_times_temperature_with_a_background_class() -> None:
    head = CosineHead(4, temperature=0.5)
    queries = torch.tensor([[[1.0, 0, 0, 0], [0, 2.0, 0, 0]]])
    conditions = torch.tensor([[[3.0, 0, 0, 0], [0, 0, 1.0, 0]]])
    with torch.no_grad():
        head.background.copy_(torch.tensor([[0, 1.0, 0, 0]]))
    bridge = BridgeOutput(conditions=conditions, condition_mask=torch.tensor([[True, False]]))
    logits = head(queries, bridge, "panoptic")
    # query 0 is parallel to condition 0 (cos 1), query 1 to the background; condition 1 is padding.
    assert logits.shape == (1, 2, 3)
    torch.testing.assert_close(logits[0, :, [0, 2]], torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    assert (logits[0, :, 1] < -1e3).all()
    referring = head(queries, bridge, "referring")  # log-odds of the same softmax, padded columns very negative
    torch.testing.assert_close(referring[..., 0].sigmoid(), logits.softmax(-1)[..., 0])
    assert referring.shape == (1, 2, 2)


def test_log_odds_matches_the_softmax_probability() -> None:
    logits = torch.randn(3, 5, 4)
    torch.testing.assert_close(log_odds(logits).sigmoid(), logits.softmax(-1)[..., :3])


def test_point_sampler_max_pools_inside_the_prompt_of_its_source_image() -> None:
    grids = torch.zeros(2, 3, 4, 4)
    grids[0, :, :2, :2] = torch.tensor([1.0, 2.0, 3.0])[:, None, None]  # top-left 2x2 cells of image 0
    grids[1, :, 2:, 2:] = 5.0  # bottom-right 2x2 cells of image 1
    prompt = torch.zeros(2, 16, 16, dtype=torch.bool)
    prompt[0, 2:6, 2:6] = True  # pixels whose bilinear samples stay inside the top-left block
    prompt[1, 10:14, 10:14] = True  # ... inside the bottom-right block
    sampler = PointSampler(num_points=8).eval()
    tokens = sampler(grids, prompt, torch.tensor([0, 0]))
    torch.testing.assert_close(tokens, torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    from_other = sampler(grids, prompt, torch.tensor([0, 1]))  # prompt 1 drawn on image 1
    torch.testing.assert_close(from_other[1], torch.full((3,), 5.0))
    noisy = torch.randn(1, 3, 4, 4)
    wide = torch.ones(1, 16, 16, dtype=torch.bool)
    mean = PointSampler(num_points=64, pool="mean").eval()(noisy, wide, torch.tensor([0]))
    assert (sampler(noisy, wide, torch.tensor([0])) > mean).all()
    with pytest.raises(ValueError, match="empty mask"):
        sampler(grids, torch.zeros(1, 16, 16, dtype=torch.bool), torch.tensor([0]))


def test_seg_add_conditions_queries_with_the_seg_state_and_pools_p_spans() -> None:
    encoder = dual_encoder()
    bridge = seg_add(encoder).eval()
    for task, count in (("panoptic", 7), ("referring", 1), ("interactive", None)):
        batch = batch_of(task)
        out = bridge(batch, encoder(batch.images))
        expected = count if count is not None else max(len(p) for p in batch.prompts)
        assert out.query_offset.shape == (2, 1, 24) and out.conditions.shape == (2, expected, 24)
        assert out.lm_loss is not None and out.lm_loss.ndim == 0  # the answer '<SEG> </s>' is supervised
    caption = bridge(batch_of("caption"), encoder(batch_of("caption").images))
    assert caption.query_offset is None and caption.lm_loss.ndim == 0

    # A visual prompt taken from another image of the batch is pooled from that image's tokens.
    batch = batch_of("interactive")
    features = encoder(batch.images)
    own = bridge(batch, features).conditions[0, 0]
    batch.meta[0][PROMPT_SOURCES] = [1] * len(batch.prompts[0])
    other = bridge(batch, features).conditions[0, 0]
    assert not torch.allclose(own, other)


def test_decoder_adds_the_offset_to_its_learned_queries() -> None:
    decoder = Mask2FormerDecoder(8, 8, hidden_dim=8, num_queries=3, num_layers=1, num_heads=2, ffn_dim=16)
    offset = torch.randn(2, 1, 8)
    content = decoder.initial_content(None, 2, offset)
    torch.testing.assert_close(content, decoder.query_feat.weight[:, None] + offset.transpose(0, 1))
    with pytest.raises(ValueError, match="not both"):
        decoder.initial_content(torch.zeros(2, 3, 8), 2, offset)


def test_seg_add_refuses_a_tokenizer_without_its_tokens() -> None:
    encoder = dual_encoder()
    dims = Dims(encoder.output_specs, decoder_dim=8, num_queries=2)
    lm = CausalLM(arch=LMArch(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
                  tokenizer="synthetic-words")  # fmt: skip
    with pytest.raises(ValueError, match="extra_tokens"):
        SegAdd(dims, lm, MLPProjector, "siglip_layer2", prompt_grid="image")


# test_components requires a build-and-forward check per registered component; these tests are those checks.
XSAM_CHECKS = {
    "SamViTEncoder": test_sam_encoder_gives_the_hidden_states_of_the_chosen_layers,
    "SiglipEncoder": test_siglip_encoder_gives_the_tokens_of_the_selected_layer_as_a_grid,
    "MultiEncoder": test_multi_encoder_prefixes_maps_and_runs_only_the_encoders_read,
    "PixelShuffleProjector": test_pixel_shuffle_folds_and_unfolds_and_the_projector_sizes_itself,
    "SamConnector": test_connector_builds_x_sams_pyramid_from_sam_vit_l_layers,
    "CosineHead": test_cosine_head_scores_cosine_times_temperature_with_a_background_class,
    "PointSampler": test_point_sampler_max_pools_inside_the_prompt_of_its_source_image,
    "SegAdd": test_seg_add_conditions_queries_with_the_seg_state_and_pools_p_spans,
}


def test_warmup_multistep_decays_at_fractions_of_training() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupMultiStep(optimizer, warmup_ratio=0.1, milestones=(0.5, 0.75), gamma=0.1)
    schedule.set_total_steps(100)
    assert [schedule._factor(s) for s in (0, 9, 10, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    )
    with pytest.raises(ValueError, match="fractions"):
        WarmupMultiStep(optimizer, milestones=(24, 30))
