"""The deformable-attention kernels through Triton's real compiler for sm_90 (H100/H200), on a machine without a GPU.

The interpreter tests check what the kernels compute; these check that the compiled path a GPU takes is accepted,
and that it reads and scatters the way its speed depends on.
"""

from __future__ import annotations

import re

import pytest

triton = pytest.importorskip("triton")

from zoo.kernels.deformable_triton import autotune_configs  # noqa: E402
from zoo.kernels.triton_ahead import compile_kernel, usage  # noqa: E402

CONFIG = triton.Config({"BLOCK_Q": 16}, num_warps=4)  # the cheapest to compile of the autotuner's configs


def test_the_autotuner_tries_the_compiled_config() -> None:
    assert any(c.kwargs == CONFIG.kwargs and c.num_warps == CONFIG.num_warps for c in autotune_configs())


def test_forward_reads_value_rows_as_vectors() -> None:
    """Channel rows are contiguous and 16-byte aligned, so each corner read is one vector load a thread, not one
    2-byte load a channel (which is what an unspecialised launch compiles to)."""
    compiled = compile_kernel("forward", CONFIG)
    loads = re.findall(r"ld\.global\.(v[24])\.b32", compiled.asm["ptx"])
    assert len(loads) == 3 * 4 * 4  # levels x points x corners
    assert not re.search(r"ld\.global[\w.]*\.b16", compiled.asm["ptx"])
    assert 0 < usage(compiled).registers <= 255


def test_backward_scatters_with_relaxed_vector_atomics() -> None:
    """The value gradient is a sum, so its atomics need no ordering: relaxed, 4 fp32 lanes at a time."""
    compiled = compile_kernel("backward", CONFIG)
    atomics = re.findall(r"atom\.global[\w.]*", compiled.asm["ptx"])
    assert len(atomics) == 3 * 4 * 4
    assert set(atomics) == {"atom.global.gpu.relaxed.add.v4.f32"}
    assert usage(compiled).stack <= 64
