"""The one sequence builder of the LLM bridges: a sample's conversation as the embeddings a causal LM reads.

A bridge gives the task, the sample's texts (instruction, answer, later turns), its conditions and the vectors
that fill embedding slots (image tokens, mask tokens, region tokens); the chat template and the task texts lay
them out. The result keeps what the bridge reads back: where each condition span and each slot sits, the token
ids, and labels that are the answer's token ids (the tokens that close an answer included) and IGNORE
everywhere else.

Text is tokenized in runs: the text between two slots within one turn part, so each run reads as the published
code tokenized it; conditions written `alone` are runs of their own (PSALM's). Each run is one embedding call.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from zoo.language.causal_lm import CausalLM
from zoo.language.generation import Generated, GenerationSettings
from zoo.language.templates import ChatTemplate, chat_template
from zoo.language.texts import TaskTexts, task_texts
from zoo.registry import unknown_message
from zoo.tasks import task_spec
from zoo.types import Batch

IGNORE = -100  # the label of a position the LM loss skips
SLOT = -1  # `SequenceLayout.tokens` at positions an embedding slot fills

_FIELD = re.compile(r"\{\{|\}\}|\{(\w+)\}")


@dataclass
class Slot:
    """Vectors [n, H] placed in the sequence as they are, under a placeholder name (`<image>`, `<seg>`, ...)."""

    name: str
    embeddings: Tensor


@dataclass
class SequenceLayout:
    """One sample's LM input: runs of token ids and slots in order, with per-position tokens and labels.

    `conditions[k]` is the [start, end) span of condition k (in the order the bridge gave them, whatever order
    they were laid out in); `slots[name]` the spans of each occurrence of a slot.
    """

    pieces: list[list[int] | Slot] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    conditions: list[tuple[int, int]] = field(default_factory=list)
    slots: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    def positions(self, token_id: int) -> list[int]:
        """Where token `token_id` sits."""
        return [i for i, t in enumerate(self.tokens) if t == token_id]

    def render(self, tokenizer: object) -> list[str]:
        """The tokens as strings, each slot occurrence as its name once: the layout a reader can check."""
        out: list[str] = []
        for piece in self.pieces:
            out.extend([piece.name] if isinstance(piece, Slot) else tokenizer.convert_ids_to_tokens(piece))
        return out

    def text(self, tokenizer: object) -> str:
        """The sequence as text, each slot occurrence written as its name."""
        return "".join(
            piece.name
            if isinstance(piece, Slot)
            else tokenizer.decode(piece, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            for piece in self.pieces
        )


class _Mark:
    """A position in the sequence, known once the run it falls in is tokenized."""

    def __init__(self, char: int) -> None:
        self.char = char
        self.position: int | None = None


class _Writer:
    """Accumulates text into runs and tokenizes each as a whole, placing slots and resolving marks between."""

    def __init__(self, lm: CausalLM) -> None:
        self.lm = lm
        self.layout = SequenceLayout()
        self.run = ""
        self.marks: list[_Mark] = []
        self.labelled = False

    def write(self, text: str) -> None:
        self.run += text

    def mark(self) -> _Mark:
        mark = _Mark(len(self.run))
        self.marks.append(mark)
        return mark

    def slot(self, name: str, embeddings: Tensor) -> None:
        self.flush()
        start = len(self.layout)
        self.layout.pieces.append(Slot(name, embeddings))
        self.layout.tokens += [SLOT] * embeddings.shape[0]
        self.layout.labels += [IGNORE] * embeddings.shape[0]
        self.layout.slots.setdefault(name, []).append((start, len(self.layout)))

    def set_labelled(self, labelled: bool) -> None:
        self.flush()
        self.labelled = labelled

    def flush(self) -> None:
        """Tokenize the pending run; marks in it become the positions of the tokens they precede."""
        start = len(self.layout)
        ids, offsets = self.lm.tokenize(self.run) if self.run else ([], [])
        begins = [begin for begin, _ in offsets]
        for mark in self.marks:
            mark.position = start + _token_index(offsets, begins, mark.char, self.run)
        if ids:
            self.layout.pieces.append(ids)
            self.layout.tokens += ids
            self.layout.labels += ids if self.labelled else [IGNORE] * len(ids)
        self.run, self.marks = "", []


def _token_index(offsets: list[tuple[int, int]], begins: list[int], char: int, text: str) -> int:
    """The index of the token starting at character `char` (the token count when `char` ends the text)."""
    index = bisect.bisect_left(begins, char)
    inside = index > 0 and offsets[index - 1][1] > char
    gap = text[char : offsets[index][0]] if index < len(offsets) else ""  # whitespace no token covers
    if inside or gap.strip():
        raise ValueError(f"a condition span boundary at character {char} falls inside a token of {text!r}")
    return index


def _parse(fmt: str, slots: re.Pattern | None) -> list[tuple[str, str]]:
    """A format as ("text" | "field" | "slot", value) parts; `{{` and `}}` are literal braces."""
    parts: list[tuple[str, str]] = []
    last = 0
    for match in _FIELD.finditer(fmt):
        parts.append(("text", fmt[last : match.start()]))
        parts.append(("field", match.group(1)) if match.group(1) else ("text", match.group(0)[0]))
        last = match.end()
    parts.append(("text", fmt[last:]))
    out: list[tuple[str, str]] = []
    for kind, value in parts:
        if kind == "text" and slots is not None:
            out.extend(("slot" if i % 2 else "text", piece) for i, piece in enumerate(slots.split(value)))
        else:
            out.append((kind, value))
    return [(kind, value) for kind, value in out if value]


def _fill(fmt: str, values: Mapping[str, str]) -> str:
    """A format with only text fields, as a string."""
    return "".join(values[value] if kind == "field" else value for kind, value in _parse(fmt, None))


class SequenceBuilder:
    """Builds each sample's `SequenceLayout` from a chat template and task texts; see the module docstring.

    `slots` are the placeholder names the bridge fills with vectors; `tokens` the token strings its texts name
    (`seg_token`, `open_token`, `close_token`). The template's own tokens are added to the LM's vocabulary.
    """

    def __init__(
        self,
        lm: CausalLM,
        template: str = "minimal",
        texts: str | Mapping[str, TaskTexts] = "psalm-minimal",
        slots: Iterable[str] = ("<image>",),
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.lm = lm
        self.template: ChatTemplate = chat_template(template, lm.tokenizer)
        lm.add_tokens(self.template.special_tokens)
        self.texts = dict(task_texts(texts) if isinstance(texts, str) else texts)
        tokenizer = lm.tokenizer
        self.tokens = {"eos": tokenizer.eos_token or "", "bos": tokenizer.bos_token or "", **(tokens or {})}
        names = sorted(set(slots), key=len, reverse=True)
        self._slots = re.compile("(" + "|".join(map(re.escape, names)) + ")") if names else None
        self._parsed: dict[str, list[tuple[str, str]]] = {}

    def require_in_answers(self, marker: str, what: str) -> None:
        """Fail at build time when a mask task's answer lacks `marker` (the slot or token the bridge reads)."""
        for task, texts in self.texts.items():
            if task_spec(task).segments and any(marker not in answer for answer in texts.answers):
                raise ValueError(f"every {task} answer of these texts must contain {marker} ({what}): {texts.answers}")

    def build(
        self,
        task: str,
        instruction: str,
        answer: str = "",
        conditions: Sequence[str | Tensor] = (),
        order: Sequence[int] | None = None,
        follow_ups: Sequence[tuple[str, str]] = (),
        slots: Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
        training: bool = False,
        prompt: bool = False,
    ) -> SequenceLayout:
        """One sample's sequence.

        `conditions` are names (`{name}`) or single vectors [H] (the `<region>` slot), laid out in `order` (a
        permutation; None: as given). `follow_ups` are later (question, answer) turns. `training` draws the text
        variants from `generator` (the sample's stream); evaluation takes the first. The template's system text
        opens the first turn. `prompt` stops where the model's last answer would begin: the input to generate
        from.
        """
        if task not in self.texts:
            raise ValueError(unknown_message("task for these texts", task, list(self.texts)))
        texts = self.texts[task]
        question = self._pick(texts.questions, generator, training)
        reply = self._pick(texts.answers, generator, training)
        slots = dict(slots or {})
        writer = _Writer(self.lm)
        spans: list[tuple[_Mark, _Mark] | None] = [None] * len(conditions)

        def write_conditions() -> None:
            for j, i in enumerate(range(len(conditions)) if order is None else order):
                if j:
                    self._emit(writer, texts.separator, {}, slots)
                if texts.alone:
                    writer.flush()
                start, item = writer.mark(), conditions[i]
                if isinstance(item, str):
                    self._emit(writer, texts.condition, {"name": item}, slots)
                else:
                    self._emit(writer, texts.condition, {}, {**slots, "<region>": item[None]})
                if texts.alone:
                    writer.flush()
                spans[i] = (start, writer.mark())

        turns = [(question, instruction, answer), *((texts.follow_up, q, a) for q, a in follow_ups)]
        system = self.template.system
        for t, (asked, human, gpt) in enumerate(turns):
            values: dict[str, str | Callable[[], None]] = {"instruction": human, "answer": gpt}
            if t == 0:
                values["conditions"] = write_conditions
            user = self.template.first_user if t == 0 else self.template.user
            head = {"system": _fill(self.template.system_format, {"system": system}) if system else ""}
            content = {**head, "content": lambda q=asked, v=values: self._emit(writer, q, v, slots)}
            self._emit(writer, user, content, {})
            if prompt and t == len(turns) - 1:
                break
            writer.set_labelled(True)
            content = {"content": lambda v=values: self._emit(writer, reply, v, slots)}
            self._emit(writer, self.template.assistant, content, {})
            writer.set_labelled(False)
            writer.write(self.template.separator)
        writer.flush()
        if any(span is None for span in spans):
            raise ValueError(f"the {task} texts do not place the sample's conditions: {question!r}")
        writer.layout.conditions = [(start.position, end.position) for start, end in spans]
        return writer.layout

    def build_sample(
        self,
        batch: Batch,
        b: int,
        conditions: Sequence[str | Tensor] = (),
        order: Sequence[int] | None = None,
        slots: Mapping[str, Tensor] | None = None,
        training: bool = False,
        prompt: bool = False,
    ) -> SequenceLayout:
        """`build` for sample `b` of `batch`: its task, instruction, answer, later turns and random stream."""
        return self.build(
            batch.task,
            batch.instructions[b],
            batch.answers[b] if batch.answers else "",
            conditions,
            order,
            batch.follow_ups[b] if batch.follow_ups else (),
            slots,
            batch.generators[b] if batch.generators else None,
            training,
            prompt,
        )

    def generate(self, prompts: list[SequenceLayout], settings: GenerationSettings) -> Generated:
        """Generate each prompt's answer (prompts from `build(..., prompt=True)`), stopping at EOS or the
        template's stop tokens."""
        embeds, mask, _ = embed_batch(self.lm, prompts, left=True)
        return self.lm.generate(embeds, mask, settings, stop=self.template.stop)

    @staticmethod
    def _pick(options: tuple[str, ...], generator: torch.Generator | None, training: bool) -> str:
        """A variant drawn from the sample's stream in training (only when there is a choice), else the first."""
        if not training or len(options) == 1:
            return options[0]
        device = generator.device if generator is not None else None
        return options[int(torch.randint(len(options), (1,), generator=generator, device=device))]

    def _emit(
        self,
        writer: _Writer,
        fmt: str,
        values: Mapping[str, str | Callable[[], None]],
        slots: Mapping[str, Tensor],
    ) -> None:
        """Write a format: text as it is, fields from `values` or the model's tokens, slots from `slots`."""
        if fmt not in self._parsed:
            self._parsed[fmt] = _parse(fmt, self._slots)
        for kind, value in self._parsed[fmt]:
            if kind == "text":
                writer.write(value)
            elif kind == "slot":
                if value not in slots:
                    raise ValueError(f"the text {fmt!r} places slot {value}, which this sample does not fill")
                writer.slot(value, slots[value])
            else:
                filled = values.get(value, self.tokens.get(value))
                if filled is None:
                    known = sorted({*values, *self.tokens})
                    raise ValueError(f"unknown field {{{value}}} in {fmt!r}; known here: {', '.join(known)}")
                filled() if callable(filled) else writer.write(filled)


