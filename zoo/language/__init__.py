"""Language parts: the causal LM (+LoRA, generation), CLIP-style text encoders, tokenizers, chat templates, task
texts and the sequence builder the LLM bridges share."""

from zoo.language.causal_lm import CausalLM, LMArch, LoraSettings
from zoo.language.generation import Generated, GenerationSettings
from zoo.language.sequence import IGNORE, SequenceBuilder, SequenceLayout, embed_batch
from zoo.language.templates import ChatTemplate, chat_template
from zoo.language.text_encoder import TextArch, TextEncoder
from zoo.language.texts import TaskTexts, task_texts
from zoo.language.tokenizers import load_tokenizer, register_vocabulary, word_level_tokenizer

__all__ = [
    "IGNORE",
    "CausalLM",
    "ChatTemplate",
    "Generated",
    "GenerationSettings",
    "LMArch",
    "LoraSettings",
    "SequenceBuilder",
    "SequenceLayout",
    "TaskTexts",
    "TextArch",
    "TextEncoder",
    "chat_template",
    "embed_batch",
    "load_tokenizer",
    "register_vocabulary",
    "task_texts",
    "word_level_tokenizer",
]
