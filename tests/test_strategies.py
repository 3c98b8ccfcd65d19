"""Scaling switches: strategy recipes layer over every family, DDP keeps ranks identical and task-aligned and gives
one process's losses and gradients on the same global batch, and per-part checkpointing / compilation leave the
numbers unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.strategies import FSDPStrategy, Strategy

from tests.cli_helpers import ParseOnly
from tests.conftest import ROOT, TINY_RECIPE
from zoo.cli import ZooCLI
from zoo.data.schema import collate
from zoo.distributed import SizeWrapPolicy
from zoo.performance import checkpoint_parts

STRATEGIES = sorted((ROOT / "recipes" / "_base").glob("strategy_*.yaml"))
STAGES = ["psalm/stage3.yaml", "xsam/stage1.yaml", "xsam/stage3.yaml", "seem/stage3.yaml"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda p: p.stem)
def test_strategy_recipe_layers_over_a_stage(strategy: Path, stage: str) -> None:
    """DeepSpeed is not installed here: its recipe is parsed and type-checked, never run."""
    args = ["--config", str(ROOT / "recipes" / stage), "--config", str(strategy)]
    got = ParseOnly(args=args, run=False).config.trainer
    declared = yaml.safe_load(strategy.read_text())["trainer"]["strategy"]
    assert got.strategy == declared if isinstance(declared, str) else got.strategy.class_path == declared["class_path"]
    assert got.use_distributed_sampler is False  # the task sampler splits batches across ranks


def test_fsdp_recipe_builds_with_original_parameters_and_the_size_policy() -> None:
    """FSDP needs GPUs to run; building its strategy object shows what the run would get."""
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    section = yaml.safe_load((ROOT / "recipes/_base/strategy_fsdp.yaml").read_text())["trainer"]["strategy"]
    strategy = parser.instantiate_classes(parser.parse_object({"strategy": section})).strategy
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True  # frozen and trainable parameters may share a shard
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, SizeWrapPolicy) and policy.min_params == 20_000_000
    big, small = torch.nn.Linear(5000, 5000), torch.nn.Linear(10, 10)
    assert policy(big, recurse=False, nonwrapped_numel=sum(p.numel() for p in big.parameters()))
    assert not policy(small, recurse=False, nonwrapped_numel=sum(p.numel() for p in small.parameters()))


def fit_probed(out: Path, *args: str) -> list[dict]:
    """`zoo fit` of tiny PSALM with the DDP recipe on CPU, 1 epoch, no validation; each rank's `RankProbe` record."""
    probe = out / "probe"
    args = [
        "--config", str(TINY_RECIPE), "--config", str(ROOT / "recipes/_base/strategy_ddp.yaml"),
        f"--trainer.default_root_dir={out}", "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
        "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=tests.ddp_probe.RankProbe", f"--trainer.callbacks.out_dir={probe}", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "zoo", "fit", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return [json.loads(path.read_text()) for path in sorted(probe.glob("rank*.json"))]


def test_ddp_on_two_cpu_processes_keeps_ranks_identical_and_task_aligned(tmp_path: Path) -> None:
    """The real command line, 2 processes over gloo, Swin frozen as in PSALM's joint stage, 2 steps."""
    ranks = fit_probed(
        tmp_path, "--trainer.devices=2", "--trainer.limit_train_batches=2", "--data.batch_size=2",
        "--data.train.init_args.num_images=16", "--model.trainable=[bridge.*,pixel_decoder.*,mask_decoder.*,head.*]",
    )  # fmt: skip
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["tasks"] == ranks[1]["tasks"] and len(ranks[0]["tasks"]) == 2
    assert ranks[0]["before"] == ranks[1]["before"]
    assert ranks[0]["after"] == ranks[1]["after"], "DDP ranks diverged"
    trainable = set(ranks[0]["trainable"])
    assert trainable and not any(n.startswith("encoder.") for n in trainable)
    before, after = ranks[0]["before"], ranks[0]["after"]
    assert all(after[n] == before[n] for n in after if n not in trainable), "a frozen parameter moved"
    assert sum(after[n] != before[n] for n in trainable) > len(trainable) // 2, "training did not update weights"


def test_two_cpu_processes_give_the_loss_and_gradients_of_one_process_on_the_same_global_batch(
    tmp_path: Path,
) -> None:
    """2 DDP processes of 2 samples against 1 process of 4: every logged loss term and every gradient is the same.

    The learning rate is 0, so each step sees the initial weights and is a first step; with one image, one
    expression per image and one round, the 4 global batches are one per task (panoptic, referring, interactive,
    caption), which covers the softmax and sigmoid class terms, padded visual prompts and the LM's token mean.
    BatchNorm is held on its running statistics (tests.ddp_probe.BatchNormOnRunningStats): SyncBatchNorm, which GPU
    recipes use, has no CPU kernels, and per-rank batch statistics differ from the global batch's by design.
    """
    # Data seed 1 splits every global batch unevenly: the ranks hold 8 and 11 panoptic targets, visual prompts
    # 6 + 5 and 5 + 3 (so padded to 6 and 5), and captions of 30 and 24 words.
    common = (
        "--trainer.limit_train_batches=4", "--data.train.init_args.num_images=4", "--data.train.init_args.seed=1",
        "--data.train.init_args.max_expressions=1", "--data.train.init_args.max_prompts=8",
        "--data.train.init_args.rounds=1", "--model.optimizer.init_args.lr=0",
        "--trainer.callbacks+=tests.ddp_probe.BatchNormOnRunningStats",
    )  # fmt: skip
    (one,) = fit_probed(tmp_path / "one", "--trainer.devices=1", "--data.batch_size=4", *common)
    two = fit_probed(tmp_path / "two", "--trainer.devices=2", "--data.batch_size=2", *common)
    assert sorted(one["tasks"]) == ["caption", "interactive", "panoptic", "referring"]
    assert [r["world_size"] for r in two] == [2, 2]
    for rank in two:
        assert rank["tasks"] == one["tasks"]
        for step, (want, got) in enumerate(zip(one["losses"], rank["losses"], strict=True)):
            assert got.keys() == want.keys() and "train/loss" in want
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-5), f"step {step} ({one['tasks'][step]}): {key}"
    # DDP averages the ranks' gradients. A gradient that is zero in exact arithmetic (a bias ahead of a
    # normalisation) is float noise of either run, hence the floor relative to the step's largest gradient.
    for step, (want, got) in enumerate(zip(one["grads"], two[0]["grads"], strict=True)):
        assert got.keys() == want.keys()
        floor = 1e-6 * max(want.values())
        for name, norm in want.items():
            assert got[name] == pytest.approx(norm, rel=1e-5, abs=floor), f"step {step}: gradient of {name}"


