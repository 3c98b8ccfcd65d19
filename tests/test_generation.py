"""Generation from input embeddings: the KV-cached decoding matches a full recompute, a tiny LM trained on the
synthetic captions writes one, and the states it returns for `[SEG]` are those of a teacher-forced pass."""

from __future__ import annotations

import re
from functools import partial

import pytest
import torch

from tests.conftest import tiny_encoder_args
from tests.test_components import batch_of
from tests.test_xsam import dual_encoder
from tests.test_xsam import tiny_lm as xsam_lm
from zoo.bridges import LLMQueries, SegAdd
from zoo.data import SyntheticSegmentation
from zoo.data.synthetic import COLOURS, STUFF_NAMES, THING_NAMES, VOCABULARY
from zoo.decoders import Mask2FormerDecoder, MSDeformAttnPixelDecoder
from zoo.encoders import TimmEncoder
from zoo.heads import ConditionHead
from zoo.language import IGNORE, CausalLM, GenerationSettings, LMArch, SequenceBuilder, TaskTexts, embed_batch
from zoo.model import SegmentationModel
from zoo.module import ZooModule
from zoo.projectors import ConvProjector, MLPProjector, PixelShuffleProjector, PointSampler
from zoo.types import Dims

INSTRUCTION = "describe the image"
TEXTS = {"caption": TaskTexts(("{instruction}",), ("{answer}{eos}",))}  # no image: the LM alone
_OBJECT = rf"a ({'|'.join(COLOURS)}) ({'|'.join(THING_NAMES)}) \[SEG\]"
_GROUND = rf"({'|'.join(n for n in STUFF_NAMES if n != 'sky')})"
# The synthetic caption grammar (zoo.data.synthetic.caption), each object followed by its [SEG] (MGLMM's SegCap).
GRAMMAR = re.compile(rf"{_OBJECT}( and {_OBJECT})*( on {_GROUND}( and {_GROUND})*)?( under sky| in the sky)?")


