"""CausalVAE against diffusers' AutoencoderKLHunyuanVideo (every weight random), loading, bad input, training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import randomize_

from hunyuan_video.checkpoint import load_vae, save_vae
from hunyuan_video.config import VAE_PRESETS, VAEConfig, config_to_dict, save_config
from hunyuan_video.models.tiling import TileSpec
from hunyuan_video.models.vae import CausalVAE

diffusers = pytest.importorskip("diffusers")

CONFIG = VAE_PRESETS["test-tiny"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def pair() -> tuple[CausalVAE, diffusers.AutoencoderKLHunyuanVideo]:
    """Our tiny VAE and diffusers' with the same random weights (std 0.2, norms around 1)."""
    ref = diffusers.AutoencoderKLHunyuanVideo(
        latent_channels=CONFIG.latent_channels, block_out_channels=CONFIG.block_out_channels,
        layers_per_block=CONFIG.layers_per_block, norm_num_groups=CONFIG.norm_num_groups,
    )
    randomize_(ref, seed=0, std=0.2).eval()
    ours = CausalVAE(CONFIG).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def diffusers_untiled(ref):
    ref.disable_tiling()
    ref.use_framewise_encoding = ref.use_framewise_decoding = False
    return ref


def test_official_key_names(pair):
    ours, ref = pair
    keys = set(ours.state_dict())
    assert keys == set(ref.state_dict())
    for key in ("encoder.conv_in.conv.weight", "encoder.down_blocks.1.resnets.0.conv1.conv.weight",
                "encoder.down_blocks.1.downsamplers.0.conv.conv.weight", "encoder.mid_block.attentions.0.to_q.weight",
                "encoder.mid_block.attentions.0.to_out.0.bias", "quant_conv.weight", "post_quant_conv.weight",
                "decoder.up_blocks.0.upsamplers.0.conv.conv.weight", "decoder.up_blocks.0.resnets.1.norm1.weight",
                "decoder.conv_out.conv.weight"):
        assert key in keys
    assert not any("downsamplers" in k for k in keys if k.startswith("encoder.down_blocks.3."))


