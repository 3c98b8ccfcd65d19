"""Bridges: how language conditions the masks (learned queries, LLM queries, SEG-add, text prompts)."""

from zoo.bridges.base import Bridge
from zoo.bridges.learned_queries import LearnedQueries
from zoo.bridges.llm_queries import LLMQueries
from zoo.bridges.seg_add import SegAdd
from zoo.bridges.text_prompts import TextPrompts

__all__ = ["Bridge", "LLMQueries", "LearnedQueries", "SegAdd", "TextPrompts"]
