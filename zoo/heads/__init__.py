"""Class heads: score each query against the conditions (or a closed category set)."""

from zoo.heads.class_heads import ConditionHead, Head, LinearClassHead
from zoo.heads.cosine_head import CosineHead
from zoo.heads.similarity import TextSimilarityHead

__all__ = ["ConditionHead", "CosineHead", "Head", "LinearClassHead", "TextSimilarityHead"]
