"""Ulysses exchanges: an all-to-all turns a sequence shard with every head into the whole sequence with a share of
the heads, and back (`torch.distributed.all_to_all_single`, which gloo, NCCL and others provide). Each exchange is
differentiable: the backward of one is the other, applied to the gradient (see `parallel.collectives`)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup

from hunyuan_video.parallel.collectives import all_gather


def _sequence_to_heads(x: Tensor, group: ProcessGroup) -> Tensor:
    """(B, n, H, D) sequence shard, all heads -> (B, P n, H / P, D): the group's shards in rank order, this rank's
    heads (rank i keeps heads i H / P .. (i + 1) H / P)."""
    parts = dist.get_world_size(group)
    b, n, h, d = x.shape
    send = x.reshape(b, n, parts, h // parts, d).permute(2, 0, 1, 3, 4).contiguous()  # part j goes to rank j
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, group=group)  # received[j]: rank j's shard, this rank's heads
    return received.permute(1, 0, 2, 3, 4).reshape(b, parts * n, h // parts, d)


def _heads_to_sequence(x: Tensor, group: ProcessGroup) -> Tensor:
    """The inverse of `_sequence_to_heads`: (B, P n, H / P, D) -> (B, n, H, D)."""
    parts = dist.get_world_size(group)
    b, s, h, d = x.shape
    send = x.reshape(b, parts, s // parts, h, d).transpose(0, 1).contiguous()  # shard j goes back to rank j
    received = torch.empty_like(send)
    dist.all_to_all_single(received, send, group=group)  # received[j]: this rank's shard, rank j's heads
    return received.permute(1, 2, 0, 3, 4).reshape(b, s // parts, parts * h, d)


class _SequenceToHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, group: ProcessGroup) -> Tensor:
        ctx.group = group
        return _sequence_to_heads(x, group)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        return _heads_to_sequence(grad, ctx.group), None


class _HeadsToSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, group: ProcessGroup) -> Tensor:
        ctx.group = group
        return _heads_to_sequence(x, group)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        return _sequence_to_heads(grad, ctx.group), None


def sequence_to_heads(x: Tensor, group: ProcessGroup) -> Tensor:
    """(B, n, H, D) sequence shard, all heads -> (B, P n, H / P, D): the group's shards in rank order, this rank's
    heads (rank i keeps heads i H / P .. (i + 1) H / P); differentiable."""
    return _SequenceToHeads.apply(x, group)


def heads_to_sequence(x: Tensor, group: ProcessGroup) -> Tensor:
    """The inverse of `sequence_to_heads`: (B, P n, H / P, D) -> (B, n, H, D); differentiable."""
    return _HeadsToSequence.apply(x, group)


def heads_of(x: Tensor, group: ProcessGroup) -> Tensor:
    """This rank's share of the heads of (B, S, H, D) `x` (what `sequence_to_heads` gives it), for tokens every
    rank holds whole."""
    parts, rank = dist.get_world_size(group), dist.get_rank(group)
    h = x.shape[2] // parts
    return x[:, :, rank * h:(rank + 1) * h]


def gather_heads(x: Tensor, group: ProcessGroup) -> Tensor:
    """The inverse of `heads_of`: (B, S, H / P, D) from every rank -> (B, S, H, D) on every rank."""
    return all_gather(x, 2, group)