@pytest.mark.parametrize("shape", [(2, 3, 1, 24, 40), (1, 3, 9, 32, 48)])
def test_untiled_parity(pair, shape):
    ours, ref = pair
    ref = diffusers_untiled(ref)
    video = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        want = ref.encode(video).latent_dist
        got = ours.encode(video, tiling=False)
        assert got.mean.shape == (shape[0], 16, 1 + (shape[2] - 1) // 4, shape[3] // 8, shape[4] // 8)
        assert rel_err(got.mean, want.mean) < 1e-5 and rel_err(got.logvar, want.logvar) < 1e-5
        assert rel_err(got.kl(), want.kl().flatten(1).sum(1)) < 1e-5  # official: summed over all dims; diffusers: C,T,H
        sample_want = want.sample(generator=torch.Generator().manual_seed(2))
        assert rel_err(got.sample(torch.Generator().manual_seed(2)), sample_want) < 1e-5
        assert torch.equal(got.mode(), got.mean)
        decoded = ours.decode(sample_want, tiling=False)
        assert decoded.shape == shape
        assert rel_err(decoded, ref.decode(sample_want).sample) < 1e-5


def test_tiled_parity(pair):
    """With tiles of 32 px / 16 frames (overlap 0.25) set on both, tiled encode and decode equal diffusers' (which
    mirror the official `spatial_tiled_*`, `temporal_tiled_*`, `blend_*`)."""
    ours, ref = pair
    ref.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_min_num_frames=16,
                      tile_sample_stride_height=24, tile_sample_stride_width=24, tile_sample_stride_num_frames=12)
    ref.use_framewise_encoding = ref.use_framewise_decoding = True
    shape = (1, 3, 17, 40, 48)  # 2 temporal x 2 x 2 spatial tiles
    video = torch.rand(shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    small = CausalVAE(VAEConfig(**{**config_to_dict(CONFIG), "sample_size": 32, "sample_tsize": 16})).eval()
    small.load_state_dict(ours.state_dict())
    with torch.no_grad():
        want = ref.encode(video).latent_dist.mean
        assert rel_err(ours.encode(video, tiling=TileSpec(32, 16)).mean, want) < 1e-5
        assert rel_err(small.encode(video).mean, want) < 1e-5  # tiling=None: the config's tiles
        decoded = small.decode(want, tiling=True)
        assert decoded.shape == shape
        assert rel_err(decoded, ref.decode(want).sample) < 1e-5


def test_tiled_equals_untiled_in_one_tile_and_on_uniform_video(pair):
    """Within one tile, tiling changes nothing. Across tiles, a uniform video (every tile sees the same content) has
    no seams. (On varied content a random-weight model's tiles differ: GroupNorm statistics and attention are per
    tile, which only a trained, near-local VAE makes small; tests/test_tiling.py checks the blending exactly.)"""
    ours, _ = pair
    video = torch.rand(1, 3, 17, 32, 40, generator=torch.Generator().manual_seed(4)) * 2 - 1
    uniform = torch.tensor([0.3, -0.2, 0.5]).view(1, 3, 1, 1, 1).expand(1, 3, 17, 32, 40).contiguous()
    with torch.no_grad():
        latents = ours.encode(video, tiling=False).mean
        assert torch.equal(ours.encode(video, tiling=TileSpec(64, 32)).mean, latents)
        assert torch.equal(ours.decode(latents, tiling=TileSpec(64, 32)), ours.decode(latents, tiling=False))
        latents = ours.encode(uniform, tiling=False).mean
        assert rel_err(ours.encode(uniform, tiling=TileSpec(32, 16)).mean, latents) < 1e-5
        assert rel_err(ours.decode(latents, tiling=TileSpec(32, 16)), ours.decode(latents, tiling=False)) < 1e-4


def test_bad_input_is_refused_before_compute(pair):
    ours, _ = pair
    cases = [
        (torch.zeros(3, 5, 16, 16), "expects video shaped"),
        (torch.zeros(1, 3, 8, 16, 16), "trim the video to 5 frames"),
        (torch.zeros(1, 3, 5, 20, 16), "multiples of 8"),
        (torch.zeros(1, 4, 5, 16, 16), "3 channels"),
        (torch.full((1, 3, 5, 16, 16), math.nan), "NaN"),
    ]
    for video, message in cases:
        with pytest.raises(ValueError, match=message):
            ours.encode(video)
    for latents, message in [(torch.zeros(16, 2, 2, 2), "shaped"), (torch.zeros(1, 4, 2, 2, 2), "16 latent"),
                             (torch.full((1, 16, 2, 2, 2), math.inf), "NaN or Inf")]:
        with pytest.raises(ValueError, match=message):
            ours.decode(latents)
    for spec, message in [(TileSpec(200, 64), "sample_size"), (TileSpec(256, 24), "sample_tsize"),
                          (TileSpec(256, 64, overlap=1.0), "overlap"), (TileSpec(250, 64), "multiple")]:
        with pytest.raises(ValueError, match=message):
            ours.decode(torch.zeros(1, 16, 2, 2, 2), tiling=spec)
    with pytest.raises(ValueError, match="tiling must be"):
        ours.decode(torch.zeros(1, 16, 2, 2, 2), tiling="yes")
    with pytest.raises(ValueError, match="spatial_compression_ratio"):
        VAEConfig(block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlockCausal3D",) * 3,
                  up_block_types=("UpDecoderBlockCausal3D",) * 3)


def test_load_vae_formats_and_errors(pair, tmp_path):
    ours, ref = pair
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        want = ours.encode(video, tiling=False).mean

    official = tmp_path / "official"
    official.mkdir()
    torch.save({"state_dict": {f"vae.{k}": v for k, v in ours.state_dict().items()}}, official / "pytorch_model.pt")
    save_config(ours.config, official / "config.json")
    save_vae(ours, tmp_path / "vae.safetensors")
    ref.save_pretrained(tmp_path / "diffusers")
    for path in (official, official / "pytorch_model.pt", tmp_path / "vae.safetensors", tmp_path / "diffusers"):
        vae = load_vae(path)
        assert vae.config.block_out_channels == CONFIG.block_out_channels and not vae.training
        with torch.no_grad():
            assert torch.equal(vae.encode(video, tiling=False).mean, want), path
    assert load_vae(official, dtype=torch.bfloat16).quant_conv.weight.dtype == torch.bfloat16

    bare = tmp_path / "bare"
    bare.mkdir()
    torch.save(ours.state_dict(), bare / "pytorch_model.pt")
    with pytest.raises(ValueError, match="no VAE config"):
        load_vae(bare)
    state = dict(ours.state_dict(), extra=torch.zeros(1))
    torch.save(state, bare / "pytorch_model.pt")
    with pytest.raises(ValueError, match="unexpected keys: extra"):
        load_vae(bare, config=CONFIG)
    (bare / "config.json").write_text(json.dumps({**config_to_dict(CONFIG), "latent_channels": 8}))
    torch.save(ours.state_dict(), bare / "pytorch_model.pt")
    with pytest.raises(ValueError, match="shape mismatches"):
        load_vae(bare)
    with pytest.raises(FileNotFoundError):
        load_vae(tmp_path / "nowhere.pt")


def test_training_gradient_checkpointing_and_autocast(pair):
    ours, _ = pair
    vae = CausalVAE(CONFIG)
    vae.load_state_dict(ours.state_dict())
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1

    def grads(checkpointing: bool) -> list[torch.Tensor]:
        vae.zero_grad()
        vae.set_gradient_checkpointing(checkpointing)
        recon, posterior = vae(video, generator=torch.Generator().manual_seed(0))
        ((recon - video).pow(2).mean() + 1e-6 * posterior.kl().mean()).backward()
        return [p.grad.clone() for p in vae.parameters()]

    plain, checkpointed = grads(False), grads(True)
    assert all(g.abs().sum() > 0 for g in plain)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(plain, checkpointed))
    assert vae.last_layer is vae.decoder.conv_out.conv.weight and vae.last_layer.grad is not None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        decoded = vae.decode(vae.encode(video).mode())
    assert decoded.shape == video.shape and torch.isfinite(decoded).all()


