"""Ring attention: each rank holds one block of the video sequence; the key/value blocks travel around the ring
(point-to-point, the next transfer overlapping the current block's attention) and the blocks' outputs are merged
exactly with their log-sum-exp (the online softmax).

Every rank also holds the text tokens whole: their keys/values are one more block, masked by the text padding, so
padding keys never reach a query (a padding query sees the real keys, as the "sdpa" backend does; outputs of real
tokens are exact). The partial results are merged in block order on every rank, so the text outputs, which every
ring rank computes, are bit-identical across ranks.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup


def attention_with_lse(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Softmax attention of (B, S, H, D) q against (B, Sk, H, D) k, v and the log-sum-exp of each query's scores:
    ((B, S, H, D) output, (B, H, S) float32 lse). `key_mask` (B, 1, 1, Sk) bool, True = real key. A fused SDPA
    kernel that returns the log-sum-exp: flash on the CPU, memory-efficient on CUDA."""
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    bias = None if key_mask is None else torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device).masked_fill(
        ~key_mask, -float("inf"))
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias)
    else:
        if bias is not None:
            bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True)[:2]
        lse = lse[..., :q.shape[2]]  # the kernel may pad the query axis of lse
    return out.transpose(1, 2), lse.float()


def merge_attention(parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """The attention over the union of key blocks from each block's (output (B, S, H, D), lse (B, H, S)): outputs
    weighted by `exp(lse_i - logsumexp_i lse_i)`, in float32, in the order given; returns the first output's dtype."""
    lse = torch.logsumexp(torch.stack([p[1] for p in parts]), dim=0)
    out = sum(o.float() * (part_lse - lse).exp().transpose(1, 2).unsqueeze(-1) for o, part_lse in parts)
    return out.to(parts[0][0].dtype)


def ring_attention(q: Tensor, k: Tensor, v: Tensor, text_k: Tensor, text_v: Tensor, text_mask: Tensor | None,
                   group: ProcessGroup) -> Tensor:
    """Attention of this rank's (B, S, H, D) queries over every rank's video key/value block (B, n, H, D) (`k`, `v`
    are this rank's; all ranks' blocks have the same size) and the text keys/values (B, L, H, D) every rank holds,
    masked by `text_mask` (B, 1, 1, L) (None: no padding). Returns (B, S, H, D)."""
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    send_to, recv_from = dist.get_global_rank(group, (rank + 1) % size), dist.get_global_rank(group, (rank - 1) % size)
    blocks: list[tuple[Tensor, Tensor] | None] = [None] * size
    kv = torch.stack([k, v]).contiguous()
    for step in range(size):
        pending = []
        if step < size - 1:
            incoming = torch.empty_like(kv)
            pending = dist.batch_isend_irecv([dist.P2POp(dist.isend, kv, send_to, group),
                                              dist.P2POp(dist.irecv, incoming, recv_from, group)])
        blocks[(rank - step) % size] = attention_with_lse(q, kv[0], kv[1])
        for work in pending:
            work.wait()
        if pending:
            kv = incoming
    return merge_attention([*blocks, attention_with_lse(q, text_k, text_v, text_mask)])
