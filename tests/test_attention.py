"""The attention switch: each backend that runs on the CPU against a naive softmax, "auto" against the paths it
stands for, the CUDA-only kernels' calling conventions through stand-ins, and the errors for backends that cannot
run.

Padding follows the official segments (a sample's real tokens attend to each other, its padding tokens to each
other); "sdpa" masks padding keys instead, so its padding rows are compared against that key-mask reference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hunyuan_video.models.attention as attention_module
from hunyuan_video.models.attention import (
    ATTENTION_BACKENDS,
    AttentionBackendError,
    attention,
    check_attention_backend,
    make_padding,
)

VIDEO = 10  # video tokens before the text
LENGTHS = (5, 3)  # real text tokens per sample, padded to 6
HEADS, HEAD_DIM = 3, 8


def make_qkv(seq: int = VIDEO + 6, q_len: int | None = None, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(len(LENGTHS), seq, HEADS, HEAD_DIM, generator=gen, dtype=dtype) for _ in range(3))
    return q[:, :q_len], k, v


def padded():
    mask = torch.arange(6)[None] < torch.tensor(LENGTHS)[:, None]
    padding = make_padding(mask, VIDEO)
    return padding, padding.key_mask[:, 0, 0, :]  # (B, S) True = real


def naive(q, k, v, allowed=None):
    """Softmax(q k^T / sqrt(d)) v in float64; `allowed` (B, Sq, Sk) bool marks the pairs that may attend."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / q.shape[-1] ** 0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.double()).flatten(2)


def segments(real):
    return real[:, :, None] == real[:, None, :]


def key_mask(real):
    return real[:, None, :].expand(-1, real.shape[1], -1)


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k):
    """flash_attn_varlen_func / sageattn_varlen in plain torch: attention within each [start, end) segment."""
    out = torch.zeros_like(q)
    bounds = cu_q.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end > start:
            seg = [x[start:end].transpose(0, 1) for x in (q, k, v)]
            out[start:end] = F.scaled_dot_product_attention(*seg).transpose(0, 1)
    return out


def reference_dense(q, k, v, **kwargs):
    """flash_attn_func in plain torch, on (B, S, heads, head_dim)."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


# float32 kernels against a float64 reference over 16 tokens: errors are a few ulps of values of order 1.
TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["auto", "sdpa", "flex"])
@pytest.mark.parametrize("q_len", [None, 4])  # every token; a query block before a longer key prefix (the VAE's use)
def test_cpu_backends_match_a_naive_softmax_without_padding(backend, q_len):
    q, k, v = make_qkv(q_len=q_len)
    out = attention(q, k, v, None, backend)
    assert out.shape == (len(LENGTHS), q.shape[1], HEADS * HEAD_DIM) and out.dtype == q.dtype
    torch.testing.assert_close(out, naive(q, k, v).float(), **TOL)


@pytest.mark.parametrize("backend", ["auto", "sdpa", "flex"])
def test_cpu_backends_match_a_naive_softmax_with_padding(backend):
    q, k, v = make_qkv()
    padding, real = padded()
    out = attention(q, k, v, padding, backend)
    official = naive(q, k, v, segments(real)).float()
    torch.testing.assert_close(out[real], official[real], **TOL)  # real tokens: exact on every backend
    padding_reference = official if backend == "flex" else naive(q, k, v, key_mask(real)).float()
    torch.testing.assert_close(out[~real], padding_reference[~real], **TOL)


def test_auto_is_sdpa_on_the_cpu_and_flash_varlen_where_it_can_run(monkeypatch):
    q, k, v = make_qkv()
    padding, real = padded()
    for pad in (None, padding):
        assert torch.equal(attention(q, k, v, pad, "auto"), attention(q, k, v, pad, "sdpa"))
    calls = []
    monkeypatch.setattr(attention_module, "flash_attn_varlen_func",
                        lambda *args: calls.append(args[3]) or reference_varlen(*args))
    monkeypatch.setattr(attention_module, "_varlen_supported", lambda q: True)
    out = attention(q, k, v, padding, "auto")
    assert len(calls) == 1 and torch.equal(calls[0], padding.cu_seqlens)
    torch.testing.assert_close(out, naive(q, k, v, segments(real)).float(), **TOL)
    assert torch.equal(attention(q, k, v, None, "auto"), attention(q, k, v, None, "sdpa"))  # no padding: SDPA


@pytest.mark.parametrize("backend, dense, varlen", [("flash", "flash_attn_func", "flash_attn_varlen_func"),
                                                    ("sage", "sageattn", "sageattn_varlen")])
def test_cuda_kernels_get_the_layout_they_expect(monkeypatch, backend, dense, varlen):
    """The CUDA-only backends' own code (reshapes, segments, layout flag) run on stand-in kernels."""
    layouts = []

    def dense_kernel(q, k, v, tensor_layout=None):
        layouts.append(tensor_layout)
        return reference_dense(q, k, v)

    monkeypatch.setattr(attention_module, dense, dense_kernel)
    monkeypatch.setattr(attention_module, varlen, reference_varlen)
    q, k, v = make_qkv()
    padding, real = padded()
    run = ATTENTION_BACKENDS[backend].run
    torch.testing.assert_close(run(q, k, v, None).flatten(2), naive(q, k, v).float(), **TOL)
    assert layouts == [None if backend == "flash" else "NHD"]
    torch.testing.assert_close(run(q, k, v, padding).flatten(2), naive(q, k, v, segments(real)).float(), **TOL)


