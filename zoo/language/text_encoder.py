"""A CLIP-style text encoder: sentences and class names into the joint visual-semantic space (SEEM, X-Decoder).

The transformer is transformers' `CLIPTextModel` (causal, QuickGELU, final LayerNorm), loaded from local files or
built at a given size; `proj` is SEEM's `lang_proj` into the decoder's width. A sentence is the hidden state of its
end-of-text token, the tokens are all hidden states, both projected. Class names are wrapped in prompt templates:
one random template per name while training (augmentation), the normalised mean over all templates at evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import CLIPTextConfig, CLIPTextModel

from zoo.language.tokenizers import load_tokenizer
from zoo.registry import register
from zoo.weights import from_local

# CLIP's ImageNet prompt templates, the subset X-Decoder / SEEM's prompt engineering draws from.
CLIP_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a good photo of a {}.",
    "a close-up photo of the {}.",
    "a cropped photo of the {}.",
    "a bright photo of a {}.",
    "a photo of one {}.",
    "there is a {} in the scene.",
    "this is a {}.",
)


@dataclass
class TextArch:
    """Size of a randomly initialised CLIP text transformer (SEEM's: 12 layers, width 512, 8 heads)."""

    hidden_size: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    max_position_embeddings: int = 77


@register("language_model")
class TextEncoder(nn.Module):
    """CLIP-style text transformer + projection: token and sentence embeddings in the decoder's width."""

    def __init__(
        self,
        embed_dim: int,
        pretrained: str | None = None,
        arch: TextArch | None = None,
        tokenizer: str | None = None,
        templates: tuple[str, ...] = CLIP_TEMPLATES,
    ) -> None:
        """Give `pretrained` (a local `CLIPTextModel` folder or Hugging Face id already on disk) or `arch`.

        `embed_dim` is the joint space's width, given by the part that owns the encoder (the decoder's width).
        """
        super().__init__()
        if (pretrained is None) == (arch is None):
            raise ValueError("TextEncoder needs exactly one of `pretrained` (local weights) or `arch` (random init)")
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"every prompt template needs a '{{}}' slot for the class name, got {templates}")
        self.tokenizer = load_tokenizer(tokenizer or pretrained)
        if pretrained is not None:
            self.model = from_local(
                CLIPTextModel.from_pretrained, pretrained, "Text encoder", "openai/clip-vit-base-patch32"
            )
        else:
            tok = self.tokenizer
            config = CLIPTextConfig(
                vocab_size=len(tok),
                hidden_size=arch.hidden_size,
                intermediate_size=arch.intermediate_size,
                num_hidden_layers=arch.num_hidden_layers,
                num_attention_heads=arch.num_attention_heads,
                max_position_embeddings=arch.max_position_embeddings,
                pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
            )
            self.model = CLIPTextModel(config)
        self.context_length = self.model.config.max_position_embeddings
        self.proj = nn.Linear(self.model.config.hidden_size, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=self.model.config.hidden_size**-0.5)
        self.templates = tuple(templates)
        self._cache: dict[tuple[str, ...], Tensor] = {}

    def train(self, mode: bool = True) -> TextEncoder:
        self._cache.clear()  # cached evaluation embeddings go stale once the weights can change
        return super().train(mode)

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def _ids(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Token ids [N, T] wrapped in begin/end-of-text and right-padded, and lengths [N]."""
        tok = self.tokenizer
        rows = []
        for text in texts:
            body = tok(text, add_special_tokens=False)["input_ids"][: self.context_length - 2]
            rows.append(torch.tensor([tok.bos_token_id, *body, tok.eos_token_id], dtype=torch.long))
        lengths = torch.tensor([len(r) for r in rows])
        ids = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=tok.pad_token_id)
        return ids.to(self.device), lengths.to(self.device)

    def forward(self, texts: list[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Token embeddings [N, T, D], their mask [N, T] (True = real token) and sentence embeddings [N, D]."""
        if not texts:
            raise ValueError("TextEncoder got no texts to encode")
        ids, lengths = self._ids(texts)
        mask = torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        tokens = self.proj(hidden)
        sentences = tokens[torch.arange(len(texts), device=ids.device), lengths - 1]  # the end-of-text token
        return tokens, mask, sentences

    def class_embeddings(self, names: list[str]) -> Tensor:
        """Unit-norm embeddings [K, D] of class names in prompt templates (random in training, averaged in eval)."""
        if self.training:
            picks = torch.randint(len(self.templates), (len(names),)).tolist()  # torch's RNG: seeded per step
            texts = [self.templates[i].format(n) for i, n in zip(picks, names, strict=True)]
            return F.normalize(self(texts)[2], dim=-1)
        key = tuple(names)
        if key not in self._cache:
            with torch.no_grad():
                texts = [t.format(n) for n in names for t in self.templates]
                per_template = F.normalize(self(texts)[2], dim=-1).view(len(names), len(self.templates), -1)
                self._cache[key] = F.normalize(per_template.mean(1), dim=-1)
        return self._cache[key]
