"""Multi-scale deformable attention as Triton kernels (forward and backward), a pure pip install: no op to build.

One program handles a block of queries of one (batch, head): for every level and point it bilinearly samples the
value map at the 4 neighbours of the sampling location (zero outside, `grid_sample(align_corners=False)`'s
convention: pixel x = loc_x * W - 0.5) and accumulates them, weighted, in fp32. The backward recomputes the
samples, writes the location and weight gradients per query, and scatters the value gradient with fp32 atomics.
Shapes: value [B, S, H, D], locations [B, Q, H, L, P, 2] (x, y in [0, 1]), weights [B, Q, H, L, P] -> [B, Q, H*D].
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor


def autotune_configs() -> list[triton.Config]:
    """Query-block sizes and warps to try on the GPU: 16, 8, 4 or 2 channels a thread per corner read (ptxas at
    sm_90: about 255, 188, 116 and 80 forward registers, `benchmarks/kernel_resources.py`), i.e. more reads in
    flight a thread against more warps resident. The first call for each (heads, dim, levels, points, dtypes) times
    them all and keeps the fastest. Triton's interpreter gets one, since it has no timer to choose with."""
    configs = [triton.Config({"BLOCK_Q": q}, num_warps=w) for q, w in ((64, 4), (32, 4), (16, 4), (32, 8), (16, 8))]
    return configs[:1] if os.environ.get("TRITON_INTERPRET") == "1" else configs


KEY = ["HEADS", "DIM", "LEVELS", "POINTS"]  # not the query count: a new image size reuses the choice


