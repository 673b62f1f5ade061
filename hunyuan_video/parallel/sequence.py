"""Sequence parallelism around the transformer's stages: `shard` a `StreamState` after `embed` (this rank's video
tokens and their RoPE rows, the text whole, a `ShardedAttention` as the attention layout), run `blocks` as they are,
and `gather` the video tokens before `head`.

Inside each attention, `ShardedAttention` runs USP (Ulysses inside, ring outside): an all-to-all gives each rank the
video tokens of its Ulysses group with a share of the heads (the text tokens, whole on every rank, take the same
heads by slicing); the ring then covers the other groups' blocks; the output goes back from heads to sequence (text:
its heads gathered). Without a ring the attention runs on the model's own backend over the original padding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from hunyuan_video.models.attention import Padding, attention
from hunyuan_video.models.layers import ModulationVectors
from hunyuan_video.models.transformer import StreamState
from hunyuan_video.parallel.collectives import all_gather
from hunyuan_video.parallel.groups import ParallelGroups
from hunyuan_video.parallel.ring import ring_attention
from hunyuan_video.parallel.ulysses import gather_heads, heads_of, heads_to_sequence, sequence_to_heads


@dataclass(frozen=True)
class ShardedAttention:
    """The attention layout of a sequence [this rank's video shard | all text tokens] (a `SequenceLayout`)."""

    groups: ParallelGroups
    padding: Padding | None  # of the whole sequence [all video tokens | text]
    video_tokens: int  # in this rank's shard

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, backend: str) -> Tensor:
        """(B, n + L, H, D) q, k, v of this rank -> its (B, n + L, H * D) attention output."""
        n, ulysses, ring = self.video_tokens, self.groups.ulysses_group, self.groups.ring_group
        (qv, qt), (kv, kt), (vv, vt) = (x.split([n, x.shape[1] - n], dim=1) for x in (q, k, v))
        if ulysses is not None:
            qv, kv, vv = (sequence_to_heads(x, ulysses) for x in (qv, kv, vv))
            qt, kt, vt = (heads_of(x, ulysses) for x in (qt, kt, vt))
        if ring is None:
            out = attention(torch.cat([qv, qt], 1), torch.cat([kv, kt], 1), torch.cat([vv, vt], 1), self.padding,
                            backend).unflatten(-1, (qv.shape[2], -1))
        else:
            text_mask = None if self.padding is None else self.padding.key_mask[..., -kt.shape[1]:]
            out = ring_attention(torch.cat([qv, qt], 1), kv, vv, kt, vt, text_mask, ring)
        out_v, out_t = out.split([qv.shape[1], qt.shape[1]], dim=1)
        if ulysses is not None:
            out_v, out_t = heads_to_sequence(out_v, ulysses), gather_heads(out_t, ulysses)
        return torch.cat([out_v, out_t], dim=1).flatten(2)


def _first_frame_share(vectors: ModulationVectors, start: int, count: int) -> ModulationVectors:
    """`vectors` for the video tokens start .. start + count: the first-frame tokens that fall in them."""
    if vectors.first_frame_vec is None:
        return vectors
    tokens = min(max(vectors.first_frame_tokens - start, 0), count)
    return replace(vectors, first_frame_tokens=tokens) if tokens else ModulationVectors(vectors.vec)


def shard(state: StreamState, groups: ParallelGroups) -> StreamState:
    """This rank's share of a whole `StreamState` (from `embed`): its contiguous block of video tokens, their RoPE
    rows with the text rows, the first-frame modulation of the tokens it holds, a `ShardedAttention` layout."""
    groups.config.check_grid(state.grid)
    total = state.img.shape[1]
    count = total // groups.config.sequence_degree
    start = groups.shard * count

    def rows(table: Tensor) -> Tensor:
        return torch.cat([table[start:start + count], table[total:]])

    return replace(state, img=state.img[:, start:start + count],
                   vectors=_first_frame_share(state.vectors, start, count),
                   rope=(rows(state.rope[0]), rows(state.rope[1])),
                   padding=ShardedAttention(groups, state.padding, count))


def gather(sharded: StreamState, whole: StreamState, groups: ParallelGroups) -> StreamState:
    """`whole` (the state `shard` split) with the video tokens of every rank's `sharded` state (after `blocks`) put
    back together (differentiable), and the text tokens of this rank's."""
    return replace(whole, img=all_gather(sharded.img, 1, groups.sequence_group), txt=sharded.txt)
