"""Bridges, class heads, language models and tokenizers."""

from zoo.heads.bridges import Bridge, LearnedQueries, LLMQueries
from zoo.heads.class_heads import ConditionHead, Head, LinearClassHead
from zoo.heads.language_model import CausalLM, LMArch, LoraSettings

__all__ = [
    "Bridge",
    "CausalLM",
    "ConditionHead",
    "Head",
    "LLMQueries",
    "LMArch",
    "LearnedQueries",
    "LinearClassHead",
    "LoraSettings",
]
