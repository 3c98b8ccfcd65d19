"""Tokenizers: a Hugging Face one from local files, or a word-level one built in-process for tiny recipes."""

from __future__ import annotations

import copy
from functools import cache

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from zoo.weights import MissingWeightsError

SYNTHETIC = "synthetic-words"
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]


@cache
def synthetic_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the synthetic dataset's vocabulary: built locally, nothing to download."""
    from zoo.data.synthetic import VOCABULARY

    vocab = {tok: i for i, tok in enumerate(SPECIAL + sorted(set(VOCABULARY) - set(SPECIAL)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """`synthetic-words`, or a Hugging Face id / folder already on this machine (never downloaded)."""
    if name_or_path == SYNTHETIC:
        # A copy: models add their own tokens, which must not leak into the next model built in this process.
        return copy.deepcopy(synthetic_tokenizer())
    try:
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(
            f"Tokenizer '{name_or_path}' is not on this machine. Put a tokenizer folder there (e.g. the model's "
            f"`save_pretrained` output) or name a local folder in the recipe; zoo never downloads. ({err})"
        ) from None
