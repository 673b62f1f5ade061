"""One attention entry point, `attention(q, k, v, padding, backend)`, with its kernel chosen by name.

Layout: q, k, v are (B, S, heads, head_dim); the output is (B, S, heads * head_dim). In the transformer every
sequence is [video tokens | text tokens | text padding]: the video tokens of all samples come first (the same count
per sample), so a sequence-parallel wrapper can shard the video part and keep the text part whole. `Padding` says
where each sample's real tokens end (text is right-padded); `padding=None` means every token is real.

The official model runs flash-attention varlen with two segments per sample, its real tokens and its padding, so
padding never reaches a real token. Each backend keeps real-token outputs exact; what a padding query sees differs:

- "auto": the fastest exact path available. On a Hopper GPU in half precision with FlashAttention-3 installed:
  "flash3", padded or not. Otherwise, no padding: SDPA (PyTorch picks its flash kernel). Padding on CUDA in
  half precision with flash-attn installed: flash-attn varlen with the official segments. Otherwise SDPA with a key
  mask (a padding query then sees real keys, which changes only padding outputs).
- "sdpa": `scaled_dot_product_attention`, with a key mask when there is padding.
- "flash": flash-attn (`flash_attn_func`; varlen with the official segments when padded). CUDA, fp16/bf16.
- "flash3": FlashAttention-3 (`flash_attn_interface` from flash-attn's hopper/ build; its varlen function with the
  official segments when padded). Hopper GPUs (compute capability 9.x), fp16/bf16.
- "sage": SageAttention's quantized kernels (`sageattn`; `sageattn_varlen` with the official segments). CUDA,
  fp16/bf16.
- "flex": `torch.nn.attention.flex_attention`, padding as the official segments. Runs anywhere; without
  `torch.compile` it is PyTorch's unfused reference (it materialises the scores), compiled it is a fused kernel.

`padding` may also be a `SequenceLayout`: an object that runs the attention itself, for a sequence split across
processes (see `hunyuan_video/parallel`); the blocks pass it through as they pass a `Padding`. A `BlockLayouts` gives
each block its own layout (`block_layout`), e.g. sliding tile windows per block.

A backend that cannot run (package missing, wrong device or dtype, unknown name) raises `AttentionBackendError`;
`check_attention_backend` raises it before any tensor is computed. `drop_text_padding` turns the common cases
(batch 1, equal lengths) into unpadded sequences before the model runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except ImportError:
    flash_attn_func = flash_attn_varlen_func = None

try:
    from flash_attn_interface import flash_attn_func as flash3_func
    from flash_attn_interface import flash_attn_varlen_func as flash3_varlen_func
except ImportError:
    flash3_func = flash3_varlen_func = None

try:
    from sageattention import sageattn, sageattn_varlen
except ImportError:
    sageattn = sageattn_varlen = None

try:
    from torch.nn.attention.flex_attention import flex_attention
except ImportError:  # torch < 2.5
    flex_attention = None


class AttentionBackendError(ValueError):
    """An attention backend that does not exist or cannot run on the given device and dtype."""


@dataclass(frozen=True)
class Padding:
    """Where the real tokens of a padded batch are, in the forms the attention backends need."""

    key_mask: Tensor  # (B, 1, 1, S) bool, True = real token
    cu_seqlens: Tensor  # (2B + 1,) int32: sample i spans [i S, i S + real_i) then [i S + real_i, (i + 1) S)


class SequenceLayout(Protocol):
    """An attention sequence laid out across processes: called with this process's (B, S, heads, head_dim) q, k, v
    and the backend name, it returns this process's (B, S, heads * head_dim) output, exchanging what it needs."""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, backend: str) -> Tensor: ...


@runtime_checkable
class BlockLayouts(Protocol):
    """A layout that differs from block to block of the transformer (double blocks first, then single)."""

    def block(self, index: int) -> Padding | SequenceLayout | None:
        """The layout of block `index`."""
        ...


AttentionLayout = Padding | SequenceLayout | BlockLayouts | None


def block_layout(layout: AttentionLayout, index: int) -> Padding | SequenceLayout | None:
    """The layout block `index` attends with: `layout.block(index)` for a `BlockLayouts`, else `layout` itself."""
    return layout.block(index) if isinstance(layout, BlockLayouts) else layout


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


def _sdpa(q: Tensor, k: Tensor, v: Tensor, padding: Padding | None) -> Tensor:
    mask = None if padding is None else padding.key_mask
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=mask).transpose(1, 2)


def _varlen(kernel: Callable, q: Tensor, k: Tensor, v: Tensor, padding: Padding) -> Tensor:
    """A varlen kernel over the official segments: (B, S, heads, head_dim) flattened to (B S, heads, head_dim)."""
    b, s, h, d = q.shape
    cu, flat = padding.cu_seqlens, (b * s, h, d)
    return kernel(q.reshape(flat), k.reshape(flat), v.reshape(flat), cu, cu, s, s).reshape(b, s, h, d)


def _varlen_supported(q: Tensor) -> bool:
    return flash_attn_varlen_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