def segcap(caption: str) -> str:
    """`[SEG]` after every object phrase, as MGLMM marks the phrases whose masks it predicts."""
    return re.sub(rf"(a \w+ (?:{'|'.join(THING_NAMES)}))", r"\1 [SEG]", caption)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These matrices are tiny: a second thread costs more than it saves (far more on a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained() -> tuple[CausalLM, SequenceBuilder, list[str]]:
    """A tiny LM trained (a few hundred steps) to answer the instruction with a synthetic SegCap caption."""
    torch.manual_seed(0)
    arch = LMArch(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    lm = CausalLM(arch=arch, tokenizer="synthetic-words", extra_tokens=("[SEG]",))
    builder = SequenceBuilder(lm, "minimal", TEXTS, slots=())
    train = SyntheticSegmentation(split="train", num_images=96, image_size=32, tasks=["caption"])
    captions = [segcap(train[i].answer) for i in range(len(train))]
    layouts = [builder.build("caption", INSTRUCTION, c) for c in captions]
    optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    lm.train()
    for _ in range(300):
        pick = torch.randint(len(layouts), (32,), generator=generator).tolist()
        embeds, mask, labels = embed_batch(lm, [layouts[i] for i in pick])
        loss = lm(embeds, mask, labels)[1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lm.eval()
    val = SyntheticSegmentation(split="val", num_images=8, image_size=32, tasks=["caption"])
    return lm, builder, [segcap(val[i].answer) for i in range(len(val))]


def prompts(builder: SequenceBuilder, starts: list[str]) -> list:
    """Prompts that end inside the answer (the given start of a caption), so their lengths differ."""
    layouts = []
    for start in starts:
        layout = builder.build("caption", INSTRUCTION, prompt=True)
        if start:
            start_ids = builder.lm.token_ids(start)
            layout.pieces.append(start_ids)
            layout.tokens += start_ids
            layout.labels += [-100] * len(start_ids)
        layouts.append(layout)
    return layouts


def greedy_without_cache(lm: CausalLM, prompt: torch.Tensor, steps: int) -> list[int]:
    """Reference decoding: the whole sequence recomputed for every new token, argmax of the last logits."""
    ids: list[int] = []
    for _ in range(steps):
        generated = lm.embed(torch.tensor(ids, dtype=torch.long))
        sequence = torch.cat([prompt, generated])[None]
        hidden, _ = lm(sequence, torch.ones(sequence.shape[:2], dtype=torch.long))
        ids.append(int(lm.model.get_output_embeddings()(hidden[0, -1]).argmax()))
        if ids[-1] == lm.tokenizer.eos_token_id:
            break
    return ids


def test_cached_greedy_decoding_gives_the_tokens_of_a_full_recompute(trained) -> None:
    lm, builder, _ = trained
    layouts = prompts(builder, ["", "a red", "a blue square [SEG] and"])
    embeds, mask, _ = embed_batch(lm, layouts, left=True)
    out = lm.generate(embeds, mask, GenerationSettings(max_new_tokens=12))
    for b, layout in enumerate(layouts):
        prompt = embeds[b, mask[b].bool()]
        with torch.no_grad():
            assert out.token_ids[b] == greedy_without_cache(lm, prompt, 12), layout.tokens


def test_a_tiny_lm_trained_on_captions_writes_one(trained) -> None:
    lm, builder, references = trained
    layouts = prompts(builder, [""] * len(references))
    out = builder.generate(layouts, GenerationSettings(max_new_tokens=40))
    eos = lm.tokenizer.eos_token_id
    for text, ids, reference in zip(out.texts, out.token_ids, references, strict=True):
        assert ids[-1] == eos and eos not in ids[:-1]  # it stops by itself
        assert GRAMMAR.fullmatch(text), text
        words = set(text.split()) - {"[SEG]"}
        assert words <= set(VOCABULARY) and words & set(reference.split())


def test_seg_states_equal_a_teacher_forced_pass_over_the_generated_text(trained) -> None:
    lm, builder, _ = trained
    layouts = prompts(builder, ["", "a green", "a white triangle [SEG] and a"])
    embeds, mask, _ = embed_batch(lm, layouts, left=True)
    out = lm.generate(embeds, mask, GenerationSettings(max_new_tokens=30, capture=("[SEG]",)))
    seg = lm.tokenizer.convert_tokens_to_ids("[SEG]")
    for b in range(len(layouts)):
        ids = out.token_ids[b]
        assert out.captured[b] == [i for i, t in enumerate(ids) if t == seg] and out.captured[b]
        prompt = embeds[b, mask[b].bool()]
        sequence = torch.cat([prompt, lm.embed(torch.tensor(ids))])[None]
        with torch.no_grad():
            hidden, _ = lm(sequence, torch.ones(sequence.shape[:2], dtype=torch.long))
        forced = hidden[0, len(prompt) + torch.tensor(out.captured[b])]
        torch.testing.assert_close(out.hidden[b], forced, atol=1e-5, rtol=1e-4)


def test_generation_settings_refuse_unknown_capture_tokens(trained) -> None:
    lm, builder, _ = trained
    embeds, mask, _ = embed_batch(lm, prompts(builder, [""]), left=True)
    with pytest.raises(ValueError, match="extra_tokens"):
        lm.generate(embeds, mask, GenerationSettings(capture=("<SEG>",)))


def first_answer_tokens(lm: CausalLM, teacher_forced: dict) -> list[str]:
    """What greedy decoding must write first: the argmax of the teacher-forced logits just before each answer
    (the answer's first labelled position), as text ('' for EOS)."""
    hidden, _ = lm(teacher_forced["embeds"], teacher_forced["mask"])
    texts = []
    for b, labels in enumerate(teacher_forced["labels"]):
        start = int((labels != IGNORE).nonzero()[0])
        token = int(lm.model.get_output_embeddings()(hidden[b, start - 1]).argmax())
        texts.append("" if token == lm.tokenizer.eos_token_id else lm.tokenizer.decode([token]))
    return texts


def spy_on_lm(lm: CausalLM, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []
    forward = lm.forward

    def record(embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None) -> tuple:
        calls.append({"embeds": embeds, "mask": mask, "labels": labels})
        return forward(embeds, mask, labels)

    monkeypatch.setattr(lm, "forward", record)
    return calls


def test_a_bridge_generates_at_evaluation_when_its_recipe_asks(monkeypatch) -> None:
    encoder = dual_encoder()
    dims = Dims(encoder.output_specs, decoder_dim=16, num_queries=4)
    parts = (MLPProjector, "siglip_layer2", PixelShuffleProjector, "sam_layer2", PointSampler(16))
    bridge = SegAdd(dims, xsam_lm(), *parts, generation=GenerationSettings(max_new_tokens=1))
    batch = batch_of("panoptic")
    features = encoder(batch.images)
    assert bridge.train()(batch, features).texts is None  # never while training
    calls = spy_on_lm(bridge.lm, monkeypatch)
    with torch.no_grad():
        out = bridge.eval()(batch, features)
        assert out.texts == first_answer_tokens(bridge.lm, calls[0])
    assert out.query_offset is not None  # the masks still come from the teacher-forced pass


def test_generated_texts_reach_the_model_output_and_predict_step(monkeypatch) -> None:
    arch = LMArch(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    lm = CausalLM(arch=arch, tokenizer="synthetic-words")
    net = SegmentationModel(
        encoder=TimmEncoder(**tiny_encoder_args()),
        pixel_decoder=partial(MSDeformAttnPixelDecoder, hidden_dim=32, mask_dim=32, num_layers=1, ffn_dim=64),
        mask_decoder=partial(Mask2FormerDecoder, hidden_dim=32, num_queries=4, num_layers=1, ffn_dim=64),
        head=ConditionHead,
        bridge=partial(LLMQueries, language_model=lm, projector=ConvProjector, generation=GenerationSettings(1)),
    )
    module = ZooModule(net).eval()
    calls = spy_on_lm(lm, monkeypatch)
    with torch.no_grad():
        results = module.predict_step(batch_of("caption"), 0)
        assert [r["text"] for r in results] == first_answer_tokens(lm, calls[0])
