"""Language parts: the causal LM (+LoRA), CLIP-style text encoders and tokenizers."""

from zoo.language.causal_lm import CausalLM, LMArch, LoraSettings
from zoo.language.text_encoder import TextArch, TextEncoder
from zoo.language.tokenizers import load_tokenizer, register_vocabulary, word_level_tokenizer

__all__ = [
    "CausalLM",
    "LMArch",
    "LoraSettings",
    "TextArch",
    "TextEncoder",
    "load_tokenizer",
    "register_vocabulary",
    "word_level_tokenizer",
]