def _first(out: Tensor | tuple) -> Tensor:
    """The output of a FlashAttention-3 call: some releases return (out, softmax_lse), others out alone."""
    return out[0] if isinstance(out, tuple) else out


def _flash3_supported(q: Tensor) -> bool:
    return flash3_varlen_func is not None and _cuda_half_problem(q.device, q.dtype) is None and _is_hopper(q.device)


def _auto(q: Tensor, k: Tensor, v: Tensor, padding: Padding | None) -> Tensor:
    if _flash3_supported(q):
        return _flash3(q, k, v, padding)
    if padding is not None and _varlen_supported(q):
        return _varlen(flash_attn_varlen_func, q, k, v, padding)
    return _sdpa(q, k, v, padding)


def _flash(q: Tensor, k: Tensor, v: Tensor, padding: Padding | None) -> Tensor:
    return flash_attn_func(q, k, v) if padding is None else _varlen(flash_attn_varlen_func, q, k, v, padding)


def _flash3(q: Tensor, k: Tensor, v: Tensor, padding: Padding | None) -> Tensor:
    if padding is None:
        return _first(flash3_func(q, k, v))
    return _varlen(lambda *args: _first(flash3_varlen_func(*args)), q, k, v, padding)


def _sage(q: Tensor, k: Tensor, v: Tensor, padding: Padding | None) -> Tensor:
    return sageattn(q, k, v, tensor_layout="NHD") if padding is None else _varlen(sageattn_varlen, q, k, v, padding)


def _flex(q: Tensor, k: Tensor, v: Tensor, padding: Padding | None) -> Tensor:
    score_mod = None
    if padding is not None:
        real = padding.key_mask[:, 0, 0, :]

        def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return torch.where(real[b, q_idx] == real[b, kv_idx], score, -float("inf"))

    return flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), score_mod=score_mod).transpose(1, 2)


def _anywhere(device: torch.device, dtype: torch.dtype) -> str | None:
    return None


def _cuda_half_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cuda":
        return f"runs on CUDA only, not on {device.type}"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"needs float16 or bfloat16, not {dtype}"
    return None


def _flash_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    if flash_attn_varlen_func is None:
        return "needs the flash-attn package: pip install flash-attn --no-build-isolation"
    return _cuda_half_problem(device, dtype)


def _is_hopper(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


def _flash3_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    if flash3_varlen_func is None:
        return ("needs FlashAttention-3 (the flash_attn_interface module): git clone "
                "https://github.com/Dao-AILab/flash-attention && cd flash-attention/hopper && python setup.py install")
    if problem := _cuda_half_problem(device, dtype):
        return problem
    if not _is_hopper(device):
        major, minor = torch.cuda.get_device_capability(device)
        return f"needs a Hopper GPU (compute capability 9.x), not {major}.{minor}: use flash or sdpa"
    return None


def _sage_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    if sageattn is None:
        return "needs the sageattention package: pip install sageattention"
    return _cuda_half_problem(device, dtype)


def _flex_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    if flex_attention is None:
        return f"needs torch >= 2.5 for flex_attention (this is {torch.__version__}): pip install -U torch"
    return None


@dataclass(frozen=True)
class AttentionBackend:
    """A kernel, (B, S, heads, head_dim) q, k, v and their `Padding` -> (B, S, heads, head_dim), and what it needs:
    `problem(device, dtype)` says why it cannot run there (None: it can)."""

    run: Callable[[Tensor, Tensor, Tensor, Padding | None], Tensor]
    problem: Callable[[torch.device, torch.dtype], str | None]


ATTENTION_BACKENDS: dict[str, AttentionBackend] = {
    "auto": AttentionBackend(_auto, _anywhere),
    "sdpa": AttentionBackend(_sdpa, _anywhere),
    "flash": AttentionBackend(_flash, _flash_problem),
    "sage": AttentionBackend(_sage, _sage_problem),
    "flex": AttentionBackend(_flex, _flex_problem),
    "flash3": AttentionBackend(_flash3, _flash3_problem),
}


def check_attention_backend(name: str, device: torch.device | str, dtype: torch.dtype) -> None:
    """Raise `AttentionBackendError` unless backend `name` exists and can run on `device` with `dtype`."""
    backend = ATTENTION_BACKENDS.get(name)
    if backend is None:
        choices = ", ".join(ATTENTION_BACKENDS)
        raise AttentionBackendError(f"unknown attention backend {name!r}: choose one of {choices}")
    problem = backend.problem(torch.device(device), dtype)
    if problem is not None:
        raise AttentionBackendError(f"attention backend {name!r} {problem}")


def attention(q: Tensor, k: Tensor, v: Tensor, padding: AttentionLayout, backend: str = "auto") -> Tensor:
    """Softmax attention of (B, S, heads, head_dim) tensors with `backend`; returns (B, S, heads * head_dim).

    k and v may be longer than q when `padding` is None (a query block attending to a longer key prefix). A
    `SequenceLayout` as `padding` runs the attention itself (with `backend` for its local part).
    """
    if padding is not None and not isinstance(padding, Padding):
        return padding(q, k, v, backend)
    check_attention_backend(backend, q.device, q.dtype)
    return ATTENTION_BACKENDS[backend].run(q, k, v, padding).flatten(2)
