"""Collectives that autograd can differentiate through, for sequence-parallel training: each is an
`autograd.Function` whose backward is the adjoint collective (an all-gather's: every rank's gradient of this rank's
block, summed).

Gradients follow one rule across ranks: the gradient of a tensor every rank holds the same (text tokens, modulation
vectors, the gathered output) is the sum of the ranks' gradients of it, and that of a tensor one rank holds (its
video token shard) is that rank's own. Parameter gradients are then summed (or averaged) over the ranks, as a data
parallel step does anyway.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup


class _AllGather(torch.autograd.Function):
    """Every rank's `x` concatenated along `dim` in rank order; backward: the sum over ranks of the gradient of this
    rank's block (a reduce-scatter, made of an all-to-all, which gloo provides, and a sum)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, dim: int, group: ProcessGroup) -> Tensor:
        ctx.dim, ctx.group = dim, group
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None, None]:
        blocks = grad.chunk(dist.get_world_size(ctx.group), dim=ctx.dim)
        send = torch.stack(blocks).contiguous()  # block j goes to rank j
        received = torch.empty_like(send)
        dist.all_to_all_single(received, send, group=ctx.group)  # received[j]: rank j's gradient of this block
        return received.sum(0), None, None


def all_gather(x: Tensor, dim: int, group: ProcessGroup) -> Tensor:
    """The ranks' `x` (same shape on every rank) concatenated along `dim` in rank order, on every rank of `group`;
    differentiable."""
    return _AllGather.apply(x, dim, group)
