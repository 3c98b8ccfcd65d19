"""Training-step speed of any recipe at full size with random weights: samples/s, peak memory, MFU, per-part times.

    python benchmarks/train_step.py --config recipes/xsam/stage1.yaml          # GPU: bf16, batch 4, 1024 px
    python benchmarks/train_step.py --smoke                                      # CPU: tiny PSALM, the same table
    python benchmarks/train_step.py --flops-only --config recipes/psalm/stage3.yaml  # CPU: FLOPs at full size
    python benchmarks/train_step.py --config recipes/psalm/stage3.yaml --set model.gradient_checkpointing=false

Weights named by a recipe (`pretrained:` folders, timm `weights:` files) are replaced by random weights of the same
architecture (RANDOM_ARCHS), so nothing is downloaded. Steps (forward + criterion + backward + optimizer, the
recipe's own optimizer, e.g. fused AdamW) are timed with CUDA events after warm-up. The per-part rows time each
part alone, forward and backward, on the inputs it received in a real step (gradients flow into inputs that need
them, as in the step); "other" is the step minus those parts (bridge glue, matching, launch gaps). FLOPs come from
torch.utils.flop_counter over one step (matmuls, convolutions, attention; not grid_sample / deformable sampling).
MFU divides the step's FLOP rate by the bf16 matmul rate measured on the same GPU (and by `--peak-tflops` if given).
`--flops-only` counts FLOPs on the CPU without doing the matmuls (their outputs are shaped zeros), at batch 1 x batch
size, for the full-size recipes a CPU cannot run.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from zoo.cli import ZooCLI
from zoo.data.dataset import SyntheticSegmentation
from zoo.data.schema import collate
from zoo.encoders.base import Encoder
from zoo.types import Batch

ROOT = Path(__file__).resolve().parents[1]

# Published sizes of the weights full recipes name (by folder name), built at random instead of loaded.
RANDOM_ARCHS: dict[str, dict[str, Any]] = {
    "phi-1_5": dict(model_type="phi", hidden_size=2048, num_hidden_layers=24, num_attention_heads=32,
                    intermediate_size=8192, vocab_size=51200),
    "Phi-3-mini-4k-instruct": dict(model_type="phi3", hidden_size=3072, num_hidden_layers=32, num_attention_heads=32,
                                   intermediate_size=8192, max_position_embeddings=4096, vocab_size=32064),
    "Qwen2.5-1.5B-Instruct": dict(model_type="qwen2", hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                                  intermediate_size=8960, vocab_size=151936),
    "Qwen2.5-3B-Instruct": dict(model_type="qwen2", hidden_size=2048, num_hidden_layers=36, num_attention_heads=16,
                                intermediate_size=11008, vocab_size=151936),
    "sam-vit-large": {},  # SamViTArch's defaults are ViT-L
    "siglip2-so400m-patch14-384": {},  # SiglipArch's defaults are so400m/14 at 384
    "clip-vit-base-patch32": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                                  num_attention_heads=8),
}  # fmt: skip

# Which parts of `net` each row of the table sums (missing ones are skipped); the criterion joins the mask decoder.
BUCKETS = {
    "encoders": ["encoder"],
    "projectors / connector": ["connector", "bridge.projector", "bridge.extra_projector", "bridge.llm_projector"],
    "language model": ["bridge.lm", "bridge.text_encoder"],
    "pixel decoder": ["pixel_decoder"],
    "mask decoder + loss": ["mask_decoder", "head", "criterion"],
}


def randomise(node: Any, vocab_sizes: list[int]) -> None:
    """Swap every `pretrained` weight folder in a parsed config for random weights at its published size."""
    if isinstance(node, Namespace):
        args = node.get("init_args")
        if isinstance(args, Namespace) and args.get("pretrained"):
            name = Path(args.pretrained).name
            if name not in RANDOM_ARCHS:
                raise SystemExit(f"no random-weight size known for '{args.pretrained}'; add it to RANDOM_ARCHS")
            arch = dict(RANDOM_ARCHS[name])
            if "vocab_size" in arch:
                vocab_sizes.append(arch.pop("vocab_size"))
            if "tokenizer" in args:
                args.tokenizer = "synthetic-words"
            args.pretrained, args.arch = None, Namespace(**arch)
        if isinstance(args, Namespace) and args.get("weights"):
            args.weights = None  # timm encoders: random init
        for value in vars(node).values():
            randomise(value, vocab_sizes)
    elif isinstance(node, list | tuple | dict):
        for value in node.values() if isinstance(node, dict) else node:
            randomise(value, vocab_sizes)


class RandomWeightsCLI(ZooCLI):
    """Parses recipes as `zoo fit` does, then builds only the module, with random weights and no datasets."""

    def before_instantiate_classes(self) -> None:
        self.vocab_sizes: list[int] = []
        randomise(self.config.model, self.vocab_sizes)
        self.config.model.init_from = None
        data = self.config.data
        self.image_size = _find(data, "image_size") or 1024
        data.train = data.val = data.test = None


def _find(node: Any, key: str) -> Any:
    """The first value of `key` anywhere in a parsed config section (a dataset's `image_size`)."""
    items = vars(node).items() if isinstance(node, Namespace) else node.items() if isinstance(node, dict) else []
    if isinstance(node, list | tuple):
        items = enumerate(node)
    for k, value in items:
        found = value if k == key else _find(value, key)
        if found is not None:
            return found
    return None


def build(configs: list[str], settings: list[str] = ()) -> tuple[nn.Module, int]:
    """The recipe's ZooModule (random weights, real vocab sizes) and the image size its data uses; `settings` are
    `KEY=VALUE` overrides as `zoo fit --KEY=VALUE` takes them."""
    layers = [arg for config in configs for arg in ("--config", config)]  # the CLI puts `# base:` recipes first
    overrides = [
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.strategy=auto",
        "--trainer.logger=false",
        *(f"--{setting}" for setting in settings),
    ]
    cli = RandomWeightsCLI(args=[*layers, *overrides], run=False)
    module = cli.model
    for lm, size in zip((m for m in module.modules() if hasattr(m, "tokenizer") and hasattr(m, "model")),
                        cli.vocab_sizes, strict=False):  # fmt: skip
        # The published LM head's width: the synthetic tokenizer's vocabulary is far smaller.
        lm.model.resize_token_embeddings(max(size, len(lm.tokenizer)), mean_resizing=False)
    return module, cli.image_size


def make_batch(task: str, batch_size: int, image_size: int, device: torch.device) -> Batch:
    samples = SyntheticSegmentation(split="train", num_images=batch_size, image_size=image_size, tasks=[task])
    batch = collate([samples[i] for i in range(batch_size)])
    return _map_tensors(batch, lambda t: t.to(device))


def _map_tensors(obj: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply `fn` to every tensor inside dicts, lists, tuples and dataclasses (batches, predictions)."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(
            obj, **{f.name: _map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj) if f.init}
        )
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, Mapping):  # lazy maps (MultiEncoder): map only what is read, when it is read
        return _MappedView(obj, fn)
    if isinstance(obj, list | tuple):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


