"""SEEM's parts: FocalNet/DaViT encoders, the FPN pixel decoder, the attention graph, the SEEM decoder, the text
encoder and similarity head, the per-prompt criterion, multi-round interaction."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch
from timm.models import davit, focalnet

from tests.loss_helpers import per_image_mask_cost
from zoo.bridges import TextPrompts
from zoo.data import SyntheticSegmentation
from zoo.data.schema import collate
from zoo.decoders import AttentionGraph, SeemDecoder, TransformerEncoderPixelDecoder
from zoo.decoders.seem_prompts import previous_blocked
from zoo.encoders import DaViTEncoder, FocalNetEncoder
from zoo.heads import TextSimilarityHead
from zoo.interaction import MultiRoundTraining, segment_by_example
from zoo.language import TextArch, TextEncoder
from zoo.losses import HungarianMatcher, SeemCriterion, SetCriterion
from zoo.metrics.clicks import next_click
from zoo.metrics.conditions import condition_masks, prompt_targets
from zoo.model import SegmentationModel
from zoo.types import MASKED, BridgeOutput, FeatureSpec, PixelFeatures, Prediction, PromptInputs
from zoo.weights import MissingWeightsError

TEXT = TextArch(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
TEMPLATES = ("{}", "a {}", "the {}")


def tiny_seem(**decoder: object) -> SegmentationModel:
    args = dict(hidden_dim=32, num_queries=8, num_layers=3, num_heads=4, ffn_dim=64, num_memories=2, prompt_points=16)
    return SegmentationModel(
        encoder=FocalNetEncoder(embed_dim=16, depths=(1, 1, 1, 1), drop_path_rate=0.0),
        pixel_decoder=partial(TransformerEncoderPixelDecoder, hidden_dim=32, mask_dim=32, num_layers=1, num_heads=4),
        mask_decoder=partial(SeemDecoder, **{**args, **decoder}),
        head=TextSimilarityHead,
        bridge=partial(
            TextPrompts,
            text_encoder=partial(TextEncoder, arch=TEXT, tokenizer="synthetic-words", templates=TEMPLATES),
        ),
    )


def task_batch(task: str, count: int = 2, size: int = 64):
    data = SyntheticSegmentation(num_images=8, image_size=size)
    return collate([data[i] for i, t in enumerate(data.sample_tasks) if t == task][:count])


def pixel_features(batch: int = 2, dim: int = 32) -> PixelFeatures:
    levels = [torch.randn(batch, dim, s, s) for s in (2, 4, 8)]
    return PixelFeatures(mask_features=torch.randn(batch, dim, 16, 16), multi_scale=levels)


# ------------------------------------------------------------------------------------------------ encoders
def test_focalnet_and_davit_build_at_tiny_size() -> None:
    focal = FocalNetEncoder(embed_dim=16, depths=(1, 1, 1, 1))
    dav = DaViTEncoder(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=3)
    for encoder in (focal, dav):
        maps = encoder(torch.rand(1, 3, 64, 64))
        assert list(maps) == ["res2", "res3", "res4", "res5"]
        for name, spec in encoder.output_specs.items():
            assert maps[name].shape[1:] == (spec.channels, 64 // spec.stride, 64 // spec.stride)
    assert [s.channels for s in focal.output_specs.values()] == [16, 32, 64, 128]


@pytest.mark.parametrize("family", ["focalnet", "davit"])
def test_encoder_loads_a_local_timm_checkpoint(family: str, tmp_path: Path) -> None:
    if family == "focalnet":
        arch = dict(embed_dim=16, depths=(1, 1, 1, 1))
        full = focalnet.FocalNet(**arch, focal_levels=(3, 3, 3, 3), drop_path_rate=0.0)
        build = partial(FocalNetEncoder, **arch, drop_path_rate=0.0)
    else:
        arch = dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=3)
        full = davit.DaVit(**arch)
        build = partial(DaViTEncoder, **arch)
    torch.save(full.state_dict(), tmp_path / "weights.pth")
    encoder = build(weights=str(tmp_path / "weights.pth")).eval()
    images = torch.rand(1, 3, 64, 64)
    expected = full.eval().forward_intermediates(
        (images - encoder.pixel_mean) / encoder.pixel_std, intermediates_only=True
    )
    for got, want in zip(encoder(images).values(), expected, strict=True):
        torch.testing.assert_close(got, want)
    with pytest.raises(MissingWeightsError, match="weights"):
        build(weights=str(tmp_path / "missing.pth"))


def test_fpn_pixel_decoder_scales() -> None:
    specs = {f"res{i + 2}": FeatureSpec(8 * 2**i, 4 * 2**i) for i in range(4)}
    decoder = TransformerEncoderPixelDecoder(specs, hidden_dim=16, mask_dim=24, num_layers=2, num_heads=2, ffn_dim=32)
    features = {
        name: torch.randn(2, spec.channels, 64 // spec.stride, 64 // spec.stride) for name, spec in specs.items()
    }
    out = decoder(features)
    assert [tuple(x.shape) for x in out.multi_scale] == [(2, 16, 2, 2), (2, 16, 4, 4), (2, 16, 8, 8)]
    assert out.mask_features.shape == (2, 24, 16, 16) and decoder.mask_stride == 4


# ------------------------------------------------------------------------------------------- attention graph
def test_attention_graph_activates_what_the_output_reads() -> None:
    graph = AttentionGraph()
    everything = {"queries_object", "queries_grounding", "tokens_grounding"} | {
        "queries_spatial",
        "tokens_spatial",
        "memories_spatial",
    }
    assert graph.active("panoptic", everything) == ["queries_object"]
    assert graph.active("referring", everything) == ["queries_grounding", "tokens_grounding"]
    assert graph.active("interactive", everything) == ["queries_spatial", "tokens_spatial", "memories_spatial"]
    with pytest.raises(ValueError, match="unknown groups"):
        AttentionGraph(cross_attention=["queries_objects"])


def test_self_attention_mask_keeps_prompts_apart() -> None:
    groups = ["queries_spatial", "tokens_spatial"]
    group_ids = torch.tensor([0, 0, 1, 1, 1])
    owners = torch.tensor([0, 1, 0, 1, 1])
    valid = torch.tensor([[True, True, True, True, False]])
    blocked = AttentionGraph().self_attention_mask(groups, group_ids, owners, valid)[0]
    # query of object 0 reads itself and its own token; query of object 1 reads its own valid token only
    assert (~blocked[0]).nonzero().flatten().tolist() == [0, 2]
    assert (~blocked[1]).nonzero().flatten().tolist() == [1, 3]
    assert (~blocked[2]).nonzero().flatten().tolist() == [2]  # tokens read only tokens of their object


# --------------------------------------------------------------------------------------------------- decoder
def test_decoder_shapes_and_prompt_scores() -> None:
    decoder = SeemDecoder(32, 32, hidden_dim=32, num_queries=8, num_layers=3, num_heads=4, ffn_dim=64).eval()
    pixel = pixel_features()
    prompts = PromptInputs(task="interactive", positive=[torch.rand(3, 64, 64) > 0.5, torch.rand(1, 64, 64) > 0.5])
    layers = decoder(pixel, prompts=prompts)
    assert len(layers) == 4
    last = layers[-1]
    assert last.masks.shape == (2, 9, 16, 16) and last.logits.shape == (2, 9, 3)
    own = torch.arange(3).repeat_interleave(3)[:, None] == torch.arange(3)[None]
    assert (last.logits[:, ~own] == MASKED).all() and (last.logits[:, own] > MASKED).all()
    panoptic = decoder(pixel)
    assert panoptic[-1].masks.shape == (2, 8, 16, 16) and panoptic[-1].logits is None


def test_prompts_do_not_leak_between_objects() -> None:
    """With SEEM's per-object masks, object 0's predictions ignore what object 1's prompt is."""
    decoder = SeemDecoder(32, 32, hidden_dim=32, num_queries=8, num_layers=3, num_heads=4, ffn_dim=64).eval()
    pixel = pixel_features(batch=1)
    first = torch.zeros(64, 64, dtype=torch.bool)
    first[10:20, 10:20] = True
    second, third = torch.zeros_like(first), torch.zeros_like(first)
    second[40:60, 40:60] = True
    third[5:8, 50:52] = True
    a = decoder(pixel, prompts=PromptInputs(task="interactive", positive=[torch.stack([first, second])]))[-1]
    b = decoder(pixel, prompts=PromptInputs(task="interactive", positive=[torch.stack([first, third])]))[-1]
    torch.testing.assert_close(a.masks[:, :3], b.masks[:, :3])
    assert not torch.allclose(a.masks[:, 3:], b.masks[:, 3:])


