"""The sequence builder: the tiny recipes' layouts stay as they were, and the full recipes' templates and task
texts give PSALM's and X-SAM's published layouts token for token, with labels on the answers only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tests.test_components import SPECS, batch_of, tiny_lm
from tests.test_xsam import dual_encoder, seg_add
from zoo.bridges import LLMQueries, SegAdd
from zoo.bridges.seg_add import PROMPT_SOURCES
from zoo.data.synthetic import VOCABULARY
from zoo.language import IGNORE, CausalLM, LMArch, SequenceBuilder, SequenceLayout, TaskTexts
from zoo.language.sequence import Slot
from zoo.language.texts import PSALM, XSAM
from zoo.projectors import ConvProjector, MLPProjector, PixelShuffleProjector, PointSampler
from zoo.types import Batch, Dims

SEEDS = (11, 12, 13)


def spy_on_lm(bridge: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every call's inputs to the bridge's language model, recorded."""
    calls: list[dict] = []
    forward = bridge.lm.forward

    def record(embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None) -> tuple:
        calls.append({"embeds": embeds, "mask": mask, "labels": labels})
        return forward(embeds, mask, labels)

    monkeypatch.setattr(bridge.lm, "forward", record)
    return calls


def with_streams(batch: Batch) -> Batch:
    batch.generators = [torch.Generator().manual_seed(s) for s in SEEDS[: len(batch)]]
    return batch


def padded(rows: list[torch.Tensor], value: float = 0) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)


# --- the tiny recipes' layouts (template `minimal`), pinned ----------------------------------------------------


LLM_QUERIES_CASES = [("panoptic", True), ("referring", True), ("interactive", True), ("interactive", False)]


