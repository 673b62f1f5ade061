"""The embedded tiny model: small, in the official layout, `generate` works without --model, and it draws what
held-out captions (colour/shape/motion combinations never seen in training) ask for better than chance."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hunyuan_video import cli
from hunyuan_video.data.dataset import frames_to_tensor
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.pipelines import HunyuanVideoPipeline, find_model_folder
from hunyuan_video.tiny.evaluate import score
from hunyuan_video.tiny.synth import render_clip, sample_clip
from hunyuan_video.video_io import read_video

TINY = Path(cli.__file__).parent / cli.TINY_MODEL


def test_the_embedded_model_is_small_and_in_the_official_layout():
    folder = find_model_folder(TINY, image=False)
    assert folder.layout == "official"
    i2v = ("hunyuan-video-i2v-720p", "text_encoder_i2v")  # the image-to-video model's own parts (test_tiny_i2v.py)
    weights = [p for p in TINY.rglob("*") if p.suffix in (".safetensors", ".pt", ".bin")
               and p.relative_to(TINY).parts[0] not in i2v]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in weights) <= 56 * 2**20  # 50 MiB, 30 of it the VAE (2x decoder)
    defaults = json.loads((TINY / "generate.json").read_text())
    assert defaults["height"] >= 64 and defaults["width"] >= 64 and defaults["frames"] >= 17


def test_generate_without_model_writes_the_default_video(tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert cli.main(["generate", "a red circle moves to the right on a black background", "-o", str(out),
                     "--seed", "0"]) == 0
    assert str(out) in capsys.readouterr().out
    defaults = json.loads((TINY / "generate.json").read_text())
    assert read_video(out).shape == (defaults["frames"], defaults["height"], defaults["width"], 3)


@pytest.fixture(scope="module")
def pipe():
    return HunyuanVideoPipeline.from_pretrained(TINY, dtype=torch.float32, device="cpu")


def _sample(pipe: HunyuanVideoPipeline, clips: list, defaults: dict, output_type: str = "np", first: int = 0):
    """Videos for `clips`, the i-th from seed `first + i` (as bench/tiny_quality.py seeds them)."""
    shape = pipe.latent_shape(1, defaults["height"], defaults["width"], defaults["frames"])
    latents = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(first + i))
                         for i in range(len(clips))])
    return pipe([c.caption for c in clips], latents=latents, height=defaults["height"], width=defaults["width"],
                num_frames=defaults["frames"], num_inference_steps=defaults["steps"],
                cfg_scale=defaults["cfg_scale"], negative_prompt=defaults["negative_prompt"],
                flow_shift=defaults["shift"], output_type=output_type).frames


HELD_OUT = [sample_clip(i, 0, "test") for i in range(40)]  # main objects: combinations training never shows


def test_the_trained_transformer_follows_held_out_captions_better_than_a_random_one(pipe):
    """In latent space, so that the decoder's quality does not enter: the mean latent of each generated video
    (mostly its background) against the VAE's encoding of the real clip with that caption."""
    defaults = json.loads((TINY / "generate.json").read_text())
    pipe.progress = False
    clips = HELD_OUT[:8]
    videos = torch.stack([frames_to_tensor(render_clip(c)) for c in clips])
    with torch.no_grad():
        real = pipe.vae.encode(videos).mode().mean((2, 3, 4)) * pipe.vae.config.scaling_factor
    trained = _sample(pipe, clips, defaults, "latent").mean((2, 3, 4))
    torch.manual_seed(0)
    kept, pipe.transformer = pipe.transformer, HunyuanVideoTransformer(pipe.transformer.config).eval()
    try:
        random = _sample(pipe, clips, defaults, "latent").mean((2, 3, 4))
    finally:
        pipe.transformer = kept
    error, floor = (trained - real).norm(dim=1), (random - real).norm(dim=1)
    assert error.mean() < 0.5 * floor.mean() and (error < floor).float().mean() >= 0.75, (error, floor)


def test_held_out_captions_get_their_colour(pipe):
    """The first 40 captions and seeds of BENCHMARKS.md's held-out row (frames scored before the mp4 encoding the
    benchmark adds; ~2 s a video on 2 cores, most of it the 2x-wide VAE decoder). One video is 2.5 points: the bar
    of 80% stands well under the row's 94%, where with 8 captions it was a coin flip for a model near it."""
    defaults = json.loads((TINY / "generate.json").read_text())
    pipe.progress = False
    ok = []
    for first in range(0, len(HELD_OUT), 20):
        clips = HELD_OUT[first : first + 20]
        frames = _sample(pipe, clips, defaults, first=first)
        ok += [score(video, [vars(o) for o in clip.objects])["colour_ok"] for video, clip in zip(frames, clips)]
    assert np.mean(ok) > 0.8, ok


def test_unknown_words_are_reported_not_dropped_silently(pipe):
    with pytest.warns(UserWarning, match="do not know the words 'dog', 'fluffy'"):
        pipe.encode_prompt(["a fluffy dog moves up on a black background"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.encode_prompt(["a small purple star moves up on a black background"])