def test_negative_clicks_and_previous_masks_change_the_answer() -> None:
    torch.manual_seed(0)
    decoder = SeemDecoder(32, 32, hidden_dim=32, num_queries=8, num_layers=3, num_heads=4, ffn_dim=64).eval()
    pixel = pixel_features(batch=1)
    positive = torch.zeros(1, 64, 64, dtype=torch.bool)
    positive[0, 10:14, 10:14] = True
    negative, previous = torch.zeros_like(positive), torch.zeros_like(positive)
    negative[0, 40:44, 40:44] = True
    previous[0, 0:32, 0:32] = True
    plain = decoder(pixel, prompts=PromptInputs(task="interactive", positive=[positive]))[-1].masks
    with_negative = PromptInputs(task="interactive", positive=[positive], negative=[negative])
    with_memory = PromptInputs(task="interactive", positive=[positive], previous=[previous])
    assert not torch.allclose(plain, decoder(pixel, prompts=with_negative)[-1].masks)
    assert not torch.allclose(plain, decoder(pixel, prompts=with_memory)[-1].masks)
    blocked = previous_blocked(with_memory, 1, (4, 4), torch.device("cpu"))[0, 0].view(4, 4)
    assert not blocked[:2, :2].any() and blocked[2:].all() and blocked[:, 2:].all()


