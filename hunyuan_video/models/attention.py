"""One attention entry point for sequences laid out as [video tokens, text tokens, text padding].

The official model runs flash-attention varlen with two segments per sample, its real tokens and its padding,
so padding never reaches a real token. This module reproduces that on three paths, fastest first:

1. no padding (`padding=None`): plain `scaled_dot_product_attention`, so PyTorch picks its flash kernel;
2. padding, flash-attn installed, CUDA, half precision: `flash_attn_varlen_func` with the official segments;
3. otherwise: SDPA with a key mask (a padding query then sees real keys, which changes only padding outputs).

`drop_text_padding` turns the common cases (batch 1, equal lengths) into path 1 before the model runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None


@dataclass(frozen=True)
class Padding:
    """Where the real tokens of a padded batch are, in the forms the attention paths need."""

    key_mask: Tensor  # (B, 1, 1, S) bool, True = real token
    cu_seqlens: Tensor  # (2B + 1,) int32: sample i spans [i S, i S + real_i) then [i S + real_i, (i + 1) S)


def make_padding(text_mask: Tensor, prefix_len: int) -> Padding:
    """The `Padding` of sequences [`prefix_len` real tokens, text tokens with right-padded `text_mask` (B, L)]."""
    batch, seq = text_mask.shape[0], prefix_len + text_mask.shape[1]
    real = F.pad(text_mask.bool(), (prefix_len, 0), value=True)
    starts = torch.arange(batch, device=real.device, dtype=torch.int32) * seq
    bounds = torch.stack([starts + real.sum(1, dtype=torch.int32), starts + seq], dim=1).flatten()
    return Padding(key_mask=real[:, None, None, :], cu_seqlens=F.pad(bounds, (1, 0)))


def drop_text_padding(text_states: Tensor, text_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Cut the padding columns no sample needs; return no mask when every sample then has the same length.

    Works only on a mask held on the CPU (as the tokenizer returns it), where reading it costs no device sync;
    a mask already on an accelerator is moved along unchanged and takes the padded paths.
    """
    if text_mask is None:
        return text_states, None
    if text_mask.shape != text_states.shape[:2]:
        raise ValueError(f"text_mask {tuple(text_mask.shape)} must be (B, L) of text_states {tuple(text_states.shape)}")
    if text_mask.device.type != "cpu":
        return text_states, text_mask.to(text_states.device)
    mask = text_mask.bool()
    lengths = mask.sum(1)
    if not torch.equal(mask, torch.arange(mask.shape[1]) < lengths[:, None]):
        raise ValueError("text_mask must be right-padded (ones then zeros per row), as the official tokenizer gives it")
    if not bool(lengths.all()):
        raise ValueError("every sample needs at least one real text token (its text_mask row is all zeros)")
    longest = int(lengths.max())
    text_states = text_states[:, :longest]
    if bool((lengths == longest).all()):
        return text_states, None
    return text_states, mask[:, :longest].to(text_states.device, non_blocking=True)


def _varlen_supported(q: Tensor) -> bool:
    return flash_attn_varlen_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def attention(q: Tensor, k: Tensor, v: Tensor, padding: Padding | None) -> Tensor:
    """Softmax attention of (B, S, heads, head_dim) tensors; returns (B, S, heads * head_dim)."""
    b, s, h, d = q.shape
    if padding is not None and _varlen_supported(q):
        cu, flat = padding.cu_seqlens, (b * s, h, d)
        out = flash_attn_varlen_func(q.reshape(flat), k.reshape(flat), v.reshape(flat), cu, cu, s, s)
        return out.reshape(b, s, h * d)
    mask = None if padding is None else padding.key_mask
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).reshape(b, s, h * d)
