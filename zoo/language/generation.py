"""Generation settings a recipe sets, and what a generation returns (text, token ids, hidden states)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class GenerationSettings:
    """How a language model answers at validation, test and predict time; greedy unless `do_sample`.

    `capture` names tokens (e.g. `[SEG]`) whose last-layer hidden states are returned wherever they are
    generated, for a bridge to turn into decoder prompts.
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    capture: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")


@dataclass
class Generated:
    """Per sample: the answer's text (without the token that ended it), its token ids (with that token, when
    one did), and the hidden states [n, H] of the captured tokens at `captured` (indices into the ids)."""

    texts: list[str]
    token_ids: list[list[int]]
    hidden: list[Tensor] = field(default_factory=list)
    captured: list[list[int]] = field(default_factory=list)