def test_a_recipe_graph_changes_who_reads_text() -> None:
    """SEEM v1 keeps object queries blind to text; a graph where they read grounding tokens makes them see it."""
    pixel = pixel_features(batch=1)
    tokens = torch.randn(1, 5, 32)

    def object_masks(decoder: SeemDecoder, task_tokens: torch.Tensor) -> torch.Tensor:
        prompts = PromptInputs(task="panoptic", tokens=task_tokens, token_mask=torch.ones(1, 5, dtype=torch.bool))
        return decoder(pixel, prompts=prompts)[-1].masks

    torch.manual_seed(0)
    default = SeemDecoder(32, 32, hidden_dim=32, num_queries=8, num_layers=2, num_heads=4, ffn_dim=64).eval()
    torch.testing.assert_close(object_masks(default, tokens), object_masks(default, -tokens))
    graph = AttentionGraph()
    graph.self_attention["queries_object"] = ["queries_object", "tokens_grounding"]
    torch.manual_seed(0)
    demo = SeemDecoder(32, 32, hidden_dim=32, num_queries=8, num_layers=2, num_heads=4, ffn_dim=64, attention=graph)
    assert not torch.allclose(object_masks(demo.eval(), tokens), object_masks(demo, -tokens))


# ------------------------------------------------------------------------------------------ text and scores
def test_text_encoder_sentence_is_the_end_token_and_templates_average(tmp_path: Path) -> None:
    encoder = TextEncoder(16, arch=TEXT, tokenizer="synthetic-words", templates=TEMPLATES)
    tokens, mask, sentences = encoder(["red circle", "the largest blue square on the left"])
    lengths = mask.sum(1)
    torch.testing.assert_close(sentences, tokens[torch.arange(2), lengths - 1])
    assert lengths.tolist() == [4, 9]  # begin + words + end
    encoder.eval()
    single = [torch.nn.functional.normalize(encoder([t.format("circle")])[2][0], dim=-1) for t in TEMPLATES]
    expected = torch.nn.functional.normalize(torch.stack(single).mean(0), dim=-1)
    torch.testing.assert_close(encoder.class_embeddings(["circle", "sky"])[0], expected)
    # weights saved locally load back through `pretrained`
    encoder.model.save_pretrained(tmp_path / "clip")
    loaded = TextEncoder(16, pretrained=str(tmp_path / "clip"), tokenizer="synthetic-words").eval()
    loaded.proj.load_state_dict(encoder.proj.state_dict())
    torch.testing.assert_close(loaded(["red circle"])[2], encoder(["red circle"])[2])
    with pytest.raises(MissingWeightsError, match="not on this machine"):
        TextEncoder(16, pretrained=str(tmp_path / "nothing"), tokenizer="synthetic-words")


