"""Tokenizers: a Hugging Face one from local files, or a word-level one built in-process for tiny recipes."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from zoo.weights import MissingWeightsError

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]
# Word lists a recipe may name as its tokenizer (`tokenizer: synthetic-words`); a dataset registers its own, so
# the language side never imports the data side.
_VOCABULARIES: dict[str, tuple[str, ...]] = {}
_BUILT: dict[str, PreTrainedTokenizerFast] = {}


def register_vocabulary(name: str, words: Sequence[str]) -> None:
    """Make `name` a tokenizer recipes can use: a word-level tokenizer over `words`."""
    words = tuple(words)
    if _VOCABULARIES.get(name, words) != words:
        raise ValueError(f"vocabulary '{name}' is registered twice with different words")
    _VOCABULARIES[name] = words


def word_level_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace, word-level tokenizer over `vocabulary` (special tokens first, then the words sorted)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL + sorted(set(vocabulary) - set(SPECIAL)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A registered vocabulary's word-level tokenizer, or a Hugging Face id / folder already on this machine."""
    if name_or_path in _VOCABULARIES:
        if name_or_path not in _BUILT:
            _BUILT[name_or_path] = word_level_tokenizer(_VOCABULARIES[name_or_path])
        # A copy: models add their own tokens, which must not leak into the next model built in this process.
        return copy.deepcopy(_BUILT[name_or_path])
    try:
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            f"Tokenizer '{name_or_path}' is not on this machine. Put a tokenizer folder there (e.g. the model's "
            f"`save_pretrained` output) or name a local folder in the recipe; zoo never downloads. ({err}) "
            f"Word-level vocabularies built in-process: {', '.join(sorted(_VOCABULARIES))}."
        ) from None
