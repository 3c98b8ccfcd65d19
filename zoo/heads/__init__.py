"""Bridges, class heads, language models and tokenizers."""

from zoo.heads.bridges import Bridge, LearnedQueries, LLMQueries
from zoo.heads.class_heads import ConditionHead, Head, LinearClassHead
from zoo.heads.cosine_head import CosineHead
from zoo.heads.language_model import CausalLM, LMArch, LoraSettings
from zoo.heads.prompt_sampler import PointSampler
from zoo.heads.seg_add import SegAdd
from zoo.heads.similarity import TextSimilarityHead
from zoo.heads.text_encoder import TextArch, TextEncoder
from zoo.heads.text_prompts import TextPrompts

__all__ = [
    "Bridge",
    "CausalLM",
    "ConditionHead",
    "CosineHead",
    "Head",
    "LLMQueries",
    "LMArch",
    "LearnedQueries",
    "LinearClassHead",
    "LoraSettings",
    "PointSampler",
    "SegAdd",
    "TextArch",
    "TextEncoder",
    "TextPrompts",
    "TextSimilarityHead",
]