def test_similarity_head_is_scaled_cosine() -> None:
    head = TextSimilarityHead(4, logit_scale=math.log(10.0))
    with torch.no_grad():
        head.class_embed.weight.copy_(torch.eye(4))
    queries = torch.tensor([[[1.0, 0, 0, 0], [1.0, 1.0, 0, 0]]])
    conditions = torch.tensor([[[2.0, 0, 0, 0], [0, 0, 3.0, 0]]])
    logits = head(
        queries, BridgeOutput(conditions=conditions, condition_mask=torch.tensor([[True, False]])), "panoptic"
    )
    torch.testing.assert_close(logits[0, :, 0], torch.tensor([10.0, 10.0 / math.sqrt(2)]))
    assert (logits[0, :, 1] == MASKED).all()
    referring = head(queries, BridgeOutput(conditions=conditions), "referring")  # a distribution over queries
    torch.testing.assert_close(referring.exp().sum(1), torch.ones(1, 2))
    head.logit_scale.data.fill_(10.0)
    assert head(queries, BridgeOutput(conditions=conditions), "panoptic").max().item() == pytest.approx(100.0)  # capped


# --------------------------------------------------------------------------------------------------- losses
def test_prompt_matching_stays_within_a_prompts_queries() -> None:
    """Target of prompt 1 must go to one of prompt 1's queries even when prompt 0's query has the perfect mask."""
    target = torch.zeros(1, 16, 16, dtype=torch.bool)
    target[0, 4:12, 4:12] = True
    masks = torch.full((1, 4, 16, 16), -10.0)
    masks[0, 0] = torch.where(target[0], 10.0, -10.0)  # query 0 (prompt 0) is perfect
    logits = torch.tensor([[[0.0, MASKED], [0.0, MASKED], [MASKED, 2.0], [MASKED, 0.0]]])
    criterion = SeemCriterion(num_points=256)
    ((queries, targets),) = criterion.match(logits, masks, [target], [torch.tensor([1])])
    assert queries.tolist() == [2] and targets.tolist() == [0]  # the better-scored of prompt 1's queries
    losses = criterion([Prediction(logits, masks)], [target], [torch.tensor([1])], "referring")
    expected_ce = -torch.log_softmax(logits[0, :, 1], 0)[2]
    torch.testing.assert_close(losses["loss_class"], 0.4 * expected_ce)