def tiny_module(*extra: str):
    """The tiny PSALM module and one panoptic batch from its training set."""
    cli = ZooCLI(args=["--config", str(TINY_RECIPE), "--data.train.init_args.num_images=4", *extra], run=False)
    samples = [s for s in (cli.datamodule.train[i] for i in range(4)) if s.task == "panoptic"]
    return cli.model, collate(samples[:2] or [cli.datamodule.train[0]])


def loss_and_grads(module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)  # the same sampled points for both runs
    loss = sum(module._losses(batch, module(batch)).values())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_checkpointed_parts_recompute_and_give_the_same_gradients() -> None:
    eager, batch = tiny_module()
    want_loss, want = loss_and_grads(eager, batch)
    module, _ = tiny_module("--model.gradient_checkpointing=[pixel_decoder,mask_decoder,bridge.lm]")
    module.load_state_dict(eager.state_dict())
    calls = []
    module.net.pixel_decoder.encoder.register_forward_hook(lambda *_: calls.append(1))
    got_loss, got = loss_and_grads(module, batch)
    assert len(calls) == 2, "a checkpointed part runs again in backward"
    assert module.net.bridge.lm.model.is_gradient_checkpointing  # the LM checkpoints its own layers
    torch.testing.assert_close(got_loss, want_loss)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_compiled_decoders_give_the_eager_loss() -> None:
    """torch.compile through AOT autograd without code generation (inductor would take minutes on this CPU)."""
    eager, batch = tiny_module()
    want_loss, want = loss_and_grads(eager, batch)
    module, _ = tiny_module(
        "--model.compile_parts=[pixel_decoder,mask_decoder]", "--model.compile_options={backend: aot_eager}"
    )
    module.load_state_dict(eager.state_dict())  # compiling in place keeps parameter names
    assert module.net.mask_decoder._compiled_call_impl is not None
    got_loss, got = loss_and_grads(module, batch)
    torch.testing.assert_close(got_loss, want_loss, atol=1e-5, rtol=1e-5)
    for name in ("net.pixel_decoder.mask_projection.weight", "net.mask_decoder.query_embed.weight"):
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4)


def test_unknown_part_is_named_in_the_error() -> None:
    net = torch.nn.Module()
    net.pixel_decoder = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="part 'pixel_decodr'.*pixel_decoder"):
        checkpoint_parts(net, ["pixel_decodr"])
