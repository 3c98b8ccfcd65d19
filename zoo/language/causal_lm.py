"""The language-model slot: any transformers causal LM, loaded from local files or built at a given size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM

from zoo.distributed import mean_over_ranks
from zoo.language.tokenizers import load_tokenizer
from zoo.registry import register
from zoo.weights import from_local

MAX_MEMOISED_TEXTS = 65536  # a RefCOCO-size set of expressions; the memo restarts when full


@dataclass
class LMArch:
    """Size of a randomly initialised LM (tiny recipes); the family comes from `model_type` (phi, qwen2, ...)."""

    model_type: str = "phi"
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 2048


@dataclass
class LoraSettings:
    """LoRA through peft; `target_modules` may be 'all-linear' or a list of module names."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@register("language_model")
class CausalLM(nn.Module):
    """A Hugging Face causal LM (Phi, Phi-3, Qwen2, ...) with extra tokens, optional LoRA and checkpointing."""

    def __init__(
        self,
        pretrained: str | None = None,
        arch: LMArch | None = None,
        tokenizer: str | None = None,
        extra_tokens: tuple[str, ...] = ("[SEG]",),
        lora: LoraSettings | None = None,
    ) -> None:
        """Give `pretrained` (a Hugging Face id or folder on this machine) or `arch` (random weights)."""
        super().__init__()
        if (pretrained is None) == (arch is None):
            raise ValueError("CausalLM needs exactly one of `pretrained` (local weights) or `arch` (random init)")
        self.tokenizer = load_tokenizer(tokenizer or pretrained)
        self.tokenizer.add_tokens([t for t in extra_tokens if t not in self.tokenizer.get_vocab()])
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if pretrained is not None:
            self.model = from_local(AutoModelForCausalLM.from_pretrained, pretrained, "Language model", pretrained)
        else:
            config = AutoConfig.for_model(
                arch.model_type,
                vocab_size=len(self.tokenizer),
                hidden_size=arch.hidden_size,
                num_hidden_layers=arch.num_hidden_layers,
                num_attention_heads=arch.num_attention_heads,
                num_key_value_heads=arch.num_attention_heads,
                intermediate_size=arch.intermediate_size,
                max_position_embeddings=arch.max_position_embeddings,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            self.model = AutoModelForCausalLM.from_config(config)
        if self.model.get_input_embeddings().num_embeddings < len(self.tokenizer):
            self.model.resize_token_embeddings(len(self.tokenizer))
        if lora is not None:
            from peft import LoraConfig, get_peft_model

            self.model = get_peft_model(
                self.model,
                LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=lora.target_modules,
                ),
            )
        self.hidden_size: int = self.model.config.hidden_size
        self._ids: dict[str, tuple[int, ...]] = {}

    def token_ids(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens (spans are assembled by the bridge).

        Memoised (up to `MAX_MEMOISED_TEXTS`): instructions and category names recur in every batch, and a
        tokenizer call costs more than the embedding lookup it feeds.
        """
        ids = self._ids.get(text)
        if ids is None:
            if len(self._ids) >= MAX_MEMOISED_TEXTS:
                self._ids.clear()
            ids = self._ids[text] = tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(ids)

    def embed(self, ids: Tensor) -> Tensor:
        return self.model.get_input_embeddings()(ids)

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor, labels: Tensor | None = None) -> tuple:
        """Last hidden states [B, T, H], and the next-token loss when `labels` are given (else None).

        The loss is the mean over the predicted tokens of all ranks: transformers divides this rank's sum by
        `num_items_in_batch`, here the rank average of the token counts (a per-rank mean would weigh a token by
        how many its rank happens to hold).
        """
        extra = {}
        if labels is not None:
            tokens = (labels[:, 1:] != -100).sum().float()  # the shifted targets transformers' loss reads
            extra["num_items_in_batch"] = mean_over_ranks(tokens).clamp(min=1e-6)
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            labels=labels,
            output_hidden_states=True,
            use_cache=False,
            **extra,
        )
        return out.hidden_states[-1], out.loss

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        if enabled:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_disable()

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device