def test_batched_prompt_matching_equals_matching_each_image_alone() -> None:
    """One batched cost for the batch gives each image the assignment its own cost would, forbidden pairs included:
    a target whose prompt has fewer queries than instances is left unmatched, never given another prompt's query."""
    torch.manual_seed(0)
    queries, prompts = 6, 3
    owner = torch.arange(queries) % prompts  # query q serves prompt q % 3: two queries per prompt
    logits = torch.randn(3, queries, prompts).masked_fill(owner[:, None] != torch.arange(prompts), MASKED)
    masks = torch.randn(3, queries, 16, 16)
    targets = [torch.rand(4, 32, 32) > 0.5, torch.zeros(0, 16, 16, dtype=torch.bool), torch.rand(2, 16, 16) > 0.5]
    labels = [torch.tensor([0, 0, 0, 2]), torch.zeros(0, dtype=torch.long), torch.tensor([1, 2])]

    def streams() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(7 + b) for b in range(3)]

    criterion = SeemCriterion(num_points=256)
    indices = criterion.match(logits, masks, targets, labels, streams())
    gens = streams()
    for b in (0, 2):
        column = logits[b][:, labels[b]]
        cost = per_image_mask_cost(masks[b], targets[b], 256, gens[b]) - 2.0 * column.softmax(0)
        rows, cols = HungarianMatcher.assign(cost.masked_fill(column <= MASKED / 2, 1e8))
        allowed = owner[rows] == labels[b][cols]
        assert torch.equal(indices[b][0], rows[allowed]) and torch.equal(indices[b][1], cols[allowed])
        assert torch.equal(owner[indices[b][0]], labels[b][indices[b][1]])
    assert len(indices[0][0]) == 3  # prompt 0 has two queries for its three instances; prompt 2 one for one
    assert indices[1][0].numel() == 0


def test_panoptic_terms_are_the_set_criterion() -> None:
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 5, 4), torch.randn(2, 5, 16, 16)
    targets = [torch.rand(2, 16, 16) > 0.5, torch.rand(1, 16, 16) > 0.5]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    torch.manual_seed(1)
    seem = SeemCriterion(num_points=64)([Prediction(logits, masks)], targets, labels, "panoptic")
    torch.manual_seed(1)
    base = SetCriterion(num_points=64)([Prediction(logits, masks)], targets, labels, "panoptic")
    for key in base:
        torch.testing.assert_close(seem[key], base[key])


# ------------------------------------------------------------------------------------- model and interaction
@pytest.mark.parametrize("task", ["panoptic", "referring", "interactive"])
def test_seem_model_serves_every_task(task: str) -> None:
    batch = task_batch(task)
    net = tiny_seem()
    out = net(batch)
    pred = out.predictions[-1]
    width = {"panoptic": len(batch.conditions[0]) + 1, "referring": 1, "interactive": max(map(len, batch.prompts))}
    assert len(out.predictions) == 4 and pred.logits.shape[-1] == width[task]
    losses = SeemCriterion(num_points=128)(out.predictions, batch.masks, batch.labels, task)
    sum(losses.values()).backward()
    assert net.mask_decoder.query_feat.weight.grad.abs().sum() > 0


def test_text_and_visual_prompts_compose() -> None:
    """An interactive batch carrying expressions feeds them as grounding tokens to spatial queries that read them."""
    batch = task_batch("interactive", count=1)
    graph = AttentionGraph()
    graph.self_attention["queries_spatial"] = [*graph.self_attention["queries_spatial"], "tokens_grounding"]
    torch.manual_seed(0)
    net = tiny_seem(attention=graph).eval()
    plain = net(batch).predictions[-1].masks
    batch.conditions = [["the red circle"]]
    with_text = net(batch).predictions[-1].masks
    assert plain.shape == with_text.shape and not torch.allclose(plain, with_text)


def test_a_reference_images_region_is_a_prompt() -> None:
    """SEEM's example prompt: regions marked on a reference image; the image itself as reference equals prompting."""
    batch = task_batch("interactive", count=2)
    net = tiny_seem().eval()
    with torch.no_grad():
        direct = net(batch).predictions[-1]
        same = segment_by_example(net, batch.images, batch.images, batch.prompts)[-1]
        swapped = segment_by_example(net, batch.images, batch.images.flip(0), batch.prompts)[-1]
    torch.testing.assert_close(same.masks, direct.masks)
    torch.testing.assert_close(same.logits, direct.logits)
    assert not torch.allclose(swapped.masks, direct.masks)


