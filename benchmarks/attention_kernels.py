"""Forward+backward time of the fast attention paths against what they replace, at X-SAM sizes on one GPU.

- Multi-scale deformable attention: levels 128^2, 64^2, 32^2 (all of them queries), 256-d, 8 heads, 4 points,
  batch 4: the Triton kernel vs transformers' grid_sample code (target: <= 4 ms).
- SAM ViT-L global attention: batch 4, 64x64 tokens, 16 heads of 64: SDPA on augmented q/k vs the dense
  relative-position bias transformers builds.
Usage: `python benchmarks/attention_kernels.py [--dtype bf16]`. Needs CUDA (CUDA events; Triton compiles for the GPU).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from transformers import SamVisionConfig
from transformers.models.sam.modeling_sam import SamVisionAttention

from zoo.kernels.deformable_attention import reference_deformable_attention
from zoo.kernels.deformable_triton import _backward_kernel, _forward_kernel, triton_deformable_attention
from zoo.kernels.sam_attention import use_fused_attention


def cuda_ms(fn: Callable[[], None], warmup: int = 5, reps: int = 20) -> float:
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


def deformable_case(dtype: torch.dtype) -> dict[str, float]:
    shapes = [(128, 128), (64, 64), (32, 32)]
    batch, heads, dim, points = 4, 8, 32, 4
    keys = sum(h * w for h, w in shapes)
    value = torch.randn(batch, keys, heads, dim, device="cuda", dtype=dtype, requires_grad=True)
    locations = torch.rand(batch, keys, heads, len(shapes), points, 2, device="cuda", requires_grad=True)
    weights = torch.rand(batch, keys, heads, len(shapes), points, device="cuda").softmax(-1).requires_grad_()
    grad = torch.randn(batch, keys, heads * dim, device="cuda", dtype=dtype)

    def run(fn: Callable) -> Callable[[], None]:
        def step() -> None:
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                out = fn(value, shapes, locations, weights)
            out.backward(grad.to(out.dtype))

        return step

    triton_ms = cuda_ms(run(triton_deformable_attention))
    return {"triton": triton_ms, "pytorch": cuda_ms(run(reference_deformable_attention))}


def sam_case(dtype: torch.dtype) -> dict[str, float]:
    config = SamVisionConfig(hidden_size=1024, num_attention_heads=16, image_size=1024, patch_size=16)
    config._attn_implementation = "eager"
    dense = SamVisionAttention(config, window_size=0).cuda()
    fused = SamVisionAttention(config, window_size=0).cuda()
    fused.load_state_dict(dense.state_dict())
    use_fused_attention(fused)
    x = torch.randn(4, 64, 64, 1024, device="cuda", requires_grad=True)

    def run(block: torch.nn.Module) -> Callable[[], None]:
        def step() -> None:
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                out = block(x)[0]
            out.float().sum().backward()

        return step

    return {"fused SDPA": cuda_ms(run(fused)), "dense bias": cuda_ms(run(dense))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/attention_kernels.py needs a CUDA GPU")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {args.dtype} | forward+backward, ms")
    for name, case in (("deformable attention (X-SAM sizes)", deformable_case), ("SAM ViT-L global layer", sam_case)):
        for impl, ms in case(dtype).items():
            print(f"{name:<38}{impl:<14}{ms:>8.2f}")
    for kernel in (_forward_kernel, _backward_kernel):
        print(f"autotuner's choice for {kernel.base_fn.__name__}: {kernel.best_config}")


if __name__ == "__main__":
    main()