def test_unknown_backend_names_the_choices():
    assert issubclass(AttentionBackendError, ValueError)
    with pytest.raises(AttentionBackendError, match="unknown attention backend 'fast': choose one of auto, sdpa, "
                                                    "flash, sage, flex"):
        check_attention_backend("fast", "cpu", torch.float32)
    q, k, v = make_qkv()
    with pytest.raises(AttentionBackendError, match="unknown attention backend 'fast'"):
        attention(q, k, v, None, "fast")


@pytest.mark.parametrize("backend, module_name, package", [("flash", "flash_attn_varlen_func", "flash-attn"),
                                                           ("sage", "sageattn", "sageattention")])
def test_cuda_backends_say_what_they_need(monkeypatch, backend, module_name, package):
    monkeypatch.setattr(attention_module, module_name, None)
    with pytest.raises(AttentionBackendError, match=f"'{backend}' needs the {package} package: pip install {package}"):
        check_attention_backend(backend, "cuda", torch.bfloat16)
    monkeypatch.setattr(attention_module, module_name, reference_varlen)  # installed from here on
    with pytest.raises(AttentionBackendError, match=f"'{backend}' runs on CUDA only, not on cpu"):
        check_attention_backend(backend, "cpu", torch.bfloat16)
    with pytest.raises(AttentionBackendError, match=f"'{backend}' needs float16 or bfloat16, not torch.float32"):
        check_attention_backend(backend, "cuda", torch.float32)
    check_attention_backend(backend, "cuda", torch.float16)
    q, k, v = make_qkv()
    with pytest.raises(AttentionBackendError, match="runs on CUDA only"):  # checked before the kernel is called
        attention(q, k, v, None, backend)


def test_cpu_backends_run_anywhere():
    for backend in ("auto", "sdpa", "flex"):
        for device, dtype in (("cpu", torch.float32), ("cpu", torch.bfloat16), ("cuda", torch.float16)):
            check_attention_backend(backend, device, dtype)


def test_flash3_gets_the_layout_it_expects_and_returns_its_first_output(monkeypatch):
    """FlashAttention-3's dense and varlen calls through stand-ins that return (out, softmax_lse) as some releases
    do; "auto" takes flash3 wherever it can run."""
    def with_lse(kernel):
        return lambda *args: (kernel(*args), torch.zeros(1))

    monkeypatch.setattr(attention_module, "flash3_func", with_lse(reference_dense))
    monkeypatch.setattr(attention_module, "flash3_varlen_func", with_lse(reference_varlen))
    q, k, v = make_qkv()
    padding, real = padded()
    run = ATTENTION_BACKENDS["flash3"].run
    torch.testing.assert_close(run(q, k, v, None).flatten(2), naive(q, k, v).float(), **TOL)
    torch.testing.assert_close(run(q, k, v, padding).flatten(2), naive(q, k, v, segments(real)).float(), **TOL)
    monkeypatch.setattr(attention_module, "_flash3_supported", lambda q: True)
    monkeypatch.setattr(attention_module, "flash3_varlen_func", lambda *args: (torch.full_like(args[0], 7.0), None))
    assert torch.equal(attention(q, k, v, padding, "auto"), torch.full((2, VIDEO + 6, HEADS * HEAD_DIM), 7.0))


def test_flash3_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(attention_module, "flash3_varlen_func", None)
    with pytest.raises(AttentionBackendError, match="'flash3' needs FlashAttention-3 \\(the flash_attn_interface "
                                                    "module\\): git clone .*flash-attention/hopper"):
        check_attention_backend("flash3", "cuda", torch.bfloat16)
    monkeypatch.setattr(attention_module, "flash3_varlen_func", reference_varlen)  # installed from here on
    with pytest.raises(AttentionBackendError, match="'flash3' runs on CUDA only, not on cpu"):
        check_attention_backend("flash3", "cpu", torch.bfloat16)
    with pytest.raises(AttentionBackendError, match="'flash3' needs float16 or bfloat16, not torch.float32"):
        check_attention_backend("flash3", "cuda", torch.float32)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(AttentionBackendError, match="'flash3' needs a Hopper GPU \\(compute capability 9.x\\), "
                                                    "not 8.0: use flash or sdpa"):
        check_attention_backend("flash3", "cuda", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    check_attention_backend("flash3", "cuda", torch.bfloat16)