class _EmptyPredictor(torch.nn.Module):
    """Predicts nothing, so every round's click is positive, at the centre of the target."""

    def forward(self, batch):
        k = max(len(p) for p in batch.prompts)
        return type(
            "Out",
            (),
            {"predictions": [Prediction(torch.zeros(len(batch), 1, k), torch.full((len(batch), 1, 8, 8), -5.0))]},
        )()


def batch_targets(batch) -> list[torch.Tensor]:
    """Each prompt's target, [K, H, W] bool per sample."""
    return [
        prompt_targets(masks, labels, len(prompts))
        for masks, labels, prompts in zip(batch.masks, batch.labels, batch.prompts, strict=True)
    ]


def test_multi_round_training_adds_clicks_from_errors() -> None:
    batch = task_batch("interactive", count=2)
    rounds = MultiRoundTraining(min_rounds=2, max_rounds=2, click_radius=1)
    out = rounds(_EmptyPredictor(), batch)
    targets = batch_targets(batch)
    for before, after, negative, previous, target in zip(
        batch.prompts, out.prompts, out.negative_prompts, out.previous_masks, targets, strict=True
    ):
        assert not (before & ~after).any() and not ((after & ~before) & ~target).any()  # clicks inside the object
        for k in range(len(target)):
            click = next_click(torch.zeros_like(target[k]), target[k])
            assert click.positive and after[k, click.y, click.x]
        assert not negative.any() and not previous.any()
    assert rounds(_EmptyPredictor(), task_batch("referring")).negative_prompts is None  # other tasks untouched


def test_seem_learns_an_interactive_batch_with_rounds() -> None:
    """Trained with earlier click rounds, the masks its prompts pick get much closer to their targets."""
    torch.manual_seed(0)
    batch = task_batch("interactive", count=4)
    targets = torch.cat(batch_targets(batch))
    net = tiny_seem()
    criterion, rounds = SeemCriterion(num_points=256), MultiRoundTraining(max_rounds=2)

    def mean_iou() -> float:
        net.eval()
        with torch.no_grad():
            counts = [len(p) for p in batch.prompts]
            preds = torch.cat(condition_masks(net(batch).predictions[-1], batch.images.shape[-2:], counts))
        net.train()
        return ((preds & targets).flatten(1).sum(1) / (preds | targets).flatten(1).sum(1)).mean().item()

    before = mean_iou()
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    for _ in range(30):
        step_batch = rounds(net, batch)
        loss = sum(criterion(net(step_batch).predictions, batch.masks, batch.labels, "interactive").values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert mean_iou() > before + 0.25


def _check_encoder(build: type, **arch: object) -> None:
    encoder = build(**arch)
    maps = encoder(torch.rand(2, 3, 64, 64))
    for name, spec in encoder.output_specs.items():
        assert maps[name].shape == (2, spec.channels, 64 // spec.stride, 64 // spec.stride)


def _check_text_encoder() -> None:
    tokens, mask, sentences = TextEncoder(24, arch=TEXT, tokenizer="synthetic-words")(["red circle", "sky"])
    assert tokens.shape == (2, 4, 24) and mask.sum(1).tolist() == [4, 3] and sentences.shape == (2, 24)


# Tiny build + forward checks of the registered SEEM parts, for tests/test_components.py.
SEEM_CHECKS = {
    "FocalNetEncoder": lambda: _check_encoder(FocalNetEncoder, embed_dim=16, depths=(1, 1, 1, 1)),
    "DaViTEncoder": lambda: _check_encoder(
        DaViTEncoder, embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=3
    ),
    "TransformerEncoderPixelDecoder": test_fpn_pixel_decoder_scales,
    "SeemDecoder": test_decoder_shapes_and_prompt_scores,
    "TextPrompts": lambda: test_seem_model_serves_every_task("referring"),
    "TextSimilarityHead": test_similarity_head_is_scaled_cosine,
    "TextEncoder": _check_text_encoder,
    "SeemCriterion": test_prompt_matching_stays_within_a_prompts_queries,
}
