"""Ranks of a `torch.distributed` run as the trainers see them: who this process is, its rows of a batch (in
micro-batches), its model replicated or sharded with FSDP2, gradients and logged scalars averaged over ranks. Without
a process group every function is the single-process identity.

Every rank builds the same model (same seed or weights) and draws the same global batch from the same generators;
rank r trains rows r, r + world, ... of it, `accumulation` micro-batches at a time. With sequence parallelism the
ranks come in consecutive groups of `sequence_degree` that share one forward, so the rows are split over the groups
(data parallelism), not the ranks. A replicated model's gradients are averaged with an all-reduce after the last
`backward` rather than through DDP: the models stay plain modules (no `module.` prefix in checkpoints, no wrapper
around the VAE's `autograd.grad` for the adaptive GAN weight). (Averaged over all ranks, the gradients of a
sequence-parallel group, each from the loss of the whole gathered output, come out as the data-parallel mean: see
`parallel.collectives`.) A model sharded with `fully_shard` (`shard_model`) holds each parameter, gradient and
optimiser state as a DTensor of which each rank keeps a slice; FSDP all-gathers a unit's parameters for its forward
and backward and reduce-scatters (averages) its gradients itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor


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


def start_from_env() -> bool:
    """Join the process group that `torchrun` describes (WORLD_SIZE > 1 in the environment): NCCL for CUDA tensors
    (each rank on GPU LOCAL_RANK) and gloo for CPU ones. Returns whether this call started it (False for a single
    process or a group already running)."""
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")
    return True


def check_divisible(batch_size: int, what: str, accumulation: int = 1, sequence_degree: int = 1) -> None:
    """A ValueError unless `batch_size` splits evenly over the ranks (or, with `sequence_degree` > 1, over the
    `world / sequence_degree` groups of ranks) and, on each, into `accumulation` micro-batches (every rank or group
    must train as many rows in each)."""
    groups = rank_and_world()[1] // sequence_degree
    if batch_size % (groups * accumulation):
        over = f"{groups} ranks" if sequence_degree == 1 else f"{groups} data-parallel groups"
        over += f" x {accumulation} accumulation steps" if accumulation > 1 else ""
        raise ValueError(f"{what} {batch_size} does not split over {over}: make it a multiple of "
                         f"{groups * accumulation}")


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


def micro_batches(batch: Any, accumulation: int, sequence_degree: int = 1) -> list[Any]:
    """This rank's (or sequence group's) rows of `batch` (`shard_rows`) cut into `accumulation` equal micro-batches,
    in order."""
    rows = shard_rows(batch, sequence_degree)
    if accumulation == 1:
        return [rows]
    if isinstance(rows, Tensor):
        return list(rows.chunk(accumulation))
    parts = {k: v.chunk(accumulation) if isinstance(v, Tensor) else None for k, v in rows.items()}
    return [{k: parts[k][i] if parts[k] is not None else v for k, v in rows.items()} for i in range(accumulation)]


def shard_model(model: nn.Module, units: Iterable[nn.Module], *, kept_gathered: Iterable[nn.Module] = (),
                methods: Iterable[str] = ()) -> nn.Module:
    """Shard `model` in place with FSDP2 (`fully_shard`) over all the ranks: each of `units` (e.g. the transformer's
    blocks) is a unit of its own, gathered only around its forward and backward; each of `kept_gathered` is a unit
    whose parameters stay gathered from its forward to its backward; the root holds the rest. `methods` names the
    model's methods other than `forward` that run it (FSDP gathers around them too). On CUDA the gathered parameters
    are bfloat16 and the gradients are reduced in float32; on the CPU everything stays float32. Build the optimiser
    and the EMA after this call, from the sharded parameters."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    cuda = next(model.parameters()).device.type == "cuda"
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if cuda else \
        MixedPrecisionPolicy()
    for unit in units:
        fully_shard(unit, mp_policy=policy)
    for unit in kept_gathered:
        fully_shard(unit, mp_policy=policy, reshard_after_forward=False)
    fully_shard(model, mp_policy=policy)
    for method in methods:
        register_fsdp_forward_method(model, method)
    return model


def is_sharded(module: Any) -> bool:
    """Whether `module` is a model whose parameters `shard_model` sharded (DTensors)."""
    return isinstance(module, nn.Module) and any(isinstance(p, DTensor) for p in module.parameters())


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """The bytes this rank holds of `model`'s parameters, their gradients and `optimizer`'s state (a sharded
    tensor counts its local slice): keys `params`, `grads`, `optimizer` and `total`."""

    def size(tensor: Tensor) -> int:
        local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        return local.numel() * local.element_size()

    params = list(model.parameters())
    counts = {"params": sum(size(p) for p in params),
              "grads": sum(size(p.grad) for p in params if p.grad is not None),
              "optimizer": sum(size(v) for state in optimizer.state.values() for v in state.values()
                               if isinstance(v, Tensor))}
    return {**counts, "total": sum(counts.values())}


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (all ranks must hold gradients for the same parameters).
    The gradients of sharded parameters (DTensors) are left as they are: FSDP has averaged them already."""
    world = rank_and_world()[1]
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None and not isinstance(p.grad, DTensor)]
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
