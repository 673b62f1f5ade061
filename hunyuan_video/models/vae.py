"""The HunyuanVideo 3D causal VAE: 4x in time, 8x8 in space, 16 latent channels.

Video in [-1, 1] shaped (B, 3, T, H, W) with T = 1 + 4k encodes to latents (B, 16, 1 + k, H/8, W/8): the first
frame is encoded on its own (every convolution pads time on the front only, by repeating the first frame), so an
image is the video T = 1. The module and parameter names are those of the official `AutoencoderKLCausal3D`
(`hyvideo/vae`), so its `pytorch_model.pt` loads with `strict=True`.

Latents are NOT scaled: the diffusion model works on `latents * config.scaling_factor`, and the caller multiplies
before denoising and divides before `decode` (as the official pipeline does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hunyuan_video.config import VAEConfig
from hunyuan_video.memory_budget import auto_budget
from hunyuan_video.models import vae_chunks
from hunyuan_video.models.attention import attention
from hunyuan_video.models.tiling import TileSpec, tiled_decode, tiled_encode


class CausalConv3d(nn.Module):
    """A 3D convolution that sees only the present and the past in time: replicate-pads time on the front only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int | tuple = 1) -> None:
        super().__init__()
        k = kernel_size
        self.padding = (k // 2, k // 2, k // 2, k // 2, k - 1, 0)  # (W left, W right, H top, H bottom, T front, T back)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding, mode="replicate")
        return self.conv(x)


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, plus a (1x1x1-projected when the width changes) skip."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.conv_shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.conv_shortcut is None else self.conv_shortcut(x))


class Attention(nn.Module):
    """Single-head self-attention over all (t, h, w) positions; a query in frame t sees the keys of frames <= t."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        hw = h * w
        tokens = self.group_norm(x).permute(0, 2, 3, 4, 1).reshape(b, t * hw, c)
        q, k, v = (proj(tokens).unsqueeze(2) for proj in (self.to_q, self.to_k, self.to_v))  # (B, S, 1 head, C)
        # The frame-causal mask as a loop over query frames: frame i attends to the prefix of keys 0 .. i,
        # which is exact and never builds the (t*hw)^2 mask.
        frames = [(i * hw, (i + 1) * hw) for i in range(t)]
        out = torch.cat([attention(q[:, start:end], k[:, :end], v[:, :end], None) for start, end in frames], dim=1)
        out = self.to_out[0](out)
        return x + out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)


class MidBlock(nn.Module):
    """resnet -> frame-causal attention -> resnet, at the lowest resolution."""

    def __init__(self, channels: int, groups: int, add_attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(channels, groups)] if add_attention else [])

    def forward(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class DownBlock(nn.Module):
    """Resnets, then a stride-2 causal conv (in time and/or space) when `stride` is not (1, 1, 1)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, stride: tuple) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * layers
        self.resnets = nn.ModuleList([ResnetBlock(widths[i], widths[i + 1], groups) for i in range(layers)])
        # The front time padding of 2 makes frame 0 land alone on output frame 0: 1 + 2k frames -> 1 + k.
        self.downsamplers = nn.ModuleList([Downsample(out_channels, stride)] if stride != (1, 1, 1) else [])

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for downsampler in self.downsamplers:
            x = downsampler(x)
        return x


