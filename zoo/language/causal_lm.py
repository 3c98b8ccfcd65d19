"""The language-model slot: any transformers causal LM, loaded from local files or built at a given size."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

from zoo.distributed import mean_over_ranks
from zoo.language.generation import Generated, GenerationSettings
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
        self._match_embeddings()
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
        self._encoded: dict[str, tuple[tuple[int, ...], tuple[tuple[int, int], ...]]] = {}

    def _match_embeddings(self) -> None:
        """Grow the embedding table to the tokenizer (the one place tokens and embeddings are kept in step)."""
        if self.model.get_input_embeddings().num_embeddings < len(self.tokenizer):
            self.model.resize_token_embeddings(len(self.tokenizer))

    def add_tokens(self, tokens: Iterable[str]) -> None:
        """Make each of `tokens` one token (a chat template's markers), with a new embedding row where needed."""
        missing = [t for t in dict.fromkeys(tokens) if t not in self.tokenizer.get_vocab()]
        if missing:
            self.tokenizer.add_tokens(missing)
            self._encoded.clear()  # texts holding these tokens now split differently
            self._match_embeddings()

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of `text` without special tokens added, and each token's character span in `text`.

        Memoised (up to `MAX_MEMOISED_TEXTS`): instructions and category names recur in every batch, and a
        tokenizer call costs more than the embedding lookup it feeds.
        """
        encoded = self._encoded.get(text)
        if encoded is None:
            if len(self._encoded) >= MAX_MEMOISED_TEXTS:
                self._encoded.clear()
            out = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            encoded = self._encoded[text] = (tuple(out["input_ids"]), tuple(map(tuple, out["offset_mapping"])))
        return list(encoded[0]), list(encoded[1])

    def token_ids(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens added (memoised, see `tokenize`)."""
        return self.tokenize(text)[0]

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

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor,
        settings: GenerationSettings | None = None,
        stop: Sequence[str] = (),
    ) -> Generated:
        """Answers to left-padded prompts [B, T, H] (mask [B, T]), decoded with a KV cache; see `Generated`.

        Generation ends at EOS or a `stop` token. A captured token's hidden state is the one the model computes
        when that token is fed back in (as in a teacher-forced pass over the answer), so one step past the
        budget is run to have it for a captured token generated last.
        """
        settings = settings or GenerationSettings()
        vocab = self.tokenizer.get_vocab()
        unknown = [t for t in settings.capture if t not in vocab]
        if unknown:
            raise ValueError(f"capture tokens {unknown} are not in the tokenizer; add them to `extra_tokens`")
        stops = [self.tokenizer.eos_token_id, *(vocab[t] for t in stop if t in vocab)]
        captured = {vocab[t] for t in settings.capture} - set(stops)
        sampling = {}
        if settings.do_sample:
            sampling = {"temperature": settings.temperature, "top_k": settings.top_k, "top_p": settings.top_p}
        config = GenerationConfig(
            max_new_tokens=settings.max_new_tokens + bool(captured),
            do_sample=settings.do_sample,
            repetition_penalty=settings.repetition_penalty,
            eos_token_id=stops,
            pad_token_id=self.tokenizer.pad_token_id,
            output_hidden_states=bool(captured),
            return_dict_in_generate=True,
            **sampling,
        )
        out = self.model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, generation_config=config)
        result = Generated(texts=[], token_ids=[])
        for b, row in enumerate(out.sequences[:, : settings.max_new_tokens].tolist()):
            end = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
            ids = row[:end]
            text_ids = ids[:-1] if ids and ids[-1] in stops else ids
            result.texts.append(self.tokenizer.decode(text_ids, skip_special_tokens=False))
            result.token_ids.append(ids)
            if captured:
                where = [i for i, t in enumerate(ids) if t in captured]
                # Step i + 1 feeds token i back in; its last layer's state at that token is the token's state.
                states = [out.hidden_states[i + 1][-1][b, -1] for i in where]
                result.captured.append(where)
                result.hidden.append(torch.stack(states) if states else inputs_embeds.new_zeros(0, self.hidden_size))
        return result

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        if enabled:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_disable()

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device
