"""Registers, spills and resident warps of each autotuner config of the deformable-attention kernels, for sm_90.

Needs no GPU: Triton compiles the kernels ahead of time (`zoo.kernels.triton_ahead`) at X-SAM sizes (8 heads of
32 channels, 3 levels, 4 points, bf16 value). On the GPU the autotuner times these configs and keeps the fastest;
this table says what each trades: registers a thread (reads in flight) against warps an SM keeps resident.
Usage: `python benchmarks/kernel_resources.py [--arch 90]`.
"""

from __future__ import annotations

import argparse
import math

from zoo.kernels.deformable_triton import autotune_configs
from zoo.kernels.triton_ahead import compile_kernel, usage

REGISTERS_PER_SM = 65536
MAX_WARPS_PER_SM = 64  # sm_80 / sm_90


def resident_warps(registers: int, num_warps: int) -> int:
    """Warps an SM can hold at this register use: registers are given out per warp in units of 256."""
    per_warp = math.ceil(registers * 32 / 256) * 256
    blocks = REGISTERS_PER_SM // per_warp // num_warps
    return min(MAX_WARPS_PER_SM, blocks * num_warps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 for H100/H200")
    args = parser.parse_args()
    print(f"sm_{args.arch}; value bf16; 8 heads x 32 channels, 3 levels, 4 points")
    print(f"{'kernel':10} {'BLOCK_Q':>7} {'warps':>5} {'channels/thread':>15} {'registers':>9} {'stack B':>7} "
          f"{'resident warps/SM':>17}")  # fmt: skip
    for config in autotune_configs():
        for kind in ("forward", "backward"):
            found = usage(compile_kernel(kind, config, arch=args.arch))
            channels = config.kwargs["BLOCK_Q"] * 32 // (32 * config.num_warps)
            warps = resident_warps(found.registers, config.num_warps)
            print(f"{kind:10} {config.kwargs['BLOCK_Q']:>7} {config.num_warps:>5} {channels:>15} "
                  f"{found.registers:>9} {found.stack:>7} {warps:>14}/64")  # fmt: skip


if __name__ == "__main__":
    main()