@pytest.mark.parametrize(("task", "training"), [*LLM_QUERIES_CASES, ("caption", True)])
def test_minimal_layout_keeps_llm_queries_sequences(task: str, training: bool, monkeypatch) -> None:
    """LLMQueries' layout before the builder: image tokens, the instruction's ids, per condition its ids and
    [SEG] (categories in the sample stream's shuffled order, `background` the last name) or one region token per
    prompt, then the mask tokens; a caption ends with its ids and EOS, the only labels."""
    dims = Dims(SPECS, decoder_dim=32, num_queries=5)
    bridge = LLMQueries(dims, tiny_lm(), ConvProjector).train(training)
    calls = spy_on_lm(bridge, monkeypatch)
    feats = {n: torch.rand(3, s.channels, 64 // s.stride, 64 // s.stride) for n, s in SPECS.items()}
    batch = with_streams(batch_of(task, 3))
    out = bridge(batch, feats)

    tok, lm = bridge.lm.tokenizer, bridge.lm
    seg, eos = tok.convert_tokens_to_ids("[SEG]"), tok.eos_token_id
    grid = bridge.projector(feats[bridge.image_feature])
    image = grid.flatten(2).transpose(1, 2)
    rows, labels, spans, queries = [], [], [], []
    for b in range(len(batch)):
        stream = torch.Generator().manual_seed(SEEDS[b])
        chunks = [image[b], lm.embed(torch.tensor(tok(batch.instructions[b], add_special_tokens=False).input_ids))]
        names = [*batch.conditions[b], "background"] if task == "panoptic" else batch.conditions[b]
        order = torch.randperm(len(names), generator=stream).tolist() if training else range(len(names))
        cond = [None] * len(names)
        if task in ("panoptic", "referring"):
            for i in order:
                start = sum(len(c) for c in chunks)
                chunks.append(lm.embed(torch.tensor(tok(names[i], add_special_tokens=False).input_ids + [seg])))
                cond[i] = (start, start + len(chunks[-1]))
        elif task == "interactive":
            regions = bridge.region_tokens(grid[b], batch.prompts[b], stream)
            start = sum(len(c) for c in chunks)
            chunks += [r[None] for r in regions]
            cond = [(start + k, start + k + 1) for k in range(len(regions))]
        length = sum(len(c) for c in chunks)
        if task == "caption":
            ids = torch.tensor(tok(batch.answers[b], add_special_tokens=False).input_ids + [eos])
            chunks.append(lm.embed(ids))
            labels.append(torch.cat([torch.full((length,), IGNORE), ids]))
        else:
            chunks.append(bridge.mask_tokens)
            queries.append((length, length + dims.num_queries))
        rows.append(torch.cat(chunks))
        spans.append(cond)

    (call,) = calls
    lengths = torch.tensor([len(r) for r in rows])
    assert torch.equal(call["embeds"], padded(rows))
    assert torch.equal(call["mask"], (torch.arange(max(lengths))[None] < lengths[:, None]).long())
    if task == "caption":
        assert torch.equal(call["labels"], padded(labels, IGNORE))
        return
    assert call["labels"] is None  # PSALM trains no text on segmentation samples
    hidden, _ = lm(call["embeds"], call["mask"])
    query_states = torch.stack([hidden[b, s:e] for b, (s, e) in enumerate(queries)])
    torch.testing.assert_close(out.query_content, bridge.query_proj(query_states))
    pooled = torch.stack([torch.stack([hidden[b, s:e].mean(0) for s, e in cs]) for b, cs in enumerate(spans)])
    group = "interactive" if task == "interactive" else task
    torch.testing.assert_close(out.conditions, bridge.condition_proj[group](pooled))


SEG_ADD_CASES = [("panoptic", True), ("referring", False), ("interactive", False), ("caption", True)]


@pytest.mark.parametrize(("task", "training"), SEG_ADD_CASES)
def test_minimal_layout_keeps_seg_add_sequences(task: str, training: bool, monkeypatch) -> None:
    """SegAdd's layout before the builder: SigLIP then SAM tokens, the instruction's ids, per condition
    `<p>` ids `</p>` (categories shuffled) or `<p>` region `</p>` per prompt, then `<SEG>` and EOS, which carry
    the labels (a caption's ids and EOS instead). The shuffle now draws from the sample's stream (it drew from
    torch's global generator): the one change to the tiny recipes' sequences."""
    encoder = dual_encoder()
    bridge = seg_add(encoder).train(training)
    calls = spy_on_lm(bridge, monkeypatch)
    batch = with_streams(batch_of(task, 3))
    if task == "interactive":  # a prompt drawn on another image of the batch (X-SAM's VGD)
        batch.meta[0][PROMPT_SOURCES] = [1] * len(batch.prompts[0])
    features = encoder(batch.images)
    out = bridge(batch, features)

    tok, lm = bridge.lm.tokenizer, bridge.lm
    seg, open_, close, eos = (tok.convert_tokens_to_ids(t) for t in ("<SEG>", "<p>", "</p>", tok.eos_token))
    grids = [bridge.projector(features["siglip_layer2"]), bridge.extra_projector(features["sam_layer2"])]
    visual = torch.cat([g.flatten(2).transpose(1, 2) for g in grids], 1)
    rows, labels, spans, seg_at = [], [], [], []
    for b in range(len(batch)):
        stream = torch.Generator().manual_seed(SEEDS[b])
        ids = tok(batch.instructions[b], add_special_tokens=False).input_ids
        chunks, cond = [visual[b]], []
        if task in ("panoptic", "referring"):
            names = batch.conditions[b]
            order = torch.randperm(len(names), generator=stream).tolist() if training else range(len(names))
            cond = [None] * len(names)
            for i in order:
                start = len(visual[b]) + len(ids)
                ids = ids + [open_, *tok(names[i], add_special_tokens=False).input_ids, close]
                cond[i] = (start, len(visual[b]) + len(ids))
            chunks.append(lm.embed(torch.tensor(ids)))
        elif task == "interactive":
            sources = torch.as_tensor(batch.meta[b].get(PROMPT_SOURCES, [b] * len(batch.prompts[b])))
            regions = bridge.sampler(grids[1], batch.prompts[b], sources)
            for region in regions:
                chunks += [lm.embed(torch.tensor(ids + [open_])), region[None]]
                cond.append((sum(len(c) for c in chunks) - 2, sum(len(c) for c in chunks) + 1))
                ids = [close]
            chunks.append(lm.embed(torch.tensor(ids)))
        else:
            chunks.append(lm.embed(torch.tensor(ids)))
        length = sum(len(c) for c in chunks)
        answer = tok(batch.answers[b], add_special_tokens=False).input_ids if task == "caption" else [seg]
        chunks.append(lm.embed(torch.tensor(answer + [eos])))
        labels.append(torch.tensor([IGNORE] * length + answer + [eos]))
        rows.append(torch.cat(chunks))
        spans.append(cond)
        seg_at.append(length)

    (call,) = calls
    lengths = torch.tensor([len(r) for r in rows])
    assert torch.equal(call["embeds"], padded(rows))
    assert torch.equal(call["mask"], (torch.arange(max(lengths))[None] < lengths[:, None]).long())
    assert torch.equal(call["labels"], padded(labels, IGNORE))
    if task == "caption":
        return
    projected = bridge.llm_projector(lm(call["embeds"], call["mask"])[0])
    torch.testing.assert_close(out.query_offset[:, 0], projected[torch.arange(len(batch)), torch.tensor(seg_at)])
    pooled = [torch.stack([projected[b, s:e].mean(0) for s, e in cs]) for b, cs in enumerate(spans)]
    torch.testing.assert_close(out.conditions, padded(pooled))


# --- the full recipes' templates and texts ----------------------------------------------------------------------

PSALM_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)


def bpe_tokenizer(path: Path, special: list[str], bos: str, eos: str, unk: str, chat_template: str | None = None):
    """A small byte-level BPE (GPT-2's pre-tokenizer, as Phi-1.5's) trained here on the texts the tests use."""
    corpus = [PSALM_SYSTEM, " ".join(VOCABULARY), "the red circle on the left. What is it? A circle. Red."]
    corpus += [t for texts in (*PSALM.values(), *XSAM.values()) for t in (*texts.questions, *texts.answers)]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus * 3, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=bos, eos_token=eos, unk_token=unk)
    tok.chat_template = chat_template
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def phi15_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Phi-1.5's special tokens: <|endoftext|> is BOS, EOS and UNK."""
    eot = "<|endoftext|>"
    return bpe_tokenizer(tmp_path_factory.mktemp("phi-1_5"), [eot], eot, eot, eot)


