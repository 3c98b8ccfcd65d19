"""SEEM's bridge: no language model; a text encoder embeds class names and expressions, visual prompts pass on."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from zoo.bridges.base import Bridge
from zoo.language.text_encoder import TextEncoder
from zoo.registry import register
from zoo.tasks import is_prompted, task_spec
from zoo.types import Batch, BridgeOutput, Dims, PromptInputs


@register("bridge")
class TextPrompts(Bridge):
    """Conditions from a CLIP-style text encoder in the decoder's width; prompts for a prompt-mixing decoder.

    Panoptic: the category names in prompt templates plus `background` as the last text class (SEEM scores the
    no-object column against it). Referring: each expression's sentence embedding is a condition and its token
    embeddings become the decoder's grounding tokens. Visual-prompt tasks (interactive, VGD): the visual prompts,
    negative clicks and previous masks go to the decoder as they are; expressions given with them become grounding
    tokens too (composition).
    """

    produces = frozenset({"prompts"})

    def __init__(self, dims: Dims, text_encoder: Callable[[int], TextEncoder], background: str = "background") -> None:
        super().__init__()
        self.text = text_encoder(dims.decoder_dim)
        self.background = background

    def forward(self, batch: Batch, features: dict[str, Tensor]) -> BridgeOutput:
        if not task_spec(batch.task).segments:
            raise ValueError(f"TextPrompts has no language model, so it cannot serve task '{batch.task}'")
        prompts = PromptInputs(task=batch.task)
        conditions = condition_mask = None
        if batch.task == "panoptic":
            vocabularies = dict.fromkeys(tuple(names) for names in batch.conditions)  # encode each list once
            table = {names: self.text.class_embeddings([*names, self.background]) for names in vocabularies}
            embeds = [table[tuple(names)] for names in batch.conditions]
            conditions, condition_mask = _pad(embeds)
        elif any(batch.conditions):
            sentences, tokens = self._expressions(batch.conditions)
            prompts.tokens, prompts.token_mask = _pad(tokens)
            conditions, condition_mask = _pad(sentences)
        if is_prompted(batch.task):
            prompts.positive = batch.prompts
            prompts.negative = batch.negative_prompts
            prompts.previous = batch.previous_masks
        return BridgeOutput(conditions=conditions, condition_mask=condition_mask, prompts=prompts)

    def _expressions(self, conditions: list[list[str]]) -> tuple[list[Tensor], list[Tensor]]:
        """Per sample: sentence embeddings [K, D] and the real tokens of all its expressions, concatenated [T, D]."""
        flat = [text for texts in conditions for text in texts]
        tokens, mask, sentences = self.text(flat)
        out_sentences, out_tokens, start = [], [], 0
        for texts in conditions:
            end = start + len(texts)
            out_sentences.append(sentences[start:end])
            out_tokens.append(tokens[start:end][mask[start:end]])
            start = end
        return out_sentences, out_tokens


def _pad(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-pad per-sample [n_b, D] rows to [B, max n, D], with a [B, max n] mask of the real ones."""
    padded = nn.utils.rnn.pad_sequence(rows, batch_first=True)
    lengths = torch.tensor([len(r) for r in rows], device=padded.device)
    return padded, torch.arange(padded.shape[1], device=padded.device)[None] < lengths[:, None]
