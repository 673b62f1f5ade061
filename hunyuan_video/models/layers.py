"""Building blocks of the HunyuanVideo transformer: norms, modulation, MLPs, embedders, final layer.

Attribute names follow the official code (`hyvideo/modules/*.py`) so that `state_dict()` keys match the released
checkpoint one for one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim, computed in float32 like the official `RMSNorm`."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """`x * (1 + scale) + shift`, with `shift`/`scale` shaped (B, 1, C)."""
    return torch.addcmul(shift, x, 1 + scale)


def gated_residual(x: Tensor, gate: Tensor, y: Tensor) -> Tensor:
    """`x + gate * y`, with `gate` shaped (B, 1, C)."""
    return torch.addcmul(x, gate, y)


@dataclass(frozen=True)
class ModulationOut:
    """One modulation of a token stream, each field (B, 1, C): `x * (1 + scale) + shift` before a branch, `gate`
    on the branch's output as it joins the residual stream."""

    shift: Tensor
    scale: Tensor
    gate: Tensor

    def modulate(self, x: Tensor) -> Tensor:
        """`x * (1 + scale) + shift`."""
        return modulate(x, self.shift, self.scale)

    def gated_residual(self, x: Tensor, y: Tensor) -> Tensor:
        """`x + gate * y`."""
        return gated_residual(x, self.gate, y)


@dataclass(frozen=True)
class FirstTokensModulation:
    """A modulation per token: the first `tokens` tokens of each sample take `first`, the others `rest`.

    Same interface as `ModulationOut`; the first latent frame's video tokens use it for a condition of their own.
    """

    first: ModulationOut
    rest: ModulationOut
    tokens: int

    def modulate(self, x: Tensor) -> Tensor:
        """`ModulationOut.modulate` of `first` on the leading tokens and of `rest` on the others."""
        n = self.tokens
        return torch.cat([self.first.modulate(x[:, :n]), self.rest.modulate(x[:, n:])], dim=1)

    def gated_residual(self, x: Tensor, y: Tensor) -> Tensor:
        """`ModulationOut.gated_residual` of `first` on the leading tokens and of `rest` on the others."""
        n = self.tokens
        return torch.cat([self.first.gated_residual(x[:, :n], y[:, :n]), self.rest.gated_residual(x[:, n:], y[:, n:])],
                         dim=1)


TokenModulation = ModulationOut | FirstTokensModulation


@dataclass(frozen=True)
class ModulationVectors:
    """The vectors the blocks are modulated by: `vec` (B, hidden) for every token, except that, when
    `first_frame_vec` (B, hidden) is set, the first `first_frame_tokens` tokens of each sample's sequence (the video
    tokens of the first latent frame) take it instead."""

    vec: Tensor
    first_frame_vec: Tensor | None = None
    first_frame_tokens: int = 0


class Modulation(nn.Module):
    """`linear(silu(vec))` split into one `ModulationOut` (or two, `double=True`) (official `ModulateDiT`)."""

    def __init__(self, hidden_size: int, double: bool):
        super().__init__()
        self.factor = 6 if double else 3  # vectors of size hidden_size in `linear`'s output
        self.linear = nn.Linear(hidden_size, self.factor * hidden_size)

    def forward(self, vec: Tensor) -> tuple[ModulationOut, ModulationOut | None]:
        """The modulation(s) of (B, hidden) `vec`: (attention branch, MLP branch or None when single)."""
        out = self.linear(F.silu(vec)).unsqueeze(1).chunk(self.factor, dim=-1)
        return ModulationOut(*out[:3]), ModulationOut(*out[3:]) if self.factor == 6 else None

    def for_tokens(self, vectors: ModulationVectors) -> tuple[TokenModulation, TokenModulation | None]:
        """`forward` of `vectors.vec`, per token when `vectors` holds a first-frame vector."""
        main = self(vectors.vec)
        if vectors.first_frame_vec is None:
            return main
        first = self(vectors.first_frame_vec)
        return tuple(None if m is None else FirstTokensModulation(f, m, vectors.first_frame_tokens)
                     for f, m in zip(first, main))


class MLP(nn.Module):
    """`fc2(act(fc1(x)))`."""

    def __init__(self, dim: int, hidden_dim: int, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def over_token_chunks(fn: Callable[..., Tensor], chunk: int | None, *xs: Tensor) -> Tensor:
    """`fn(*xs)` for a token-wise `fn` of (B, tokens, ...) tensors, computed `chunk` tokens at a time (None: at
    once), so that `fn`'s intermediate activations exist for one chunk only."""
    tokens = xs[0].shape[1]
    if chunk is None or tokens <= chunk:
        return fn(*xs)
    return torch.cat([fn(*(x[:, start:start + chunk] for x in xs)) for start in range(0, tokens, chunk)], dim=1)


def linear_weight(linear: nn.Module, dtype: torch.dtype) -> Tensor:
    """The weight `linear` computes with for inputs of `dtype`: `dequantized_weight(dtype)` of a linear that computes
    with another weight than its `weight` (a float8 linear de-quantised, a LoRA layer with its unfused adapters),
    else its `weight`."""
    dequantized = getattr(linear, "dequantized_weight", None)
    return linear.weight if dequantized is None else dequantized(dtype)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding `[cos(t f), sin(t f)]` of (B,) timesteps, float32, (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of a scalar per sample (timestep or guidance) followed by an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.frequency_embedding_size).to(self.mlp[0].weight.dtype))


class MLPEmbedder(nn.Module):
    """`out_layer(silu(in_layer(x)))`: the pooled CLIP vector into the modulation vector (official `vector_in`)."""

    def __init__(self, in_dim: int, hidden_size: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_size)
        self.out_layer = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class TextProjection(nn.Module):
    """`linear_2(silu(linear_1(x)))`: the pooled LLM states into the refiner's conditioning (official `c_embedder`)."""

    def __init__(self, in_dim: int, hidden_size: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden_size)
        self.linear_2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping 3D patches to tokens: (B, C, T, H, W) -> (B, T/pt * H/ph * W/pw, hidden).

    The weight is the official `Conv3d` with kernel = stride = patch; it is applied as one matmul on the patches.
    """

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        pt, ph, pw = self.patch_size
        x = x.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        return F.linear(x.reshape(b, -1, c * pt * ph * pw), self.proj.weight.flatten(1), self.proj.bias)


class FinalLayer(nn.Module):
    """Modulated LayerNorm and a linear map from tokens to patch pixels."""

    def __init__(self, hidden_size: int, patch_size: tuple[int, int, int], out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, math.prod(patch_size) * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(vec).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))
