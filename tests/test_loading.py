"""Weights load through the same code paths full recipes use, from files the test saves itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.conftest import tiny_encoder_args
from zoo.encoders import TimmEncoder
from zoo.language import CausalLM, LMArch
from zoo.language.tokenizers import load_tokenizer
from zoo.weights import MissingWeightsError


def test_transformers_model_saved_locally_loads_like_a_full_recipe(tmp_path: Path) -> None:
    built = CausalLM(
        arch=LMArch(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        tokenizer="synthetic-words",
    )
    built.model.save_pretrained(tmp_path / "lm")
    built.tokenizer.save_pretrained(tmp_path / "lm")
    loaded = CausalLM(pretrained=str(tmp_path / "lm"))  # what `pretrained: weights/phi-1_5` does
    for (name, a), (_, b) in zip(built.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.token_ids("red circle") == built.token_ids("red circle")
    ids = torch.tensor([built.token_ids("the red circle")])
    emb = built.embed(ids)
    torch.testing.assert_close(built(emb, torch.ones_like(ids))[0], loaded(loaded.embed(ids), torch.ones_like(ids))[0])


def test_lora_wraps_the_language_model_and_trains_only_adapters() -> None:
    from zoo.language import LoraSettings

    lm = CausalLM(
        arch=LMArch(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        tokenizer="synthetic-words",
        lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any("q_proj" in n for n in trainable) and not any("fc1" in n for n in trainable)


def test_timm_encoder_loads_a_local_weights_file(tmp_path: Path) -> None:
    reference = timm.create_model(pretrained=False, **tiny_encoder_args())
    save_file(reference.state_dict(), tmp_path / "swin.safetensors")
    enc = TimmEncoder(weights=str(tmp_path / "swin.safetensors"), **tiny_encoder_args())
    ref_state = reference.state_dict()
    loaded = enc.body.state_dict()
    assert len(loaded) > 20
    for name, value in loaded.items():  # features_only renames `layers.0` to `layers_0`
        assert torch.equal(value, ref_state[name.replace("layers_", "layers.")]), name


def test_missing_weights_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="not on this machine.*set `pretrained: DIR`"):
        CausalLM(pretrained=str(tmp_path / "phi-1_5"), tokenizer="synthetic-words")
    with pytest.raises(MissingWeightsError, match="swin.pth' not found"):
        TimmEncoder(weights=str(tmp_path / "swin.pth"), **tiny_encoder_args())
    with pytest.raises(MissingWeightsError, match="Tokenizer 'nowhere/tok' is not on this machine"):
        CausalLM(arch=LMArch(), tokenizer="nowhere/tok")


def test_synthetic_tokenizer_covers_the_dataset_vocabulary() -> None:
    from zoo.data import VOCABULARY

    tok = load_tokenizer("synthetic-words")
    ids = tok(" ".join(VOCABULARY), add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == len(VOCABULARY)
