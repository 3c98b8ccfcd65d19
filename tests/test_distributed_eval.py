"""Distributed evaluation: 2 CPU ranks (torch.distributed over gloo) give the same numbers as 1 rank, with
uneven shards and metrics (benchmarks, prompt types) that only one rank ever sees."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import ROOT
from tests.test_evaluation import CATEGORIES, SIZE, ClickModel, logit_masks, make_batch, rect
from zoo.callbacks import flat_results
from zoo.cli import ZooCLI
from zoo.evaluation import Evaluator
from zoo.types import Batch, Prediction


def random_objects(g: torch.Generator, count: int) -> list[torch.Tensor]:
    out = []
    for _ in range(count):
        y, x = torch.randint(0, SIZE - 8, (2,), generator=g).tolist()
        h, w = torch.randint(4, 12, (2,), generator=g).tolist()
        out.append(rect(y, y + h, x, x + w))
    return out


def noisy(g: torch.Generator, masks: list[torch.Tensor]) -> torch.Tensor:
    return logit_masks(masks) + 8 * torch.rand(len(masks), SIZE, SIZE, generator=g) - 4


def scenario() -> list[tuple[Batch, Prediction]]:
    """Seven batches of every task; rank 0 of 2 gets batches 0, 2, 4, 6 and rank 1 gets 1, 3, 5."""
    g = torch.Generator().manual_seed(0)
    out = []
    for n in range(3):  # panoptic on two benchmarks, one seen by rank 0 only
        objects = random_objects(g, 4)
        labels = torch.randint(0, 3, (4,), generator=g)
        batch = make_batch(
            "panoptic",
            [torch.stack(objects)],
            [labels],
            conditions=[[c["name"] for c in CATEGORIES]],
            meta=[
                {"benchmark": "coco" if n < 2 else "extra", "image_id": n, "iscrowd": torch.tensor([0, 0, 0, n % 2])}
            ],
        )
        logits = 2 * torch.randn(1, 6, 4, generator=g)
        logits[0, torch.arange(4), labels] += 4
        shifted = [o.roll(tuple(torch.randint(-2, 3, (2,), generator=g).tolist()), (0, 1)) for o in objects]
        masks = noisy(g, shifted + random_objects(g, 2))[None]
        out.append((batch, Prediction(logits=logits, masks=masks)))
    for _ in range(2):  # referring, with gRefCOCO-style no-target samples
        objects = random_objects(g, 3)
        batch = make_batch(
            "referring",
            [objects[0][None], torch.zeros(0, SIZE, SIZE, dtype=torch.bool)],
            [torch.tensor([0]), torch.zeros(0, dtype=torch.long)],
            conditions=[["a"], ["b"]],
            meta=[{"benchmark": "grefcoco", "generalized": True}] * 2,
        )
        logits = torch.randn(2, 3, 1, generator=g) * 2
        out.append((batch, Prediction(logits=logits, masks=noisy(g, objects)[None].expand(2, -1, -1, -1))))
    for kinds in (["point", "box"], ["scribble", "point"]):  # "box" only on rank 0, "scribble" only on rank 1
        objects = random_objects(g, 2)
        batch = make_batch(
            "interactive",
            [torch.stack(objects)],
            [torch.tensor([0, 1])],
            prompts=[torch.stack(objects)],
            prompt_types=[kinds],
        )
        logits = torch.randn(1, 3, 2, generator=g)
        out.append((batch, Prediction(logits=logits, masks=noisy(g, objects + random_objects(g, 1))[None])))
    return out


def evaluate(pairs: list[tuple[Batch, Prediction]]) -> dict[str, float]:
    evaluator = Evaluator(object_threshold=0.3, num_clicks=6)
    evaluator.bind(CATEGORIES)
    for batch, pred in pairs:
        evaluator.update(batch, pred)
        objects = list(batch.masks[0])
        evaluator.rerun(batch, ClickModel([o & rect(0, SIZE, 0, SIZE // 2) for o in objects]))
    return flat_results(evaluator.compute())


def _worker(rank: int, world: int, port: int, path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results = evaluate(scenario()[rank::world])
        Path(f"{path}.{rank}").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one(tmp_path) -> None:
    single = evaluate(scenario())
    path = str(tmp_path / "results")
    # fork: the children inherit the imported modules instead of importing torch, lightning and timm again
    mp.start_processes(_worker, args=(2, _free_port(), path), nprocs=2, join=True, start_method="fork")
    ranks = [json.loads(Path(f"{path}.{r}").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] or all(
        math.isclose(ranks[0][k], ranks[1][k]) or (math.isnan(ranks[0][k]) and math.isnan(ranks[1][k]))
        for k in ranks[0]
    )
    assert set(ranks[0]) == set(single)
    for key, value in single.items():
        assert ranks[0][key] == pytest.approx(value, abs=1e-9, nan_ok=True), key
    # the scenario covers every metric family, and metrics one rank never saw
    for key in ("panoptic/coco/pq", "panoptic/extra/ap", "panoptic/coco/miou", "referring/grefcoco/n_acc"):
        assert key in single
    for key in ("interactive/box_miou", "interactive/scribble_miou", "interactive/noc90"):
        assert key in single
    assert 0 < single["panoptic/coco/pq"] < 1 and 0 < single["panoptic/coco/ap"] < 1
    assert single["interactive/noc85"] > 1


def test_zoo_validate_on_two_cpu_ranks_matches_one(tmp_path) -> None:
    """`zoo validate` of the tiny recipe under Lightning DDP (2 CPU processes) writes the same results.json as one
    process, click simulation included (this once deadlocked: rank 0 alone asked for `trainer.log_dir`)."""
    args = [
        "validate",
        f"--config={ROOT / 'recipes/psalm/tiny.yaml'}",
        "--data.val.init_args.num_images=4",
        "--model.evaluator.init_args.num_clicks=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    ZooCLI(args=[*args, f"--trainer.default_root_dir={tmp_path / '1'}"])  # one rank, in this process
    # two ranks: Lightning's DDP launcher re-runs the command line, so it needs a process of its own
    two_ranks = [f"--trainer.default_root_dir={tmp_path / '2'}", "--trainer.devices=2", "--trainer.strategy=ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "zoo", *args, *two_ranks], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    one, two = (json.loads(next((tmp_path / d).rglob("results.json")).read_text()) for d in ("1", "2"))
    assert one == two
    assert {"panoptic", "referring", "interactive"} <= set(one["metrics"]) and "noc85" in one["metrics"]["interactive"]
