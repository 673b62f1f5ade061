"""Tiled encode/decode plumbing with stand-in local codecs (for which tiling must change nothing): output sizes for
many shapes, seam-free blending, grid checks."""

from __future__ import annotations

import pytest
import torch

from hunyuan_video.models.tiling import TileSpec, blend, tiled_decode, tiled_encode


def fake_encode(video: torch.Tensor) -> torch.Tensor:
    """A local 'encoder' on the 4x/8x grid: frame 0 and every 4th frame, every 8th pixel (as the causal VAE, latent
    frame k stands for frame 4k)."""
    return video[:, :, ::4, ::8, ::8] * 2.0


def fake_decode(latents: torch.Tensor) -> torch.Tensor:
    """A local 'decoder': latent frame 0 -> 1 frame, every later one -> 4 frames; 8x8 nearest in space."""
    frames = torch.cat([latents[:, :, :1], latents[:, :, 1:].repeat_interleave(4, dim=2)], dim=2)
    return frames.repeat_interleave(8, dim=3).repeat_interleave(8, dim=4) + 1.0


SHAPES = [(1, 17, 40, 48), (2, 33, 64, 64), (1, 21, 24, 104), (1, 65, 32, 32), (1, 9, 200, 72), (1, 1, 72, 40),
          (1, 37, 8, 8), (1, 49, 56, 96), (1, 45, 96, 56)]


@pytest.mark.parametrize("spec", [TileSpec(32, 16), TileSpec(64, 32), TileSpec(32, 16, 0.5), TileSpec(16, 8, 0.0)])
@pytest.mark.parametrize("shape", SHAPES)
def test_tiled_equals_untiled_for_local_codecs(shape, spec):
    batch, frames, height, width = shape
    video = torch.randn(batch, 2, frames, height, width, dtype=torch.float64)
    latents = fake_encode(video)
    tiled = tiled_encode(fake_encode, video, spec, 8, 4)
    assert tiled.shape == (batch, 2, 1 + (frames - 1) // 4, height // 8, width // 8)
    torch.testing.assert_close(tiled, latents, rtol=1e-12, atol=1e-12)
    decoded = tiled_decode(fake_decode, latents, spec, 8, 4)
    assert decoded.shape == (batch, 2, frames, height, width)
    torch.testing.assert_close(decoded, fake_decode(latents), rtol=1e-12, atol=1e-12)


def test_tiles_are_used():
    """The tiled path really calls the codec on tiles no larger than the spec."""
    seen = []

    def spy(latents):
        seen.append(tuple(latents.shape[2:]))
        return fake_decode(latents)

    tiled_decode(spy, torch.randn(1, 1, 9, 10, 7), TileSpec(32, 16), 8, 4)
    assert len(seen) == 3 * 4 * 3 and max(seen) == (5, 4, 4)  # latent tiles of 4 + 1 frames, 4 x 4


def test_blend_weights_sum_to_one_and_ramp_linearly():
    a, b = torch.full((2, 3, 5, 8, 6), 0.7), torch.full((2, 3, 5, 8, 6), 0.7)
    for dim in (2, 3, 4):
        torch.testing.assert_close(blend(a, b, 4, dim), a, rtol=0, atol=1e-7)
    ramp = blend(torch.zeros(1, 1, 1, 1, 10), torch.ones(1, 1, 1, 1, 10), 4, dim=-1).flatten()
    assert torch.equal(ramp, torch.tensor([0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1]))
    # The extent shrinks to the shorter tile, as official.
    assert blend(torch.zeros(1, 1, 1, 1, 2), torch.ones(1, 1, 1, 1, 10), 4, dim=-1).flatten()[:3].tolist() == [0, .5, 1]


@pytest.mark.parametrize("spec,message", [(TileSpec(36, 64), "sample_size"), (TileSpec(40, 64), "steps 30"),
                                          (TileSpec(256, 20), "sample_tsize"), (TileSpec(256, 64, 1.0), "overlap"),
                                          (TileSpec(0, 64), "positive")])
def test_off_grid_tiles_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        spec.check(8, 4)