def draw_order(count: int, generator: torch.Generator | None) -> list[int]:
    """A random layout order for `count` conditions (category shuffling), from the sample's stream."""
    device = generator.device if generator is not None else None
    return torch.randperm(count, generator=generator, device=device).tolist()


def embed_batch(
    lm: CausalLM, layouts: list[SequenceLayout], left: bool = False, one_call: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Embeddings [B, T, H], attention mask [B, T] and labels [B, T] of the samples, padded to one length.

    Right-padded to train and score; left-padded (`left`) to generate, so every prompt ends where generation
    starts. Each run of text is embedded on its own (PSALM's spliced spans), or the whole batch in `one_call` with
    the slots written over padding ids (cheaper for long prompts, X-SAM's). The two sum the embedding table's
    gradient in different orders, so each bridge keeps the one its numbers were made with.
    """
    side = "left" if left else "right"
    device, dtype = lm.device, lm.model.get_input_embeddings().weight.dtype
    lengths = torch.tensor([len(layout) for layout in layouts], device=device)
    if one_call:
        pad = lm.tokenizer.pad_token_id
        rows = [torch.tensor([pad if t == SLOT else t for t in layout.tokens], device=device) for layout in layouts]
        embeds = lm.embed(nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad, padding_side=side))
        where, values = [], []
        for b, layout in enumerate(layouts):
            position = embeds.shape[1] - len(layout) if left else 0
            for piece in layout.pieces:
                if isinstance(piece, Slot):
                    where += [(b, position + i) for i in range(piece.embeddings.shape[0])]
                    values.append(piece.embeddings.to(dtype))
                position += piece.embeddings.shape[0] if isinstance(piece, Slot) else len(piece)
        if where:
            index = torch.tensor(where, device=device).T
            embeds = embeds.index_put((index[0], index[1]), torch.cat(values))
    else:
        chunks = [
            [
                piece.embeddings.to(dtype)
                if isinstance(piece, Slot)
                else lm.embed(torch.tensor(piece, dtype=torch.long, device=device))
                for piece in layout.pieces
            ]
            for layout in layouts
        ]
        embeds = nn.utils.rnn.pad_sequence([torch.cat(c) for c in chunks], batch_first=True, padding_side=side)
    labels = nn.utils.rnn.pad_sequence(
        [torch.tensor(layout.labels, dtype=torch.long, device=device) for layout in layouts],
        batch_first=True,
        padding_value=IGNORE,
        padding_side=side,
    )
    positions = torch.arange(embeds.shape[1], device=device)[None]
    mask = positions >= embeds.shape[1] - lengths[:, None] if left else positions < lengths[:, None]
    return embeds, mask.long(), labels