class _MappedView(Mapping):
    def __init__(self, base: Mapping, fn: Callable[[Tensor], Tensor]) -> None:
        self.base, self.fn, self.cache = base, fn, {}

    def __getitem__(self, key: str) -> Any:
        if key not in self.cache:
            self.cache[key] = _map_tensors(self.base[key], self.fn)
        return self.cache[key]

    def __iter__(self) -> Iterator:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def _tensors(obj: Any) -> list[Tensor]:
    found: list[Tensor] = []
    _map_tensors(obj, lambda t: found.append(t) or t)
    return found


class Timer:
    """Milliseconds of a region: CUDA events on a GPU (no host sync inside), wall clock on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    @contextmanager
    def __call__(self, out: list[float]) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end))
        else:
            start_s = time.perf_counter()
            yield
            out.append((time.perf_counter() - start_s) * 1e3)


def step_fn(module: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, autocast: Any) -> Callable[[], None]:
    def step() -> None:
        with autocast:
            loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def part_runs(module: nn.Module, batch: Batch, autocast: Any) -> dict[str, list[Callable[[], None]]]:
    """Per table row, a run of each of its parts alone on what that part received in one real step."""
    captured: dict[str, tuple] = {}
    hooks = []
    rows = {}
    for row, parts in BUCKETS.items():
        for name in parts:
            rows.update({n: row for n in _expand(module, name)})
    for name in rows:
        part = module.criterion if name == "criterion" else module.net.get_submodule(name)

        def hook(mod: nn.Module, args: tuple, kwargs: dict, _name: str = name) -> None:
            keep = lambda t: t.detach().requires_grad_(t.requires_grad)  # noqa: E731
            captured.setdefault(_name, (mod, _map_tensors(args, keep), _map_tensors(kwargs, keep)))

        hooks.append(part.register_forward_pre_hook(hook, with_kwargs=True))
    _forward_backward(module, batch, autocast)
    module.zero_grad(set_to_none=True)
    for h in hooks:
        h.remove()
    runs: dict[str, list[Callable[[], None]]] = {}
    for name, (mod, args, kwargs) in captured.items():
        runs.setdefault(rows[name], []).append(part_fn(mod, args, kwargs, autocast))
    return runs


def part_fn(mod: nn.Module, args: tuple, kwargs: dict, autocast: Any) -> Callable[[], None]:
    """Forward and (where anything needs it) backward of one part alone, seeded so sampled points repeat."""

    def run() -> None:
        torch.manual_seed(0)
        with autocast:
            outputs = [t for t in _tensors(mod(*args, **kwargs)) if t.requires_grad]
        if outputs:
            torch.autograd.backward(outputs, [torch.ones_like(t) for t in outputs])

    return run


def timed(fn: Callable[[], None], timer: Timer, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(steps):
        with timer(times):
            fn()
    return sorted(times)[len(times) // 2]  # median: robust to a stray slow step


def _custom_flops() -> dict:
    """The CPU's SDPA kernel is missing from torch's FLOP table; its FLOPs are flash attention's."""
    aten = torch.ops.aten
    if not hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        return {}
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: flop_counter.sdpa_flop.__wrapped__,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: flop_counter.sdpa_backward_flop.__wrapped__,
    }


