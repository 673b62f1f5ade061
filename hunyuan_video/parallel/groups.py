"""The process groups of a `ParallelConfig` over an initialised `torch.distributed` world.

Ranks are laid out as `rank = cfg_half * (U R) + ring_rank * U + ulysses_rank`: Ulysses innermost (its all-to-all
is the heaviest traffic, so it stays among neighbouring ranks, on one node when it fits), then the ring, then the
CFG halves; data-parallel replicas of that layout (training) are outermost. Video token shard
`ring_rank * U + ulysses_rank` belongs to a rank, so that after the Ulysses all-to-all a ring rank holds one
contiguous block of the sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch.distributed as dist
from torch.distributed import ProcessGroup

from hunyuan_video.parallel.config import ParallelConfig


def group_ranks(config: ParallelConfig, replicas: int = 1) -> dict[str, list[list[int]]]:
    """The rank lists of every group of each kind ("sequence", "ulysses", "ring", "cfg"), in rank order: the rank
    of a member in its group is its index in its list. With `replicas` > 1, that many copies of the layout side by
    side (replica k on ranks k W .. (k + 1) W - 1, W = `config.world_size`), each with its own groups."""
    u, r, sp, w = config.ulysses_degree, config.ring_degree, config.sequence_degree, config.world_size
    halves = range(2 if config.cfg_parallel else 1)
    one = {
        "sequence": [[c * sp + i for i in range(sp)] for c in halves],
        "ulysses": [[c * sp + j * u + i for i in range(u)] for c in halves for j in range(r)],
        "ring": [[c * sp + j * u + i for j in range(r)] for c in halves for i in range(u)],
        "cfg": [[c * sp + i for c in halves] for i in range(sp)],
    }
    return {kind: [[k * w + rank for rank in ranks] for k in range(replicas) for ranks in sets]
            for kind, sets in one.items()}


@dataclass(frozen=True)
class ParallelGroups:
    """This rank's place in a `ParallelConfig` and the groups it talks over (None for a group of one rank)."""

    config: ParallelConfig
    cfg_half: int  # 0: the negative (unconditional) half of a CFG batch, 1: the positive half
    shard: int  # index of this rank's video token shard, in 0 .. sequence_degree - 1
    sequence_group: ProcessGroup | None  # the U R ranks that share one forward (rank in it = shard)
    ulysses_group: ProcessGroup | None
    ring_group: ProcessGroup | None
    cfg_group: ProcessGroup | None  # the two ranks holding the same shard of the two CFG halves
    replica: int = 0  # which data-parallel copy of the layout this rank belongs to, in 0 .. replicas - 1
    replicas: int = 1

    @classmethod
    def build(cls, config: ParallelConfig, replicas: int = 1) -> ParallelGroups:
        """The groups of `config` over the default process group, in `replicas` data-parallel copies (see
        `group_ranks`); every rank must call it (a collective). A ValueError when no process group is initialised
        or the world size is not `replicas * config.world_size`."""
        if not dist.is_initialized():
            raise ValueError("parallel inference needs an initialised process group: launch with torchrun and call "
                             "torch.distributed.init_process_group() first")
        rank, world = dist.get_rank(), dist.get_world_size()
        if replicas == 1:
            config.check_world_size(world)
        elif world != replicas * config.world_size:
            raise ValueError(f"{replicas} replicas of {config.world_size} processes need {replicas * config.world_size}"
                             f", but this run has {world}")

        def mine(sets: list[list[int]]) -> ProcessGroup | None:
            """Create every group of `sets` (all ranks, same order) and return the one holding this rank."""
            if len(sets[0]) == 1:
                return None
            found = None
            for ranks in sets:
                group = dist.new_group(ranks)
                if rank in ranks:
                    found = group
            return found

        sets, sp, inner = group_ranks(config, replicas), config.sequence_degree, rank % config.world_size
        return cls(config, cfg_half=inner // sp, shard=inner % sp, sequence_group=mine(sets["sequence"]),
                   ulysses_group=mine(sets["ulysses"]), ring_group=mine(sets["ring"]), cfg_group=mine(sets["cfg"]),
                   replica=rank // config.world_size, replicas=replicas)

    def common_seed(self) -> int:
        """A random seed drawn on rank 0 and sent to every rank (all ranks must call it)."""
        seed = [random.randrange(2**31)]
        dist.broadcast_object_list(seed, src=0)
        return seed[0]