# Phi-3-mini-4k-instruct's chat template, written from its published layout.
PHI3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '<|user|>\n' + message['content'] + '<|end|>\n<|assistant|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + '<|end|>\n' }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def phi3_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    special = ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    path = tmp_path_factory.mktemp("phi-3")
    return bpe_tokenizer(path, special, "<s>", "<|endoftext|>", "<unk>", PHI3_CHAT_TEMPLATE)


def small_lm(model_type: str, tokenizer: str, extra_tokens: tuple[str, ...]) -> CausalLM:
    arch = LMArch(
        model_type=model_type, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    return CausalLM(arch=arch, tokenizer=tokenizer, extra_tokens=extra_tokens)


def spy_on_layouts(builder: SequenceBuilder, monkeypatch: pytest.MonkeyPatch) -> list[SequenceLayout]:
    layouts: list[SequenceLayout] = []
    build = builder.build

    def record(*args, **kwargs) -> SequenceLayout:
        layouts.append(build(*args, **kwargs))
        return layouts[-1]

    monkeypatch.setattr(builder, "build", record)
    return layouts


def rendered(layout: SequenceLayout, tok) -> list[tuple[str, bool]]:
    """Per token (per slot occurrence: its name): the token and whether it is trained on. Labels must be the
    token ids where they are set."""
    out, position = [], 0
    for piece in layout.pieces:
        if isinstance(piece, Slot):
            out.append((piece.name, False))
            assert set(layout.labels[position : position + len(piece.embeddings)]) == {IGNORE}
            position += len(piece.embeddings)
            continue
        for token, label in zip(piece, layout.labels[position : position + len(piece)], strict=True):
            assert label in (IGNORE, token)
            out.append((tok.convert_ids_to_tokens(token), label != IGNORE))
        position += len(piece)
    return out


def encode(tok, text: str, trained: bool, placeholders: str, spans: list[str] = ()) -> list[tuple[str, bool]]:
    """`text` tokenized chunk by chunk between `placeholders` (kept as names), as the published code does;
    `<cls>` / `<refer>` become the next of `spans`, tokenized on its own (PSALM's spliced spans)."""
    out, spans = [], list(spans)
    for chunk in re.split(f"({placeholders})", text):
        if chunk in ("<cls>", "<refer>"):
            out += [(t, False) for t in tok.convert_ids_to_tokens(tok.encode(spans.pop(0), add_special_tokens=False))]
        elif re.fullmatch(placeholders, chunk):
            out.append((chunk, False))
        elif chunk:
            out += [(t, trained) for t in tok.convert_ids_to_tokens(tok.encode(chunk, add_special_tokens=False))]
    return out


def llava_phi(tok, turns: list[tuple[str, str]], spans: list[str] = ()) -> tuple[str, list[tuple[str, bool]]]:
    """psalm/conversation.py's LLAMA_2 prompt for conv_llava_phi (sep = sep2 = <|endoftext|>), and its tokens as
    PSALM's `tokenizer_special_tokens` makes them, the answer and its closing tokens trained on (LLaVA's
    masking, which stops at "[/INST] ")."""
    sep, text, tokens = "<|endoftext|>", "", []
    placeholders = "<image>|<seg>|<region>|<cls>|<refer>"
    for i, (user, assistant) in enumerate(turns):
        user = (f"<<SYS>>\n{PSALM_SYSTEM}\n<</SYS>>\n\n" if i == 0 else "") + user
        question = ("" if i == 0 else sep) + f"[INST] {user} [/INST] "
        answer = f"{assistant} {sep}"
        text += question + answer
        tokens += encode(tok, question, False, placeholders, spans) + encode(tok, answer, True, placeholders)
    return text, tokens


def phi3_chat(tok, turns: list[tuple[str, str]]) -> tuple[str, list[tuple[str, bool]]]:
    """xtuner's phi3_chat template (template_map_fn) and X-SAM's encode_fn: BOS, then per turn the instruction
    (split only at <image> / <region>), the answer with <|end|> (trained on) and "\n" (not)."""
    text, tokens = "<s>", [("<s>", False)]
    for user, assistant in turns:
        question, answer = f"<|user|>\n{user}<|end|>\n<|assistant|>\n", f"{assistant}<|end|>"
        text += question + answer + "\n"
        tokens += encode(tok, question, False, "<image>|<region>") + encode(tok, answer, True, "<image>|<region>")
        tokens += encode(tok, "\n", False, "<image>|<region>")
    return text, tokens


def caption_batch(n: int = 1) -> Batch:
    batch = batch_of("caption", n)
    batch.instructions = ["What is it?"] * n
    batch.answers = ["A circle."] * n
    batch.follow_ups = [[("And the colour?", "Red.")]] * n
    return batch


def test_psalm_full_recipes_lay_out_llava_phi_as_published(phi15_tokenizer: str, monkeypatch) -> None:
    lm = small_lm("phi", phi15_tokenizer, ("[SEG]",))
    bridge = LLMQueries(Dims(SPECS, 16, 4), lm, ConvProjector, template="llava_phi", texts="psalm").eval()
    layouts = spy_on_layouts(bridge.builder, monkeypatch)
    feats = {n: torch.rand(2, s.channels, 64 // s.stride, 64 // s.stride) for n, s in SPECS.items()}
    tok = lm.tokenizer
    answer = "\nSure, the segmentation result is <seg>"

    names = [*batch_of("panoptic").conditions[0], "background"]
    bridge(batch_of("panoptic"), feats)
    question = "This is an image <image>, Please do Panoptic Segmentation.\nThis is all the candidate categories: "
    question += ", ".join(["<cls>"] * len(names)) + ".\n"
    text, tokens = llava_phi(tok, [(question, answer)], [f"{n}[SEG]" for n in names])
    assert layouts[-1].text(tok) == text.replace("<cls>", "{}").format(*(f"{n}[SEG]" for n in names))
    assert rendered(layouts[-1], tok) == tokens
    spans = [tok.decode([layouts[-1].tokens[i] for i in range(s, e)]) for s, e in layouts[-1].conditions]
    assert spans == [f"{n}[SEG]" for n in names]

    batch = batch_of("referring")
    bridge(batch, feats)
    question = "This is an image <image>, Please doing Referring Segmentation according to the following "
    question += "instruction:\n<refer>"
    text, tokens = llava_phi(tok, [(question, answer)], [f" {batch.conditions[0][0]}.[SEG]"])
    assert rendered(layouts[-2], tok) == tokens  # sample 0 of the two

    batch = batch_of("interactive")
    bridge(batch, feats)
    k = len(batch.prompts[1])
    regions = ",".join([" <region>"] * k)
    question = f"This is an image <image>, Please segment by given regions\nThis is all regions: {regions}.\n"
    text, tokens = llava_phi(tok, [(question, "\n[SEG]<seg>")])
    assert layouts[-1].text(tok) == text and rendered(layouts[-1], tok) == tokens
    assert [e - s for s, e in layouts[-1].conditions] == [1] * k  # one region token each

    bridge(caption_batch(), feats)  # LLaVA conversations, multi-turn, whole
    text, tokens = llava_phi(tok, [("<image>\nWhat is it?", "A circle."), ("And the colour?", "Red.")])
    assert layouts[-1].text(tok) == text and rendered(layouts[-1], tok) == tokens


def test_xsam_full_recipes_lay_out_phi3_chat_as_published(phi3_tokenizer: str, monkeypatch) -> None:
    encoder = dual_encoder()
    lm = small_lm("phi3", phi3_tokenizer, ("<SEG>", "<p>", "</p>"))
    dims = Dims(encoder.output_specs, decoder_dim=16, num_queries=4)
    parts = (MLPProjector, "siglip_layer2", PixelShuffleProjector, "sam_layer2", PointSampler(16))
    bridge = SegAdd(dims, lm, *parts, template="phi3_chat", texts="xsam").eval()
    layouts = spy_on_layouts(bridge.builder, monkeypatch)
    tok = lm.tokenizer

    batch = batch_of("panoptic")
    bridge(batch, encoder(batch.images))
    categories = ", ".join(f"<p>{n}</p>" for n in batch.conditions[0])
    question = f"<image>\nCan you segment the image based on the following categories: {categories}? Please output "
    text, tokens = phi3_chat(tok, [(question + "the segmentation masks.", "<SEG>.")])  # the first variants
    assert layouts[-2].text(tok) == text and rendered(layouts[-2], tok) == tokens
    spans = [tok.decode([layouts[-2].tokens[i] for i in range(s, e)]) for s, e in layouts[-2].conditions]
    assert spans == [f"<p>{n}</p>" for n in batch.conditions[0]]

    batch = batch_of("referring")
    bridge(batch, encoder(batch.images))
    question = f"<image>\nPlease identify and segment the <p>{batch.conditions[1][0]}</p> in this image."
    text, tokens = phi3_chat(tok, [(question, "<SEG>.")])
    assert layouts[-1].text(tok) == text and rendered(layouts[-1], tok) == tokens

    batch = batch_of("interactive")
    bridge(batch, encoder(batch.images))
    regions = ", ".join(["<p><region></p>"] * len(batch.prompts[0]))
    question = f"<image>\nCan you segment the image based on the following regions: {regions}? Please output the "
    text, tokens = phi3_chat(tok, [(question + "corresponding segmentation mask.", "<SEG>.")])
    assert layouts[-2].text(tok) == text and rendered(layouts[-2], tok) == tokens
    assert [e - s for s, e in layouts[-2].conditions] == [3] * len(batch.prompts[0])  # <p>, the token, </p>

    batch = caption_batch()
    bridge(batch, encoder(batch.images))
    text, tokens = phi3_chat(tok, [("<image>\nWhat is it?", "A circle."), ("And the colour?", "Red.")])
    assert layouts[-1].text(tok) == text and rendered(layouts[-1], tok) == tokens


def test_the_tokenizers_own_chat_template_is_read_off_it(phi3_tokenizer: str) -> None:
    """Phi-3's own chat template, read from the tokenizer, lays a conversation out as `phi3_chat` does."""
    lm = small_lm("phi3", phi3_tokenizer, ("<SEG>", "<p>", "</p>"))
    tokens = {"seg_token": "<SEG>", "open_token": "<p>", "close_token": "</p>"}
    own, published = (SequenceBuilder(lm, t, "xsam", ("<image>",), tokens) for t in ("tokenizer", "phi3_chat"))
    assert own.template.stop == ("<|end|>",)
    image = torch.zeros(2, lm.hidden_size)
    for builder_args in (
        {"task": "panoptic", "instruction": "", "conditions": ["circle", "sky"]},
        {"task": "caption", "instruction": "What is it?", "answer": "A circle.", "follow_ups": [("And?", "Red.")]},
    ):
        a, b = (x.build(**builder_args, slots={"<image>": image}) for x in (own, published))
        assert a.tokens == b.tokens and a.labels == b.labels and a.conditions == b.conditions


def test_variants_are_drawn_from_the_sample_stream_in_training_and_the_first_in_evaluation(phi3_tokenizer) -> None:
    lm = small_lm("phi3", phi3_tokenizer, ("<SEG>", "<p>", "</p>"))
    tokens = {"seg_token": "<SEG>", "open_token": "<p>", "close_token": "</p>"}
    builder = SequenceBuilder(lm, "phi3_chat", "xsam", ("<image>",), tokens)
    texts, image = XSAM["panoptic"], {"<image>": torch.zeros(1, lm.hidden_size)}

    def written(question: str, answer: str) -> str:
        return question.replace("{conditions}", "<p>circle</p>") + "<|end|>\n<|assistant|>\n" + answer

    for seed in range(6):
        draw = torch.Generator().manual_seed(seed)
        question = texts.questions[int(torch.randint(len(texts.questions), (1,), generator=draw))]
        answer = texts.answers[int(torch.randint(len(texts.answers), (1,), generator=draw))]
        stream = torch.Generator().manual_seed(seed)
        layout = builder.build("panoptic", "", conditions=["circle"], generator=stream, training=True, slots=image)
        assert written(question, answer.format(seg_token="<SEG>")) in layout.text(lm.tokenizer)
    layout = builder.build("panoptic", "", conditions=["circle"], slots=image)
    assert written(texts.questions[0], "<SEG>.") in layout.text(lm.tokenizer)


def test_texts_that_cannot_serve_a_bridge_fail_when_it_is_built() -> None:
    dims = Dims(SPECS, decoder_dim=8, num_queries=2)
    with pytest.raises(ValueError, match="<seg>"):
        LLMQueries(dims, tiny_lm(), ConvProjector, texts="xsam")
    encoder = dual_encoder()
    with pytest.raises(ValueError, match="seg_token"):
        dims = Dims(encoder.output_specs, 8, 2)
        SegAdd(dims, seg_add(encoder).lm, MLPProjector, "siglip_layer2", prompt_grid="image", texts="psalm-minimal")
    with pytest.raises(ValueError, match="Did you mean 'llava_phi'"):
        LLMQueries(dims, tiny_lm(), ConvProjector, template="llava-phi")


def test_a_condition_span_that_would_split_a_token_is_refused() -> None:
    """Spans are found in the tokenized run; a text that glues a condition to the next word has no boundary."""
    lm = tiny_lm()
    builder = SequenceBuilder(lm, "minimal", {"panoptic": TaskTexts(("{conditions}?",), ("<seg>",))}, ("<seg>",))
    with pytest.raises(ValueError, match="falls inside a token"):
        builder.build("panoptic", "", conditions=["circle"], slots={"<seg>": torch.zeros(1, lm.hidden_size)})