CUSTOM_FLOPS = _custom_flops()
COUNTED_OPS = {*flop_registry, *CUSTOM_FLOPS}


def count_flops(fn: Callable[[], None], shape_only: bool = False) -> int:
    """FLOPs of one call (matmuls, convolutions, attention), optionally without computing those ops."""
    counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS)
    with ShapeOnly() if shape_only else nullcontext(), counter:
        fn()
    return counter.get_total_flops()


class OpCounter(TorchDispatchMode):
    """Counts the ops a call dispatches, forward and backward, views aside: about the kernels a GPU launches, each
    costing host time whether or not the GPU is busy."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.count += not func.is_view
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], None]) -> int:
    with OpCounter() as counter:
        fn()
    return counter.count


def host_syncs(fn: Callable[[], None]) -> int:
    """Device-to-host synchronisations in one call (each drains the GPU's queue), as CUDA's sync debug mode
    reports them; its docs warn that it may miss some."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing CUDA operation" in str(w.message) for w in caught)


class ShapeOnly(TorchDispatchMode):
    """Skips the FLOP-heavy ops: their outputs are zeros of the shape the op's meta kernel gives."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func.overloadpacket not in COUNTED_OPS:
            return func(*args, **kwargs)
        to_meta = lambda t: t.to("meta") if isinstance(t, Tensor) else t  # noqa: E731
        out = func(*tree_map(to_meta, args), **tree_map(to_meta, kwargs))
        zeros = lambda t: torch.zeros(t.shape, dtype=t.dtype) if isinstance(t, Tensor) else t  # noqa: E731
        return tree_map(zeros, out)


def matmul_tflops(device: torch.device) -> float:
    """Measured bf16 matmul rate (8192^3), the denominator the issue's baseline used."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    times: list[float] = []
    timer = Timer(device)
    for i in range(12):
        with timer(times) if i >= 2 else nullcontext():
            a @ a
    return 2 * 8192**3 / (sorted(times)[len(times) // 2] / 1e3) / 1e12


def fmt(x: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}{unit}"


def benchmark(args: argparse.Namespace) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    module, image_size = build(args.config, args.set)
    image_size = args.image_size or image_size
    module.to(device).train()
    use_bf16 = device.type == "cuda" and args.precision == "bf16"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    batch = make_batch(args.task, args.batch_size, image_size, device)
    module.scheduler_factory = None  # no trainer to size a schedule; the optimizer is the recipe's own
    optimizer = module.configure_optimizers()["optimizer"]
    timer = Timer(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step = timed(step_fn(module, optimizer, batch, autocast), timer, args.warmup, args.steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    times: dict[str, float] = {}
    flops: dict[str, int] = {"total": count_flops(lambda: _forward_backward(module, batch, autocast))}
    ops = count_ops(lambda: _forward_backward(module, batch, autocast))
    syncs = host_syncs(lambda: _forward_backward(module, batch, autocast)) if device.type == "cuda" else None
    module.zero_grad(set_to_none=True)
    for row, fns in part_runs(module, batch, autocast).items():
        times[row] = sum(timed(fn, timer, 1, args.steps) for fn in fns)
        flops[row] = sum(count_flops(fn) for fn in fns)
    optimizer_ms = timed(optimizer.step, timer, 1, args.steps)
    optimizer.zero_grad(set_to_none=True)
    rate = matmul_tflops(device) if device.type == "cuda" else None

    recipe = " + ".join(args.config + args.set)
    print(f"recipe: {recipe} | task {args.task} | batch {args.batch_size} | {image_size} px | "
          f"{device} {torch.cuda.get_device_name() if device.type == 'cuda' else ''} | "
          f"{'bf16 autocast' if use_bf16 else 'fp32'} | torch {torch.__version__}")  # fmt: skip
    print(f"step {step:.1f} ms (median of {args.steps} after {args.warmup} warm-up) | "
          f"{args.batch_size / step * 1e3:.2f} samples/s | peak memory "
          f"{fmt(peak, ' GiB') if peak is not None else fmt(rss, ' GiB RSS')}")  # fmt: skip
    total_tflops = flops["total"] / (step / 1e3) / 1e12
    mfu = f"{100 * total_tflops / rate:.1f} % of measured bf16 matmul ({rate:.0f} TFLOP/s)" if rate else "-"
    if args.peak_tflops:
        mfu += f"; {100 * total_tflops / args.peak_tflops:.1f} % of {args.peak_tflops:.0f} TFLOP/s"
    print(f"model FLOPs per step {flops['total'] / 1e9:,.1f} GFLOP -> {total_tflops:.3f} TFLOP/s | MFU {mfu}")
    print(f"ops dispatched per forward+backward {ops:,} (about the kernel launches) | host syncs "
          f"{syncs if syncs is not None else '- (CUDA only)'}")  # fmt: skip
    print(f"\n{'part (alone, fwd+bwd)':<26}{'ms':>10}{'% step':>9}{'GFLOP':>12}{'TFLOP/s':>10}")
    rows = [(row, times.get(row), flops.get(row)) for row in BUCKETS] + [("optimizer step", optimizer_ms, None)]
    accounted = sum(t for _, t, _ in rows if t is not None)
    rows.append(("other (glue, matching)", max(0.0, step - accounted), None))
    for row, ms, fl in rows:
        share = None if ms is None else 100 * ms / step
        rate_row = None if not ms or not fl else fl / (ms / 1e3) / 1e12
        gflop = fmt(fl / 1e9 if fl else None, digits=2)
        print(f"{row:<26}{fmt(ms):>10}{fmt(share):>9}{gflop:>12}{fmt(rate_row, digits=3):>10}")


def _expand(module: nn.Module, name: str) -> list[str]:
    """The parts to time for a table entry: none if the model lacks it, the encoders inside a MultiEncoder (which
    only hands out lazy maps; its encoders run when a later part reads them), else the part itself."""
    if name == "criterion":
        return [name]
    try:
        part = module.net.get_submodule(name)
    except AttributeError:
        return []
    inner = [f"{name}.{child}" for child, m in part.named_children() if isinstance(m, Encoder)]
    return inner or [name]


def _forward_backward(module: nn.Module, batch: Batch, autocast: Any) -> None:
    with autocast:
        loss = module.training_step(batch, 0)
    loss.backward()


def recipe_flops(config: str, args: argparse.Namespace) -> dict[str, int]:
    """FLOPs of one batch-1 training step of a recipe (total and per part), matmuls skipped (ShapeOnly)."""
    module, recipe_size = build([config], args.set)
    module.to(torch.bfloat16).train()  # FLOPs do not depend on the dtype; memory does
    for p in module.parameters():  # drop each gradient once accumulated: a full-size model's grads need not fit
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    batch = make_batch(args.task, 1, args.image_size or recipe_size, torch.device("cpu"))
    batch = _map_tensors(batch, lambda t: t.to(torch.bfloat16) if t.is_floating_point() else t)
    flops = {"total": count_flops(lambda: _forward_backward(module, batch, nullcontext()), shape_only=True)}
    with ShapeOnly():
        runs = part_runs(module, batch, nullcontext())
    flops.update({row: sum(count_flops(fn, shape_only=True) for fn in fns) for row, fns in runs.items()})
    return flops


def flops_only(args: argparse.Namespace) -> None:
    """FLOPs of one training step (forward + backward) of each full-size recipe and of its parts, on the CPU."""
    print(f"{'recipe':<30}{'part (alone, fwd+bwd)':<26}{'TFLOP/step':>12}   (batch {args.batch_size} = x batch 1)")
    for config in args.config:
        for row, value in recipe_flops(config, args).items():
            print(f"{config:<30}{row:<26}{value * args.batch_size / 1e12:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", help="recipe file(s), layered as in `zoo fit`")
    parser.add_argument("--task", default="panoptic", choices=["panoptic", "referring", "interactive", "caption"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=None, help="default: the recipe's data size, else 1024")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="bf16 autocast on a GPU")
    parser.add_argument("--peak-tflops", type=float, default=None, help="nominal peak for a second MFU figure")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a recipe override as `zoo fit --KEY=VALUE` takes it, e.g. model.gradient_checkpointing=false",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="CPU run of a tiny recipe (default tiny PSALM)")
    parser.add_argument("--flops-only", action="store_true", help="count FLOPs of full recipes on the CPU")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's "self.log without a Trainer" on every step
    if args.flops_only:
        args.config = args.config or ["recipes/psalm/stage3.yaml", "recipes/xsam/stage1.yaml"]
        flops_only(args)
        return
    if args.smoke:
        args.config = args.config or ["recipes/psalm/tiny.yaml"]
        args.batch_size, args.steps, args.warmup = min(args.batch_size, 2), min(args.steps, 3), min(args.warmup, 1)
    if not args.config:
        parser.error("give --config (a full-size recipe), or --smoke / --flops-only")
    benchmark(args)


if __name__ == "__main__":
    main()