@triton.jit
def _load_corner(value_ptr, yi, xi, height, width, start, row_stride, d, dmask, qmask):
    """The value rows at integer pixel (yi, xi) of one level, zeros outside it; also where they are."""
    valid = qmask & (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    offset = (start + yi * width + xi) * row_stride
    rows = tl.load(value_ptr + offset[:, None] + d[None, :], mask=valid[:, None] & dmask[None, :], other=0.0)
    return rows.to(tl.float32), valid, offset


@triton.jit
def _scatter(grad_value_base, offset, valid, d, dmask, scale, grad_out):
    """Add scale * grad_out into one corner's value-gradient rows: fp32 atomics, relaxed (only the sum matters, so
    no ordering fences)."""
    rows = grad_value_base + offset[:, None] + d[None, :]
    tl.atomic_add(rows, scale[:, None] * grad_out, mask=valid[:, None] & dmask[None, :], sem="relaxed")


@triton.jit
def _block(num_keys, num_queries, HEADS: tl.constexpr, DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's query rows (indexing the [B, Q, H] query-head grid), channels, and its (batch, head) offset
    into [B, S, H, D] value-shaped tensors."""
    pid_bh = tl.program_id(1)
    b = (pid_bh // HEADS).to(tl.int64)
    h = pid_bh % HEADS
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    d = tl.arange(0, BLOCK_D)
    row = (b * num_queries + q) * HEADS + h
    return row, q < num_queries, d, d < DIM, b * num_keys * HEADS * DIM + h * DIM


@triton.jit
def _level(shapes_ptr, starts_ptr, level):
    """Height, width and first key index of one level."""
    return tl.load(shapes_ptr + 2 * level), tl.load(shapes_ptr + 2 * level + 1), tl.load(starts_ptr + level)


@triton.jit
def _bilinear(loc_ptr, sample, qmask, width, height):
    """Top-left neighbour (xi, yi) of each sampling point and its bilinear fractions (lx, ly) and (1 - lx, 1 - ly).

    Pixel coordinates are clamped where every neighbour is outside anyway, so the integer cast cannot overflow.
    """
    x = tl.load(loc_ptr + 2 * sample, mask=qmask, other=0.0).to(tl.float32) * width - 0.5
    y = tl.load(loc_ptr + 2 * sample + 1, mask=qmask, other=0.0).to(tl.float32) * height - 0.5
    x = tl.minimum(tl.maximum(x, -2.0), width + 1.0)
    y = tl.minimum(tl.maximum(y, -2.0), height + 1.0)
    x0 = tl.floor(x)
    y0 = tl.floor(y)
    lx = x - x0
    ly = y - y0
    return x0.to(tl.int32), y0.to(tl.int32), lx, ly, 1.0 - lx, 1.0 - ly


@triton.autotune(configs=autotune_configs(), key=KEY)
@triton.jit
def _forward_kernel(
    value_ptr,
    shapes_ptr,
    starts_ptr,
    loc_ptr,
    attn_ptr,
    out_ptr,
    num_keys,
    num_queries,
    HEADS: tl.constexpr,
    DIM: tl.constexpr,
    LEVELS: tl.constexpr,
    POINTS: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row, qmask, d, dmask, head = _block(num_keys, num_queries, HEADS, DIM, BLOCK_Q, BLOCK_D)
    value_base = value_ptr + head
    acc = tl.zeros([BLOCK_Q, BLOCK_D], dtype=tl.float32)
    for level in tl.static_range(LEVELS):
        height, width, start = _level(shapes_ptr, starts_ptr, level)
        for point in tl.static_range(POINTS):
            sample = row * (LEVELS * POINTS) + level * POINTS + point
            weight = tl.load(attn_ptr + sample, mask=qmask, other=0.0).to(tl.float32)
            xi, yi, lx, ly, hx, hy = _bilinear(loc_ptr, sample, qmask, width, height)
            v00, _, _ = _load_corner(value_base, yi, xi, height, width, start, HEADS * DIM, d, dmask, qmask)
            v01, _, _ = _load_corner(value_base, yi, xi + 1, height, width, start, HEADS * DIM, d, dmask, qmask)
            v10, _, _ = _load_corner(value_base, yi + 1, xi, height, width, start, HEADS * DIM, d, dmask, qmask)
            v11, _, _ = _load_corner(value_base, yi + 1, xi + 1, height, width, start, HEADS * DIM, d, dmask, qmask)
            sampled = (hy * hx)[:, None] * v00 + (hy * lx)[:, None] * v01
            sampled += (ly * hx)[:, None] * v10 + (ly * lx)[:, None] * v11
            acc += weight[:, None] * sampled
    out = out_ptr + row[:, None] * DIM + d[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=qmask[:, None] & dmask[None, :])


@triton.autotune(configs=autotune_configs(), key=KEY, reset_to_zero=["grad_value_ptr"])  # timing runs accumulate
@triton.jit
def _backward_kernel(
    value_ptr,
    shapes_ptr,
    starts_ptr,
    loc_ptr,
    attn_ptr,
    grad_out_ptr,
    grad_value_ptr,
    grad_loc_ptr,
    grad_attn_ptr,
    num_keys,
    num_queries,
    HEADS: tl.constexpr,
    DIM: tl.constexpr,
    LEVELS: tl.constexpr,
    POINTS: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    row, qmask, d, dmask, head = _block(num_keys, num_queries, HEADS, DIM, BLOCK_Q, BLOCK_D)
    tile_mask = qmask[:, None] & dmask[None, :]
    value_base = value_ptr + head
    grad_value_base = grad_value_ptr + head
    grad_out = tl.load(grad_out_ptr + row[:, None] * DIM + d[None, :], mask=tile_mask, other=0.0).to(tl.float32)
    for level in tl.static_range(LEVELS):
        height, width, start = _level(shapes_ptr, starts_ptr, level)
        for point in tl.static_range(POINTS):
            sample = row * (LEVELS * POINTS) + level * POINTS + point
            weight = tl.load(attn_ptr + sample, mask=qmask, other=0.0).to(tl.float32)
            xi, yi, lx, ly, hx, hy = _bilinear(loc_ptr, sample, qmask, width, height)
            stride = HEADS * DIM
            v00, m00, o00 = _load_corner(value_base, yi, xi, height, width, start, stride, d, dmask, qmask)
            v01, m01, o01 = _load_corner(value_base, yi, xi + 1, height, width, start, stride, d, dmask, qmask)
            v10, m10, o10 = _load_corner(value_base, yi + 1, xi, height, width, start, stride, d, dmask, qmask)
            v11, m11, o11 = _load_corner(value_base, yi + 1, xi + 1, height, width, start, stride, d, dmask, qmask)
            g00 = tl.sum(v00 * grad_out, axis=1)
            g01 = tl.sum(v01 * grad_out, axis=1)
            g10 = tl.sum(v10 * grad_out, axis=1)
            g11 = tl.sum(v11 * grad_out, axis=1)
            grad_weight = hy * hx * g00 + hy * lx * g01 + ly * hx * g10 + ly * lx * g11
            tl.store(grad_attn_ptr + sample, grad_weight, mask=qmask)
            grad_x = weight * (hy * (g01 - g00) + ly * (g11 - g10)) * width
            grad_y = weight * (hx * (g10 - g00) + lx * (g11 - g01)) * height
            tl.store(grad_loc_ptr + 2 * sample, grad_x, mask=qmask)
            tl.store(grad_loc_ptr + 2 * sample + 1, grad_y, mask=qmask)
            _scatter(grad_value_base, o00, m00, d, dmask, weight * hy * hx, grad_out)
            _scatter(grad_value_base, o01, m01, d, dmask, weight * hy * lx, grad_out)
            _scatter(grad_value_base, o10, m10, d, dmask, weight * ly * hx, grad_out)
            _scatter(grad_value_base, o11, m11, d, dmask, weight * ly * lx, grad_out)


def _level_tables(shapes: list[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """(height, width) per level and where each level starts in the flattened key sequence, as int32 tensors."""
    sizes = [h * w for h, w in shapes]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return (
        torch.tensor(shapes, dtype=torch.int32, device=device),
        torch.tensor(starts, dtype=torch.int32, device=device),
    )


def _grid(num_queries: int, batch_heads: int):
    """Launch grid for whichever query block the autotuner runs: (query blocks, batch * heads)."""
    return lambda meta: (triton.cdiv(num_queries, meta["BLOCK_Q"]), batch_heads)


class TritonDeformableAttention(torch.autograd.Function):
    """Autograd wrapper: value in its own dtype (bf16 under autocast), locations and weights read as fp32."""

    @staticmethod
    def forward(ctx, value: Tensor, shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
        value, locations, weights = value.contiguous(), locations.contiguous(), weights.contiguous()
        batch, num_keys, heads, dim = value.shape
        _, num_queries, _, levels, points, _ = locations.shape
        shape_table, starts = _level_tables(shapes, value.device)
        out = torch.empty(batch, num_queries, heads, dim, dtype=value.dtype, device=value.device)
        _forward_kernel[_grid(num_queries, batch * heads)](
            value, shape_table, starts, locations, weights, out, num_keys, num_queries,
            HEADS=heads, DIM=dim, LEVELS=levels, POINTS=points, BLOCK_D=triton.next_power_of_2(dim),
        )  # fmt: skip
        ctx.save_for_backward(value, shape_table, starts, locations, weights)
        return out.flatten(2)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple:
        value, shape_table, starts, locations, weights = ctx.saved_tensors
        batch, num_keys, heads, dim = value.shape
        _, num_queries, _, levels, points, _ = locations.shape
        grad_value = torch.zeros(value.shape, dtype=torch.float32, device=value.device)
        grad_loc = torch.empty(locations.shape, dtype=torch.float32, device=value.device)
        grad_attn = torch.empty(weights.shape, dtype=torch.float32, device=value.device)
        _backward_kernel[_grid(num_queries, batch * heads)](
            value, shape_table, starts, locations, weights, grad_out.contiguous(), grad_value, grad_loc, grad_attn,
            num_keys, num_queries,
            HEADS=heads, DIM=dim, LEVELS=levels, POINTS=points, BLOCK_D=triton.next_power_of_2(dim),
        )  # fmt: skip
        return grad_value.to(value.dtype), None, grad_loc.to(locations.dtype), grad_attn.to(weights.dtype)


def triton_deformable_attention(
    value: Tensor, shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor
) -> Tensor:
    """[B, Q, H*D]; see the module docstring for the layout."""
    return TritonDeformableAttention.apply(value, shapes, locations, weights)
