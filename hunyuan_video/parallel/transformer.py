"""`ParallelTransformer`: a `HunyuanVideoTransformer`'s forward spread over the ranks of a `ParallelConfig`, from
outside its stages: the CFG halves of the batch on two rank groups, the video tokens of each forward over the
sequence-parallel ranks; every rank returns the whole velocity."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.parallel.groups import ParallelGroups
from hunyuan_video.parallel.sequence import gather, shard


class ParallelTransformer:
    """Callable like the transformer's `forward`, with the work of one call shared by the ranks of `groups`.

    With CFG parallelism the batch must be [negative half; positive half] (as the pipeline builds it): each CFG rank
    group runs one half and the halves are exchanged after `head`.
    """

    def __init__(self, transformer: HunyuanVideoTransformer, groups: ParallelGroups) -> None:
        groups.config.check_heads(transformer.config.heads_num)
        self.transformer = transformer
        self.groups = groups

    def __call__(self, x: Tensor, t: Tensor, text_states: Tensor, text_mask: Tensor | None, text_states_2: Tensor,
                 guidance: Tensor | None = None) -> Tensor:
        """The velocity of the whole batch, as `HunyuanVideoTransformer.forward(...)` gives it, on every rank."""
        inputs = [x, t, text_states, text_mask, text_states_2, guidance]
        cfg_group = self.groups.cfg_group
        if cfg_group is not None:
            if x.shape[0] % 2:
                raise ValueError(f"cfg parallel splits the batch into its negative and positive halves: got an odd "
                                 f"batch of {x.shape[0]}")
            inputs = [None if a is None else a.chunk(2)[self.groups.cfg_half] for a in inputs]
        model = self.transformer
        state = model.embed(*inputs)
        if self.groups.sequence_group is not None:
            state = gather(model.blocks(shard(state, self.groups)), state, self.groups)
        else:
            state = model.blocks(state)
        velocity = model.head(state)
        if cfg_group is None:
            return velocity
        halves = [torch.empty_like(velocity) for _ in range(2)]
        dist.all_gather(halves, velocity.contiguous(), group=cfg_group)
        return torch.cat(halves)
