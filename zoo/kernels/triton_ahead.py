"""Compile the deformable-attention kernels for a GPU architecture on a machine without one.

Triton's interpreter checks what the kernels compute, not that Triton's compiler accepts them; this runs the real
compiler (Triton IR -> PTX -> ptxas cubin) for, by default, sm_90 (H100/H200), with the argument specialisation a
launch gets (16-byte aligned pointers, query and key counts divisible by 16, as at X-SAM sizes), and reads the
register and stack use ptxas settled on: register pressure decides how many warps a GPU keeps in flight.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from zoo.kernels import deformable_triton

SIZES = ["num_keys", "num_queries"]
CONSTANTS = ["HEADS", "DIM", "LEVELS", "POINTS", "BLOCK_Q", "BLOCK_D"]
POINTERS = {  # pointer arguments and their element types under bf16 autocast
    "forward": {"value_ptr": "*bf16", "shapes_ptr": "*i32", "starts_ptr": "*i32", "loc_ptr": "*fp32",
                "attn_ptr": "*fp32", "out_ptr": "*bf16"},
    "backward": {"value_ptr": "*bf16", "shapes_ptr": "*i32", "starts_ptr": "*i32", "loc_ptr": "*fp32",
                 "attn_ptr": "*fp32", "grad_out_ptr": "*bf16", "grad_value_ptr": "*fp32", "grad_loc_ptr": "*fp32",
                 "grad_attn_ptr": "*fp32"},
}  # fmt: skip
KERNELS = {"forward": deformable_triton._forward_kernel, "backward": deformable_triton._backward_kernel}


@dataclass(frozen=True)
class Usage:
    """Per-thread resources of one compiled kernel: registers, and stack bytes (spills live there)."""

    registers: int
    stack: int


def compile_kernel(
    kind: str, config: triton.Config, arch: int = 90, heads: int = 8, dim: int = 32, levels: int = 3, points: int = 4
) -> triton.compiler.CompiledKernel:
    """The `forward` or `backward` kernel under `config` (its BLOCK_Q and warps), compiled for sm_`arch`."""
    autotuner = KERNELS[kind]
    signature = {**POINTERS[kind], **dict.fromkeys(SIZES, "i32"), **dict.fromkeys(CONSTANTS, "constexpr")}
    if list(signature) != autotuner.fn.arg_names:
        raise RuntimeError(f"{kind} kernel arguments changed: {autotuner.fn.arg_names}; update POINTERS")
    values = dict(HEADS=heads, DIM=dim, LEVELS=levels, POINTS=points, BLOCK_D=triton.next_power_of_2(dim))
    divisible = [i for i, name in enumerate(signature) if signature[name].startswith("*") or name in SIZES]
    source = ASTSource(
        fn=autotuner.fn,
        signature=signature,
        constexprs={**values, **config.kwargs},
        attrs={(i,): [["tt.divisibility", 16]] for i in divisible},
    )
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def usage(compiled: triton.compiler.CompiledKernel) -> Usage:
    """Registers and stack per thread of a compiled kernel, as `cuobjdump -res-usage` reads them from its cubin."""
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        report = subprocess.run([str(cuobjdump), "-res-usage", cubin.name], capture_output=True, text=True).stdout
    found = re.search(r"REG:(\d+) STACK:(\d+)", report)
    if found is None:
        raise RuntimeError(f"cuobjdump gave no resource usage:\n{report}")
    return Usage(int(found[1]), int(found[2]))
