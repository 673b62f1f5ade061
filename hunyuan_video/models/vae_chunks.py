"""The VAE decoder run a few frames at a time: the same video, a peak bounded by the chunk.

Every layer of the decoder (its causal convolutions, resnets, upsamplers, the mid attention and the output head)
runs over chunks of `chunk` frames of its own input, in time order:

- a causal convolution keeps the last `kernel - 1` frames of the input it saw (its cache) and puts them in front of
  the next chunk; the first chunk gets the first frame repeated instead, the replicate padding of `CausalConv3d`;
- a GroupNorm takes its statistics over the whole tensor first (summed chunk by chunk in float64), then normalises
  chunk by chunk;
- the mid attention projects the keys and values chunk by chunk into one buffer and runs each query frame against
  the keys of the frames up to its own (its frame-causal mask), as the whole layer does;
- every layer writes its chunks into one output tensor (a resnet into the buffer of its first convolution's output,
  which it no longer needs), so a resnet holds its input, one whole activation and one chunk's temporaries.

Inference only: the in-place writes are not differentiable, and a chunked decode under autograd is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hunyuan_video.memory_budget import chunk_for_budget
from hunyuan_video.models.attention import attention

if TYPE_CHECKING:
    from hunyuan_video.models.vae import Attention, CausalConv3d, Decoder, ResnetBlock, Upsample

Frames = Callable[[int, int], Tensor]  # (start, stop) -> the frames start .. stop - 1 of a layer's input
# What one chunk of c frames holds beyond the whole activations, in frames of the largest activation: its c + 2
# frames (the chunk behind the causal conv's cache of 2) about 4 times over (the normalised chunk, its copy behind the
# cache, its padded copy; the convolution's output and the cache's copy).
TRANSIENT_FRAMES = 4
CAUSAL_CACHE_FRAMES = 2
# The whole activations a layer holds: its input and its output.
RESIDENT_ACTIVATIONS = 2


def chunk_bytes(whole: int, frame: int, chunk: int) -> int:
    """The bytes a decode over chunks of `chunk` frames plans for: its resident whole activations (`whole` bytes
    each) and one chunk's temporaries (`frame` bytes per frame of the largest activation)."""
    return RESIDENT_ACTIVATIONS * whole + TRANSIENT_FRAMES * frame * (chunk + CAUSAL_CACHE_FRAMES)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32, or float64 for a float64 tensor: the precision GroupNorm computes in."""
    return torch.promote_types(x.dtype, torch.float32)


def group_norm_stats(norm: nn.GroupNorm, x: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """The mean and 1 / std of each (sample, group) of `x` (B, C, T, H, W) as `norm` computes them, summed over
    chunks of `chunk` frames in float64; both (B, groups, 1), in `x`'s compute dtype."""
    b, groups = x.shape[0], norm.num_groups
    total = torch.zeros(b, groups, dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    for start in range(0, x.shape[2], chunk):
        part = x[:, :, start:start + chunk].double().reshape(b, groups, -1)
        total += part.sum(-1)
        squares += part.square().sum(-1)
    n = x.numel() // (b * groups)
    mean = total / n
    rstd = torch.rsqrt((squares / n - mean.square()).clamp_min(0) + norm.eps)
    dtype = _compute_dtype(x)
    return mean.to(dtype).unsqueeze(-1), rstd.to(dtype).unsqueeze(-1)


def normalize(norm: nn.GroupNorm, stats: tuple[Tensor, Tensor], x: Tensor) -> Tensor:
    """`norm(x)` for a chunk `x` of the tensor whose `group_norm_stats` are `stats`, in float32 (float64 for
    float64) as GroupNorm's kernel computes it: `x * a + b` with `a = rstd * weight` and `b = bias - mean * a` per
    channel."""
    b, c = x.shape[:2]
    dtype = _compute_dtype(x)
    mean, rstd = stats
    a = rstd.expand(b, norm.num_groups, c // norm.num_groups)
    if norm.affine:
        a = a * norm.weight.to(dtype).view(norm.num_groups, -1)
    shift = -mean * a
    if norm.affine:
        shift = shift + norm.bias.to(dtype).view(norm.num_groups, -1)
    return (x.to(dtype) * a.reshape(b, c, 1, 1, 1) + shift.reshape(b, c, 1, 1, 1)).to(x.dtype)


def causal_conv(conv: CausalConv3d, frames: Frames, length: int, chunk: int, residual: Frames | None = None,
                out: Tensor | None = None) -> Tensor:
    """`conv(frames(0, length)) [+ residual(0, length)]` for a stride-1 `CausalConv3d`, `chunk` output frames at a
    time with the convolution's cache of its last input frames; written into `out` when given (which may be the
    tensor `frames` reads from: chunk i is written after chunk i's input is read)."""
    kt = conv.conv.kernel_size[0]
    space = conv.padding[:4] + (0, 0)
    cache = None
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        x = frames(start, stop)
        if kt > 1:
            cache = x[:, :, :1].expand(-1, -1, kt - 1, -1, -1) if cache is None else cache
            x = torch.cat([cache, x], dim=2)
            cache = x[:, :, x.shape[2] - (kt - 1):].clone()
        y = conv.conv(F.pad(x, space, mode="replicate") if any(space) else x)
        del x
        if residual is not None:
            y += residual(start, stop)
        if out is None:
            out = y.new_empty(*y.shape[:2], length, *y.shape[3:])
        out[:, :, start:stop] = y
    return out


def resnet(block: ResnetBlock, x: Tensor, chunk: int) -> Tensor:
    """`block(x)` over chunks of `chunk` frames."""
    length = x.shape[2]
    stats = group_norm_stats(block.norm1, x, chunk)
    h = causal_conv(block.conv1, lambda s, e: F.silu(normalize(block.norm1, stats, x[:, :, s:e])), length, chunk)
    stats = group_norm_stats(block.norm2, h, chunk)
    shortcut = block.conv_shortcut
    skip = (lambda s, e: x[:, :, s:e]) if shortcut is None else (lambda s, e: shortcut.conv(x[:, :, s:e]))
    return causal_conv(block.conv2, lambda s, e: F.silu(normalize(block.norm2, stats, h[:, :, s:e])), length, chunk,
                       residual=skip, out=h)


def upsample(block: Upsample, x: Tensor, chunk: int) -> Tensor:
    """`block(x)` over chunks of `chunk` output frames: each chunk repeats its own input frames."""
    ft, fh, fw = block.factor
    length = 2 * x.shape[2] - 1 if ft == 2 else x.shape[2]

    def frames(start: int, stop: int) -> Tensor:
        # nearest 2x in time without the doubled first frame: output frame j is input frame (j + 1) // 2
        index = torch.arange(start, stop, device=x.device)
        part = x.index_select(2, (index + 1) // 2) if ft == 2 else x[:, :, start:stop]
        return F.interpolate(part, scale_factor=(1, fh, fw), mode="nearest")

    return causal_conv(block.conv, frames, length, chunk)


def frame_causal_attention(layer: Attention, x: Tensor, chunk: int) -> Tensor:
    """`layer(x)` (the mid block's frame-causal attention) over chunks of `chunk` frames."""
    b, c, t, h, w = x.shape
    hw = h * w
    stats = group_norm_stats(layer.group_norm, x, chunk)
    keys, values = (x.new_empty(b, t * hw, 1, c) for _ in range(2))
    out = torch.empty_like(x)
    for start in range(0, t, chunk):
        stop = min(start + chunk, t)
        tokens = normalize(layer.group_norm, stats, x[:, :, start:stop]).permute(0, 2, 3, 4, 1).reshape(b, -1, c)
        q = layer.to_q(tokens).unsqueeze(2)
        keys[:, start * hw:stop * hw] = layer.to_k(tokens).unsqueeze(2)
        values[:, start * hw:stop * hw] = layer.to_v(tokens).unsqueeze(2)
        del tokens
        attended = torch.cat([attention(q[:, (i - start) * hw:(i - start + 1) * hw], keys[:, :(i + 1) * hw],
                                        values[:, :(i + 1) * hw], None) for i in range(start, stop)], dim=1)
        attended = layer.to_out[0](attended).reshape(b, stop - start, h, w, c).permute(0, 4, 1, 2, 3)
        out[:, :, start:stop] = x[:, :, start:stop] + attended
    return out


def decode(decoder: Decoder, z: Tensor, chunk: int) -> Tensor:
    """`decoder(z)` with every layer over chunks of `chunk` frames (inference only)."""
    if torch.is_grad_enabled():
        raise RuntimeError("a chunked VAE decode is for inference: run it under torch.no_grad(), or set the decode "
                           "chunk to None to train")
    x = causal_conv(decoder.conv_in, lambda s, e: z[:, :, s:e], z.shape[2], chunk)
    mid = decoder.mid_block
    x = resnet(mid.resnets[0], x, chunk)
    for layer in mid.attentions:
        x = frame_causal_attention(layer, x, chunk)
    x = resnet(mid.resnets[1], x, chunk)
    for block in decoder.up_blocks:
        for layer in block.resnets:
            x = resnet(layer, x, chunk)
        for layer in block.upsamplers:
            x = upsample(layer, x, chunk)
    stats = group_norm_stats(decoder.conv_norm_out, x, chunk)
    return causal_conv(decoder.conv_out, lambda s, e: F.silu(normalize(decoder.conv_norm_out, stats, x[:, :, s:e])),
                       x.shape[2], chunk)


def activation_sizes(decoder: Decoder, latent_shape: tuple[int, ...], element_bytes: int) -> tuple[int, int]:
    """(the bytes of the decoder's largest whole activation, the bytes of one frame of its largest activation) for
    latents of `latent_shape` (B, C, t, h, w) in elements of `element_bytes`."""
    b, _, t, h, w = latent_shape
    whole = frame = 0

    def see(channels: int) -> None:
        nonlocal whole, frame
        frame = max(frame, b * channels * h * w * element_bytes)
        whole = max(whole, b * channels * h * w * t * element_bytes)

    see(decoder.conv_in.conv.out_channels)
    for block in decoder.up_blocks:
        for layer in block.resnets:
            see(layer.conv1.conv.in_channels)
            see(layer.conv2.conv.out_channels)
        for layer in block.upsamplers:
            ft, fh, fw = layer.factor
            t, h, w = (2 * t - 1 if ft == 2 else t), h * fh, w * fw
            see(layer.conv.conv.out_channels)
    return whole, frame


def chunk_for(decoder: Decoder, latent_shape: tuple[int, ...], element_bytes: int, budget: int) -> int | None:
    """The frames per chunk that keep a chunked decode of `latent_shape` under `budget` bytes as `chunk_bytes`
    counts them (None: no chunking needed; 1 when even that does not fit)."""
    whole, frame = activation_sizes(decoder, latent_shape, element_bytes)
    fixed = chunk_bytes(whole, frame, 0)
    return chunk_for_budget(TRANSIENT_FRAMES * frame, whole // frame, budget, fixed)
