"""`generate`'s speed, memory and VAE options: grouped in --help, bad values as one line, and a run with them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_models import write_official_model

from hunyuan_video import cli

ARGS = ["--height", "32", "--width", "32", "--frames", "1", "--steps", "2", "--dtype", "float32", "--device", "cpu",
        "--seed", "2"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_official_model(tmp_path_factory.mktemp("model") / "ckpts")


def test_help_groups_the_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    text = capsys.readouterr().out
    speed, vae = text.index("\nspeed and memory"), text.index("\nVAE decode:")
    assert all(f"\n  {option}" in text[speed:vae] for option in ("--attention NAME", "--fp8", "--compile",
                                                                 "--chunk-ffn", "--offload", "--free-text-encoders"))
    assert all(f"\n  {option}" in text[vae:] for option in ("--vae-dtype", "--vae-tile-size", "--vae-tile-frames",
                                                           "--vae-tile-overlap"))


@pytest.mark.parametrize("option, message", [
    (["--attention", "flash3"], "attention backend 'flash3' needs FlashAttention-3"),
    (["--attention", "fast"], "unknown attention backend 'fast': choose one of auto, sdpa"),
    (["--chunk-ffn", "0"], "--chunk-ffn must be a positive number of tokens, got 0"),
    (["--fp8", "--fp8-matmul"], "--fp8-matmul needs a CUDA GPU with fp8 tensor cores"),
    (["--vae-tile-overlap", "1.5"], "--vae-tile-overlap must be in \\[0, 1\\), got 1.5"),
    (["--vae-tile-size", "100"], "--vae-tile-\\*: sample_size \\(pixels\\) must be a positive multiple of"),
])
def test_bad_values_are_one_line_and_write_nothing(model, tmp_path, option, message):
    out = tmp_path / "frames"
    with pytest.raises(SystemExit, match=f"^hunyuan-video generate: {message}") as error:
        cli.main(["generate", "x", "-o", str(out), "--model", str(model), *ARGS, *option])
    assert "\n" not in str(error.value) and not out.exists()


def test_the_exact_options_give_the_same_frames(model, tmp_path):
    def frames(name: str, *options: str) -> np.ndarray:
        out = tmp_path / name
        assert cli.main(["generate", "a cat walks", "-o", str(out), "--model", str(model), *ARGS, *options]) == 0
        return np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])

    plain = frames("plain")
    assert np.array_equal(frames("lean", "--attention", "sdpa", "--chunk-ffn", "5", "--offload",
                                 "--free-text-encoders", "--vae-tile-size", "0", "--vae-dtype", "float32"), plain)
    fp8 = frames("fp8", "--fp8")
    assert fp8.shape == plain.shape and np.abs(fp8.astype(int) - plain).mean() < 8


def test_automatic_and_vae_chunks_give_the_same_frames(model, tmp_path):
    def frames(name: str, *options: str) -> np.ndarray:
        out = tmp_path / name
        assert cli.main(["generate", "a cat walks", "-o", str(out), "--model", str(model), *ARGS, "--frames", "5",
                         *options]) == 0
        return np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])

    plain = frames("plain")
    assert np.array_equal(frames("chunked", "--chunk-ffn", "auto", "--vae-chunk", "1"), plain)
    assert np.array_equal(frames("auto", "--vae-chunk", "auto", "--offload", "model"), plain)
    assert np.array_equal(frames("auto-offload", "--offload", "auto"), plain)
    with pytest.raises(SystemExit, match="^hunyuan-video generate: --vae-chunk must be a positive number of frames"):
        cli.main(["generate", "x", "-o", str(tmp_path / "bad"), "--model", str(model), *ARGS, "--vae-chunk", "0"])
    assert not (tmp_path / "bad").exists()