def moving_pattern(frames: int = 9, size: int = 32) -> torch.Tensor:
    """A square and a stripe pattern moving across the frame, in [-1, 1]: (1, 3, frames, size, size)."""
    t = torch.arange(frames).view(frames, 1, 1).float()
    y = torch.arange(size).view(1, size, 1).float()
    x = torch.arange(size).view(1, 1, size).float()
    stripes = torch.sin(0.4 * (x + 2 * t))
    square = ((x - 4 - 2 * t).abs() < 5) & ((y - size / 2).abs() < 5)
    red = torch.where(square, 1.0, 0.3 * stripes)
    return torch.stack(torch.broadcast_tensors(red, 0.5 * stripes, torch.cos(0.3 * (y - t)))).unsqueeze(0)


def test_round_trip_of_a_moving_pattern(pair):
    """Encode/decode plumbing on video-like content (random weights: the PSNR itself is reported by bench/vae.py)."""
    ours, _ = pair
    video = moving_pattern(frames=9, size=32)
    with torch.no_grad():
        latents = ours.encode(video).sample(torch.Generator().manual_seed(0))
        assert latents.shape == (1, 16, 3, 4, 4)
        scaled = latents * CONFIG.scaling_factor  # what the diffusion model sees; the caller undoes it
        recon = ours.decode(scaled / CONFIG.scaling_factor)
        image = video[:, :, :1]  # an image is the video T = 1
        assert ours.decode(ours.encode(image).mode()).shape == image.shape
    assert recon.shape == video.shape and torch.isfinite(recon).all()


def test_root_exports():
    import hunyuan_video

    assert hunyuan_video.CausalVAE is CausalVAE and hunyuan_video.load_vae is load_vae
    assert hunyuan_video.VAEConfig is VAEConfig
