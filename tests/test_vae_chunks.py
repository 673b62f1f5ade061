"""The VAE decode over chunks of frames: the un-chunked video (tiled and not), a peak bounded by the chunk, and the
automatic chunk kept under its budget."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny_models import randomize_

import hunyuan_video
from hunyuan_video.checkpoint import load_vae
from hunyuan_video.config import VAE_PRESETS
from hunyuan_video.memory_budget import TensorBytesPeak, chunk_for_budget
from hunyuan_video.models import vae_chunks
from hunyuan_video.models.tiling import TileSpec
from hunyuan_video.models.vae import CausalConv3d, CausalVAE

TINY_VAE = Path(hunyuan_video.__file__).parent / "assets" / "tiny" / "hunyuan-video-t2v-720p" / "vae"
# In float64 the chunked decode is the whole one to rounding; in float32 they differ by the GroupNorm's rounding
# (statistics summed in float64 over chunks, the normalisation outside torch's fused kernel), no more than float32
# itself is from the float64 decode (about 1.6e-6 on these random weights).
EXACT, FLOAT32 = 1e-12, 3e-6  # relative: |got - want| / |want| over the whole video


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vae() -> CausalVAE:
    """A random VAE with a wider decoder (its upsamplers and channel changes all present)."""
    config = replace(VAE_PRESETS["test-tiny"], decoder_block_out_channels=(8, 16, 16, 24), decoder_norm_num_groups=4)
    return randomize_(CausalVAE(config), seed=3, std=0.2).eval()


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    assert got.shape == want.shape
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@torch.no_grad()
def test_chunked_decode_equals_the_whole(vae):
    z = torch.randn(2, 16, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    want = vae.decode(z, tiling=False)
    for chunk in (1, 2, 3, 7, 100):  # 1: every causal conv runs on its cache of the previous frames alone
        vae.set_decode_chunk(chunk)
        assert relative(vae.decode(z, tiling=False), want) < FLOAT32
    vae.set_decode_chunk(None)
    assert torch.equal(vae.decode(z, tiling=False), want)
    exact, z = copy.deepcopy(vae).double(), z[:1, :, :3].double()
    want = exact.decode(z, tiling=False)
    exact.set_decode_chunk(2)
    assert relative(exact.decode(z, tiling=False), want) < EXACT


@torch.no_grad()
def test_chunked_tiled_decode_equals_the_tiled_one(vae):
    z = torch.randn(1, 16, 5, 6, 5, generator=torch.Generator().manual_seed(1))
    spec = TileSpec(32, 16)  # 2 x 2 tiles in space, 2 in time
    want = vae.decode(z, tiling=spec)
    vae.set_decode_chunk(3)
    try:
        assert relative(vae.decode(z, tiling=spec), want) < FLOAT32
    finally:
        vae.set_decode_chunk(None)
    exact = copy.deepcopy(vae).double()
    want = exact.decode(z.double(), tiling=spec)
    exact.set_decode_chunk(3)
    assert relative(exact.decode(z.double(), tiling=spec), want) < EXACT


@torch.no_grad()
def test_the_trained_tiny_vae_decodes_the_same_in_chunks():
    vae = load_vae(TINY_VAE)
    z = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    want = vae.decode(z, tiling=False)
    vae.set_decode_chunk(2)
    assert relative(vae.decode(z, tiling=False), want) < FLOAT32


@torch.no_grad()
def test_a_causal_conv_over_chunks_uses_its_cache_of_earlier_frames():
    conv = randomize_(CausalConv3d(4, 6, 3), seed=1)
    x = torch.randn(1, 4, 9, 5, 5, generator=torch.Generator().manual_seed(2))
    want = conv(x)
    for chunk in (1, 2, 4):
        got = vae_chunks.causal_conv(conv, lambda s, e: x[:, :, s:e], x.shape[2], chunk)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # without the cache, a chunk's first frames would see its own first frame repeated: a different result
    alone = torch.cat([conv(x[:, :, s:s + 2]) for s in range(0, 9, 2)], dim=2)
    assert (alone - want).abs().max() > 1e-2


@torch.no_grad()
def test_chunking_bounds_the_decode_peak(vae):
    z = torch.randn(1, 16, 5, 4, 4, generator=torch.Generator().manual_seed(4))
    peaks = {}
    for chunk in (None, 1, 4):
        vae.set_decode_chunk(chunk)
        with TensorBytesPeak() as meter:
            vae.decode(z, tiling=False)
        peaks[chunk] = meter.peak
    vae.set_decode_chunk(None)
    whole, frame = vae_chunks.activation_sizes(vae.decoder, tuple(z.shape), 4)
    assert whole == 17 * 16 * 32 * 32 * 4 and frame == whole // 17  # the last upsampler: 16 channels, 17 frames
    assert peaks[1] < peaks[4] < 0.7 * peaks[None]
    for chunk in (1, 4):  # the resident activations and the chunk's temporaries, as `chunk_for` counts them
        assert peaks[chunk] <= vae_chunks.chunk_bytes(whole, frame, chunk)


@torch.no_grad()
def test_automatic_chunk_keeps_the_decode_under_its_budget(vae, monkeypatch):
    z = torch.randn(1, 16, 5, 4, 4, generator=torch.Generator().manual_seed(4))
    whole, frame = vae_chunks.activation_sizes(vae.decoder, tuple(z.shape), 4)
    want = vae.decode(z, tiling=False)
    vae.set_decode_chunk("auto")
    try:
        for frames in (1, 3, 8):
            budget = vae_chunks.chunk_bytes(whole, frame, frames) + frame // 2
            assert vae_chunks.chunk_for(vae.decoder, tuple(z.shape), 4, budget) == frames
            monkeypatch.setattr("hunyuan_video.models.vae.auto_budget", lambda device, b=budget: b)
            with TensorBytesPeak() as meter:
                got = vae.decode(z, tiling=False)
            assert meter.peak <= budget
            assert relative(got, want) < FLOAT32
        monkeypatch.setattr("hunyuan_video.models.vae.auto_budget", lambda device: 2**40)  # all fits: no chunking
        assert torch.equal(vae.decode(z, tiling=False), want)
    finally:
        vae.set_decode_chunk(None)


def test_tensor_bytes_peak_counts_what_is_alive_at_once():
    weights = torch.ones(5000)  # made before: not counted
    with TensorBytesPeak() as meter:
        a = torch.ones(1000)  # 4000 B
        b = a * weights[:1000]  # 8000 B alive
        del a
        c = b + 1  # a is gone: 8000 B alive
        c.view(10, 100).add_(1)  # a view and an in-place result add nothing
        del b, c
        torch.zeros(500)
    assert meter.peak == 8000 and meter.bytes == 2000


def test_chunk_for_budget_is_the_largest_chunk_that_fits():
    for per_item, items, budget, fixed in [(10, 100, 505, 0), (7, 50, 300, 40), (3, 10, 1000, 0), (10, 9, 5, 100)]:
        chunk = chunk_for_budget(per_item, items, budget, fixed)
        if chunk is None:
            assert fixed + items * per_item <= budget
        elif fixed + per_item <= budget:
            assert fixed + chunk * per_item <= budget < fixed + (chunk + 1) * per_item and chunk < items
        else:
            assert chunk == 1  # not even one fits: the smallest chunk
    assert chunk_for_budget(10, 100, 505) == 50


def test_bad_chunks_and_training_are_refused(vae):
    for bad in (0, -2, 1.5, "half", True):
        with pytest.raises(ValueError, match="positive number of frames or 'auto'"):
            vae.set_decode_chunk(bad)
    vae.set_decode_chunk(2)
    try:
        with pytest.raises(RuntimeError, match="chunked VAE decode is for inference"):
            vae.decode(torch.randn(1, 16, 2, 2, 2), tiling=False)
    finally:
        vae.set_decode_chunk(None)
