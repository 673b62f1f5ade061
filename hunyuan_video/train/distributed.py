"""Ranks of a `torch.distributed` run as the trainers see them: who this process is, its rows of a batch, gradients
and logged scalars averaged over ranks. Without a process group every function is the single-process identity.

Every rank builds the same model (same seed or weights) and draws the same global batch from the same generators;
rank r trains rows r, r + world, ... of it. With sequence parallelism the ranks come in consecutive groups of
`sequence_degree` that share one forward, so the rows are split over the groups (data parallelism), not the ranks.
The gradients are then averaged with an all-reduce after `backward` rather than through DDP: the models stay plain
modules (no `module.` prefix in checkpoints, no wrapper around the VAE's `autograd.grad` for the adaptive GAN
weight), and one call after `backward` fits both trainers. DDP's overlap of communication with the backward pass is
what this gives up. (Averaged over all ranks, the gradients of a sequence-parallel group, each from the loss of the
whole gathered output, come out as the data-parallel mean: see `parallel.collectives`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialized process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process is rank 0 (the one that logs, writes files and samples); True without a process group."""
    return rank_and_world()[0] == 0


def wait_for_ranks() -> None:
    """A barrier: return once every rank has called it (nothing to wait for without a process group)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def check_divisible(batch_size: int, what: str, sequence_degree: int = 1) -> None:
    """A ValueError unless `batch_size` splits evenly over the ranks, or with `sequence_degree` > 1 over the
    `world / sequence_degree` groups of ranks (every rank or group must train as many rows)."""
    world = rank_and_world()[1]
    groups = world // sequence_degree
    if batch_size % groups:
        over = f"{groups} ranks" if sequence_degree == 1 else f"{groups} data-parallel groups"
        raise ValueError(f"{what} {batch_size} does not split over {over}: make it a multiple of {groups}")


def shard_rows(batch: Any, sequence_degree: int = 1) -> Any:
    """This rank's rows `rank::world` of a tensor, or of every tensor of a dict (other values as they are); with
    `sequence_degree` > 1, the rows `rank // sequence_degree :: world // sequence_degree` of its group."""
    rank, world = rank_and_world()
    rank, world = rank // sequence_degree, world // sequence_degree
    if world == 1:
        return batch
    if isinstance(batch, Tensor):
        return batch[rank::world]
    return {k: v[rank::world] if isinstance(v, Tensor) else v for k, v in batch.items()}


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (all ranks must hold gradients for the same parameters)."""
    world = rank_and_world()[1]
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for work in [dist.all_reduce(g, async_op=True) for g in grads]:
        work.wait()
    for g in grads:
        g.div_(world)


def mean_over_ranks(scalars: Mapping[str, Tensor | float]) -> dict[str, Tensor | float]:
    """The mean of each scalar over the ranks (what a log line reports); every rank must call it at the same step."""
    world = rank_and_world()[1]
    if world == 1:
        return dict(scalars)
    values = torch.tensor([float(v) for v in scalars.values()], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        values = values.cuda()
    dist.all_reduce(values)
    return dict(zip(scalars, (values / world).tolist()))