class Downsample(nn.Module):
    """A 3x3x3 causal conv with stride (t, 2, 2)."""

    def __init__(self, channels: int, stride: tuple) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x upsampling in space (and in time, first frame excepted: 1 + k frames -> 1 + 2k), then a conv."""

    def __init__(self, channels: int, factor: tuple) -> None:
        super().__init__()
        self.factor = factor
        self.conv = CausalConv3d(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        if self.factor[0] == 2:
            x = x[:, :, 1:]  # frames x0 x0 x1 x1 ... -> x0 x1 x1 x2 x2 ...: the first frame is not doubled
        return self.conv(x)


class UpBlock(nn.Module):
    """Resnets, then an `Upsample` when `factor` is not (1, 1, 1)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, factor: tuple) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * layers
        self.resnets = nn.ModuleList([ResnetBlock(widths[i], widths[i + 1], groups) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample(out_channels, factor)] if factor != (1, 1, 1) else [])

    def forward(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for upsampler in self.upsamplers:
            x = upsampler(x)
        return x


def _scale_factors(config: VAEConfig) -> list[tuple[int, int, int]]:
    """Per level, the (time, height, width) factor of its down/up-sampling, as in the official layout: space in the
    first log2(spatial ratio) levels, time in the log2(time ratio) levels before the last."""
    n = len(config.block_out_channels)
    n_space = config.spatial_compression_ratio.bit_length() - 1
    n_time = config.time_compression_ratio.bit_length() - 1
    return [(2 if n - 1 - n_time <= i < n - 1 else 1, *((2, 2) if i < n_space else (1, 1))) for i in range(n)]


def _run(block: nn.Module, x: Tensor, use_checkpoint: bool) -> Tensor:
    """`block(x)`, recomputed in the backward pass instead of stored when `use_checkpoint` and grads are on."""
    if use_checkpoint and torch.is_grad_enabled():
        return checkpoint(block, x, use_reentrant=False)
    return block(x)


class Encoder(nn.Module):
    """Video (B, 3, T, H, W) -> moments (B, 2 * latent_channels, 1 + (T-1)/4, H/8, W/8) before `quant_conv`."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, groups = config.block_out_channels, config.norm_num_groups
        self.conv_in = CausalConv3d(config.in_channels, ch[0], 3)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], config.layers_per_block, groups, factor)
            for i, factor in enumerate(_scale_factors(config))
        )
        self.mid_block = MidBlock(ch[-1], groups, config.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, ch[-1], eps=1e-6)
        self.conv_out = CausalConv3d(ch[-1], 2 * config.latent_channels, 3)
        self.gradient_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for block in [*self.down_blocks, self.mid_block]:
            x = _run(block, x, self.gradient_checkpointing)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    """Latents (B, latent_channels, t, h, w) -> video (B, 3, 1 + 4(t-1), 8h, 8w)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, groups = config.decoder_widths[::-1], config.decoder_groups
        self.conv_in = CausalConv3d(config.latent_channels, ch[0], 3)
        self.mid_block = MidBlock(ch[0], groups, config.mid_block_add_attention)
        self.up_blocks = nn.ModuleList(
            UpBlock(ch[max(i - 1, 0)], ch[i], config.layers_per_block + 1, groups, factor)
            for i, factor in enumerate(_scale_factors(config))
        )
        self.conv_norm_out = nn.GroupNorm(groups, ch[-1], eps=1e-6)
        self.conv_out = CausalConv3d(ch[-1], config.out_channels, 3)
        self.gradient_checkpointing = False
        self.chunk: int | str | None = None  # frames per chunk of each layer, "auto" or None (see `vae_chunks`)

    def forward(self, z: Tensor) -> Tensor:
        chunk = self.chunk
        if chunk == "auto":
            chunk = vae_chunks.chunk_for(self, tuple(z.shape), z.element_size(), auto_budget(z.device))
        if chunk is not None:
            return vae_chunks.decode(self, z, chunk)
        x = self.conv_in(z)
        for block in [self.mid_block, *self.up_blocks]:
            x = _run(block, x, self.gradient_checkpointing)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class DiagonalGaussian:
    """The encoder's posterior N(mean, exp(logvar)) per latent element; logvar clamped to [-30, 20] as official."""

    def __init__(self, moments: Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """mean + std * noise: the given standard normal `noise` (of the mean's shape), else drawn from `generator`
        (on its own device) when given, else from the global generator of the mean's device."""
        if noise is None:
            device = generator.device if generator is not None else self.mean.device
            noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> Tensor:
        """The mean."""
        return self.mean

    def kl(self) -> Tensor:
        """KL divergence to N(0, 1), summed over all but the batch dimension: shape (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=list(range(1, self.mean.ndim)))


def _check_finite(x: Tensor, name: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values; clean the input (e.g. torch.nan_to_num) first")


class CausalVAE(nn.Module):
    """The HunyuanVideo 3D causal VAE (official `AutoencoderKLCausal3D` weights and state-dict keys).

    `encode(video) -> DiagonalGaussian`, `decode(latents) -> video`; both take `tiling`:
    `None` uses `self.tiling` (by default the official `enable_tiling()` tiles from `config.sample_size` pixels
    and `config.sample_tsize` frames with overlap 0.25, used only when the input is larger than one tile),
    `True` the official tiles, `False` never tiles, or a `TileSpec` with other sizes.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv3d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv3d(config.latent_channels, config.latent_channels, 1)
        self.tiling: TileSpec | None = self.official_tiling()

    def official_tiling(self) -> TileSpec:
        """The tiles of the official `enable_tiling()`: `sample_size` pixels, `sample_tsize` frames, overlap 0.25."""
        return TileSpec(self.config.sample_size, self.config.sample_tsize)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each encoder/decoder block in the backward pass instead of storing its activations."""
        self.encoder.gradient_checkpointing = enabled
        self.decoder.gradient_checkpointing = enabled

    def set_decode_chunk(self, frames: int | str | None) -> None:
        """Run each decoder layer `frames` frames at a time (see `models/vae_chunks.py`): the same video with a peak
        bounded by the chunk; "auto" picks the chunk of each decoded tile from the device's free memory
        (`memory_budget.auto_budget`); None decodes each tile at once. Inference only."""
        if frames != "auto" and frames is not None and (isinstance(frames, bool) or not isinstance(frames, int)
                                                        or frames < 1):
            raise ValueError(f"the VAE decode chunk must be a positive number of frames or 'auto', got {frames!r}")
        self.decoder.chunk = frames

    @property
    def last_layer(self) -> Tensor:
        """The weight of the decoder's last conv (for the adaptive weight of a GAN loss)."""
        return self.decoder.conv_out.conv.weight

    def _tile_spec(self, tiling: bool | TileSpec | None) -> TileSpec | None:
        if tiling is None:
            spec = self.tiling
        elif tiling is True:
            spec = self.official_tiling()
        elif tiling is False:
            spec = None
        elif isinstance(tiling, TileSpec):
            spec = tiling
        else:
            raise ValueError(f"tiling must be None, True, False or a TileSpec, got {tiling!r}")
        if spec is not None:
            spec.check(self.config.spatial_compression_ratio, self.config.time_compression_ratio)
        return spec

    def _encode_tile(self, video: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(video))

    def decode_tile(self, latents: Tensor) -> Tensor:
        """The decode of one tile (no tiling): `decoder(post_quant_conv(latents))`; what `decode` runs per tile."""
        return self.decoder(self.post_quant_conv(latents))

    def encode(self, video: Tensor, tiling: bool | TileSpec | None = None) -> DiagonalGaussian:
        """Video (B, 3, 1 + 4k, H, W) in [-1, 1], H and W multiples of 8 -> posterior over (B, 16, 1 + k, H/8, W/8)."""
        c = self.config
        if not isinstance(video, Tensor) or video.ndim != 5:
            got = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"encode expects video shaped (B, C, T, H, W); got {got} (an image is T = 1)")
        _, channels, frames, height, width = video.shape
        if channels != c.in_channels:
            raise ValueError(f"encode expects {c.in_channels} channels in dim 1, got {channels}")
        if (frames - 1) % c.time_compression_ratio:
            raise ValueError(
                f"the number of frames must be 1 + {c.time_compression_ratio}k (1, 5, 9, ...), got {frames}; "
                f"trim the video to {1 + (frames - 1) // c.time_compression_ratio * c.time_compression_ratio} frames"
            )
        r = c.spatial_compression_ratio
        if height % r or width % r:
            raise ValueError(f"height and width must be multiples of {r}, got {height}x{width}; crop or resize")
        _check_finite(video, "video")
        spec = self._tile_spec(tiling)
        if spec is None:
            moments = self._encode_tile(video)
        else:
            moments = tiled_encode(self._encode_tile, video, spec, r, c.time_compression_ratio)
        return DiagonalGaussian(moments)

    def decode(self, latents: Tensor, tiling: bool | TileSpec | None = None) -> Tensor:
        """Latents (B, 16, t, h, w) (unscaled) -> video (B, 3, 1 + 4(t-1), 8h, 8w), roughly in [-1, 1] (unclamped)."""
        c = self.config
        if not isinstance(latents, Tensor) or latents.ndim != 5:
            got = tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__
            raise ValueError(f"decode expects latents shaped (B, C, T, H, W); got {got}")
        if latents.shape[1] != c.latent_channels:
            raise ValueError(f"decode expects {c.latent_channels} latent channels in dim 1, got {latents.shape[1]}")
        _check_finite(latents, "latents")
        spec = self._tile_spec(tiling)
        if spec is None:
            return self.decode_tile(latents)
        return tiled_decode(self.decode_tile, latents, spec, c.spatial_compression_ratio, c.time_compression_ratio)

    def forward(
        self, video: Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, DiagonalGaussian]:
        """Reconstruct `video` without tiling (for training): (reconstruction, posterior)."""
        posterior = self.encode(video, tiling=False)
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(latents, tiling=False), posterior
