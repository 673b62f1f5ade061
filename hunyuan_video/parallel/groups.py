"""The process groups of a `ParallelConfig` over an initialised `torch.distributed` world.

Ranks are laid out as `rank = cfg_half * (U R) + ring_rank * U + ulysses_rank`: Ulysses innermost (its all-to-all
is the heaviest traffic, so it stays among neighbouring ranks, on one node when it fits), then the ring, then the
CFG halves. Video token shard `ring_rank * U + ulysses_rank` belongs to a rank, so that after the Ulysses
all-to-all a ring rank holds one contiguous block of the sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch.distributed as dist
from torch.distributed import ProcessGroup

from hunyuan_video.parallel.config import ParallelConfig


def group_ranks(config: ParallelConfig) -> dict[str, list[list[int]]]:
    """The rank lists of every group of each kind ("sequence", "ulysses", "ring", "cfg"), in rank order: the rank
    of a member in its group is its index in its list."""
    u, r, sp = config.ulysses_degree, config.ring_degree, config.sequence_degree
    halves = range(2 if config.cfg_parallel else 1)
    return {
        "sequence": [[c * sp + i for i in range(sp)] for c in halves],
        "ulysses": [[c * sp + j * u + i for i in range(u)] for c in halves for j in range(r)],
        "ring": [[c * sp + j * u + i for j in range(r)] for c in halves for i in range(u)],
        "cfg": [[c * sp + i for c in halves] for i in range(sp)],
    }


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

    @classmethod
    def build(cls, config: ParallelConfig) -> ParallelGroups:
        """The groups of `config` over the default process group; every rank must call it (a collective). A
        ValueError when no process group is initialised or the world size is not `config.world_size`."""
        if not dist.is_initialized():
            raise ValueError("parallel inference needs an initialised process group: launch with torchrun and call "
                             "torch.distributed.init_process_group() first")
        rank, world = dist.get_rank(), dist.get_world_size()
        config.check_world_size(world)

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

        sets, sp = group_ranks(config), config.sequence_degree
        return cls(config, cfg_half=rank // sp, shard=rank % sp, sequence_group=mine(sets["sequence"]),
                   ulysses_group=mine(sets["ulysses"]), ring_group=mine(sets["ring"]), cfg_group=mine(sets["cfg"]))

    def common_seed(self) -> int:
        """A random seed drawn on rank 0 and sent to every rank (all ranks must call it)."""
        seed = [random.randrange(2**31)]
        dist.broadcast_object_list(seed, src=0)
        return seed[0]
