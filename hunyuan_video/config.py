"""Model configs as plain dataclasses with the official HunyuanVideo field names, and named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a dict, ignoring keys it does not know; lists become tuples where the field is a tuple."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            continue
        default = known[key].default
        if isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def save_config(config: Any, path: str | Path) -> None:
    """Write a config dataclass as JSON (atomically: see `hunyuan_video.files`)."""
    from hunyuan_video.files import write_text_atomic

    write_text_atomic(path, json.dumps(config_to_dict(config), indent=2) + "\n")


@dataclass
class TransformerConfig:
    """The HunyuanVideo diffusion transformer (official `HYVideoDiffusionTransformer` names)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_channels: int = 16
    out_channels: int = 16
    hidden_size: int = 3072
    heads_num: int = 24
    mlp_width_ratio: float = 4.0
    mlp_act_type: str = "gelu_tanh"
    mm_double_blocks_depth: int = 20
    mm_single_blocks_depth: int = 40
    rope_dim_list: tuple[int, int, int] = (16, 56, 56)
    rope_theta: float = 256.0
    qkv_bias: bool = True
    qk_norm: bool = True
    qk_norm_type: str = "rms"
    guidance_embed: bool = True
    text_states_dim: int = 4096
    text_states_dim_2: int = 768
    refiner_depth: int = 2
    # Image-to-video (official `i2v_condition_type`): None (text-to-video), "latent_concat" (33 input channels:
    # noisy latent, image latent, mask) or "token_replace" (16 channels + guidance embedding; the first latent
    # frame's tokens are modulated by the t = 0 vector).
    i2v_condition_type: str | None = None

    def __post_init__(self) -> None:
        self.patch_size = tuple(self.patch_size)
        self.rope_dim_list = tuple(self.rope_dim_list)
        if self.hidden_size % self.heads_num:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads_num {self.heads_num}")
        head_dim = self.hidden_size // self.heads_num
        if sum(self.rope_dim_list) != head_dim:
            raise ValueError(f"rope_dim_list {self.rope_dim_list} must sum to the head dim {head_dim}")
        if self.mlp_act_type != "gelu_tanh" or self.qk_norm_type != "rms":
            raise ValueError("only mlp_act_type='gelu_tanh' and qk_norm_type='rms' (the released model's) are built")
        self._check_i2v_condition_type()

    def _check_i2v_condition_type(self) -> None:
        kind = self.i2v_condition_type
        if kind not in (None, "latent_concat", "token_replace"):
            raise ValueError(f"unknown i2v_condition_type {kind!r}: use None, 'latent_concat' or 'token_replace'")
        if kind == "latent_concat" and self.in_channels != 2 * self.out_channels + 1:
            raise ValueError(f"i2v_condition_type='latent_concat' needs in_channels {2 * self.out_channels + 1} "
                             f"(latent, image latent, mask), got {self.in_channels}")
        if kind == "token_replace" and (self.in_channels != self.out_channels or not self.guidance_embed):
            raise ValueError(f"i2v_condition_type='token_replace' needs in_channels {self.out_channels} and "
                             f"guidance_embed=True, got in_channels {self.in_channels}, "
                             f"guidance_embed={self.guidance_embed}")


TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    # The released text-to-video model: CFG-distilled, with a guidance embedding.
    "HYVideo-T/2-cfgdistill": TransformerConfig(guidance_embed=True),
    "HYVideo-T/2": TransformerConfig(guidance_embed=False),
    # Small configs for tests and benchmarks.
    "test-tiny": TransformerConfig(
        hidden_size=64, heads_num=4, mm_double_blocks_depth=2, mm_single_blocks_depth=2,
        rope_dim_list=(4, 6, 6), text_states_dim=32, text_states_dim_2=24, refiner_depth=1,
    ),
    "bench-mid": TransformerConfig(
        hidden_size=1024, heads_num=8, mm_double_blocks_depth=8, mm_single_blocks_depth=16,
        rope_dim_list=(16, 56, 56), text_states_dim=4096, text_states_dim_2=768,
    ),
}


@dataclass
class VAEConfig:
    """The 3D causal VAE (official `AutoencoderKLCausal3D` config.json names)."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 16
    norm_num_groups: int = 32
    act_fn: str = "silu"
    scaling_factor: float = 0.476986
    sample_size: int = 256
    sample_tsize: int = 64
    time_compression_ratio: int = 4
    spatial_compression_ratio: int = 8
    mid_block_add_attention: bool = True
    down_block_types: tuple[str, ...] = field(default=("DownEncoderBlockCausal3D",) * 4)
    up_block_types: tuple[str, ...] = field(default=("UpDecoderBlockCausal3D",) * 4)
    # Not official: the decoder's own widths (None: the encoder's widths and groups), for a decoder wider than its
    # encoder.
    decoder_block_out_channels: tuple[int, ...] | None = None
    decoder_norm_num_groups: int | None = None

    def __post_init__(self) -> None:
        self.block_out_channels = tuple(self.block_out_channels)
        if self.decoder_block_out_channels is not None:
            self.decoder_block_out_channels = tuple(self.decoder_block_out_channels)
        self.down_block_types = tuple(self.down_block_types)
        self.up_block_types = tuple(self.up_block_types)
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError(f"down_block_types and up_block_types need one entry per block_out_channels ({n})")
        # The official names, or diffusers' names for the same blocks.
        known = {
            "DownEncoderBlockCausal3D", "UpDecoderBlockCausal3D", "HunyuanVideoDownBlock3D", "HunyuanVideoUpBlock3D"
        }
        if unknown := set(self.down_block_types + self.up_block_types) - known:
            raise ValueError(f"unsupported block types {sorted(unknown)}; known: {sorted(known)}")
        if self.spatial_compression_ratio != 2 ** (n - 1):
            raise ValueError(
                f"spatial_compression_ratio {self.spatial_compression_ratio} must be 2 ** (len(block_out_channels) - 1)"
                f" = {2 ** (n - 1)}"
            )
        if self.time_compression_ratio not in (1, 2, 4) or self.time_compression_ratio > 2 ** (n - 2):
            raise ValueError(f"time_compression_ratio must be 1, 2 or 4 (and fit {n} blocks), got "
                             f"{self.time_compression_ratio}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"every block_out_channels {self.block_out_channels} must be divisible by norm_num_groups "
                             f"{self.norm_num_groups}")
        widths, groups = self.decoder_widths, self.decoder_groups
        if len(widths) != n or any(c % groups for c in widths):
            raise ValueError(f"decoder_block_out_channels {widths} needs one entry per block_out_channels ({n}), each "
                             f"divisible by decoder_norm_num_groups {groups}")
        if self.act_fn != "silu":
            raise ValueError(f"only act_fn='silu' is supported, got {self.act_fn!r}")

    @property
    def decoder_widths(self) -> tuple[int, ...]:
        """The decoder's block_out_channels (in the encoder's order; the decoder runs them backwards)."""
        return self.decoder_block_out_channels or self.block_out_channels

    @property
    def decoder_groups(self) -> int:
        """The decoder's GroupNorm group count."""
        return self.decoder_norm_num_groups or self.norm_num_groups


VAE_PRESETS: dict[str, VAEConfig] = {
    "884-16c-hy": VAEConfig(),
    "test-tiny": VAEConfig(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8),
}
