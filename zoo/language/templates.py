"""Chat templates: the text a model was tuned to see around each user and assistant turn.

A template is four pieces of text around a turn's content: the first user turn (which carries the system text),
later user turns, the assistant turn (content plus the tokens that close it, all trained on) and a separator
after each answer (not trained on). A user piece ends with whatever opens the answer, so a conversation cut after
a user piece is the prompt a model generates from. `{content}`, `{system}`, `{bos}` and `{eos}` are filled in;
any other text is literal.

Built in: `minimal` (no text at all: the bare turns, as the tiny recipes lay them out), PSALM's `llava_phi` and
X-SAM's `phi3_chat` as published, and `tokenizer`: the model's own chat template (`tokenizer.chat_template`).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from zoo.registry import unknown_message


@dataclass(frozen=True)
class ChatTemplate:
    """The text around the turns of a conversation; see the module docstring."""

    name: str
    first_user: str = "{content}"
    user: str = "{content}"
    assistant: str = "{content}"
    separator: str = ""
    system: str = ""  # the default system text
    system_format: str = "{system}"  # how a non-empty system text is written into `first_user`'s {system}
    stop: tuple[str, ...] = ()  # tokens besides EOS that end a generated answer
    special_tokens: tuple[str, ...] = ()  # tokens the template writes that the tokenizer must know as one token

    def __post_init__(self) -> None:
        for piece in ("first_user", "user", "assistant"):
            if getattr(self, piece).count("{content}") != 1:
                raise ValueError(f"template '{self.name}': `{piece}` needs exactly one {{content}}")


MINIMAL = ChatTemplate("minimal")

# psalm/conversation.py `conv_llava_phi` (SeparatorStyle.LLAMA_2, sep = sep2 = "<|endoftext|>"): the first turn is
# "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]", later ones "<|endoftext|>[INST] {user} [/INST]", each
# answer " {assistant} <|endoftext|>". The space opening the answer is kept with the prompt (LLaVA masks it).
LLAVA_PHI = ChatTemplate(
    name="llava_phi",
    first_user="[INST] {system}{content} [/INST] ",
    user="<|endoftext|>[INST] {content} [/INST] ",
    assistant="{content} <|endoftext|>",
    system=(
        "You are a helpful language and vision assistant. You are able to understand the visual content that the "
        "user provides, and assist the user with a variety of tasks using natural language."
    ),
    system_format="<<SYS>>\n{system}\n<</SYS>>\n\n",
    special_tokens=("<|endoftext|>",),
)

# xtuner's PROMPT_TEMPLATE.phi3_chat as X-SAM uses it (configs/xsam/*: SYSTEM = ""): BOS opens the conversation
# (xtuner's encode_fn), "<|user|>\n{input}<|end|>\n<|assistant|>\n" per turn, the answer closed by "<|end|>" (trained
# on: SUFFIX_AS_EOS) and "\n" after it (SEP, not trained on).
PHI3_CHAT = ChatTemplate(
    name="phi3_chat",
    first_user="{bos}{system}<|user|>\n{content}<|end|>\n<|assistant|>\n",
    user="<|user|>\n{content}<|end|>\n<|assistant|>\n",
    assistant="{content}<|end|>",
    separator="\n",
    system_format="<|system|>\n{system}<|end|>\n",
    stop=("<|end|>",),
    special_tokens=("<|user|>", "<|assistant|>", "<|system|>", "<|end|>"),
)

TEMPLATES = {t.name: t for t in (MINIMAL, LLAVA_PHI, PHI3_CHAT)}
TOKENIZER = "tokenizer"  # the name that picks the tokenizer's own chat template


def chat_template(name: str, tokenizer: PreTrainedTokenizerBase) -> ChatTemplate:
    """The template called `name`: a built-in one, or `tokenizer` for the tokenizer's own."""
    if name == TOKENIZER:
        return from_tokenizer(tokenizer)
    if name not in TEMPLATES:
        raise ValueError(unknown_message("chat template", name, [*TEMPLATES, TOKENIZER]))
    return TEMPLATES[name]


_SENTINELS = ("ZOOUSERONE", "ZOOASSISTANTONE", "ZOOUSERTWO", "ZOOASSISTANTTWO")


def from_tokenizer(tokenizer: PreTrainedTokenizerBase) -> ChatTemplate:
    """The tokenizer's own chat template in this form, read off a rendered two-round conversation.

    Words stand in for the four turns; the text between them is the template's. What closes the last answer
    splits into the tokens trained on and the trailing whitespace (the separator); the text between the first
    answer and the second question is that closing text followed by the later user turns' opening.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("template 'tokenizer' needs a tokenizer with a chat template; this one has none")
    roles = ("user", "assistant", "user", "assistant")
    messages = [{"role": r, "content": s} for r, s in zip(roles, _SENTINELS, strict=True)]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    cuts = [text.find(s) for s in _SENTINELS]
    if -1 in cuts or cuts != sorted(cuts):
        raise ValueError(
            f"could not read the tokenizer's chat template: it does not write its turns in order: {text!r}"
        )
    ends = [c + len(s) for c, s in zip(cuts, _SENTINELS, strict=True)]
    opening, first_gap, between, second_gap, closing = (
        text[: cuts[0]],
        text[ends[0] : cuts[1]],
        text[ends[1] : cuts[2]],
        text[ends[2] : cuts[3]],
        text[ends[3] :],
    )
    suffix = closing.rstrip()
    if not between.startswith(closing):
        raise ValueError(f"could not read the tokenizer's chat template: rounds are not joined alike: {text!r}")
    special = {t for t in tokenizer.all_special_tokens} | set(tokenizer.get_added_vocab())
    return ChatTemplate(
        name=TOKENIZER,
        first_user=_escape(opening) + "{content}" + _escape(first_gap),
        user=_escape(between[len(closing) :]) + "{content}" + _escape(second_gap),
        assistant="{content}" + _escape(suffix),
        separator=closing[len(suffix) :],
        stop=tuple(t for t in special if t and t in suffix and t != tokenizer.eos_token),
    )


def _escape(text: str) -> str:
    """Literal template text: braces doubled so the fields filled later cannot be mistaken in it."""
    return text.replace("{", "{{").replace("}", "}}")
