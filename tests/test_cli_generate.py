from pathlib import Path

import av
import numpy as np
import pytest
import torch
from tiny_models import write_official_model

from hunyuan_video import cli
from hunyuan_video.video_io import read_video

ARGS = ["--height", "32", "--width", "48", "--frames", "9", "--steps", "2", "--dtype", "float32", "--device", "cpu"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_official_model(tmp_path_factory.mktemp("model") / "ckpts")


def test_generate_writes_a_playable_mp4(model, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert cli.main(["generate", "a cat walks on the grass", "-o", str(out), "--model", str(model), "--seed", "5",
                     "--fps", "12", *ARGS]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "seed: 5" in printed and "denoise" in printed and "decode" in printed
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 12
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.pix_fmt == "yuv420p"
    assert len(frames) == 9 and frames[0].shape == (32, 48, 3)
    # The same seed written as png frames gives the same video (up to the mp4's lossy coding).
    pngs = tmp_path / "frames"
    cli.main(["generate", "a cat walks on the grass", "-o", str(pngs), "--model", str(model), "--seed", "5", *ARGS])
    from PIL import Image

    still = np.stack([np.asarray(Image.open(p)) for p in sorted(pngs.glob("*.png"))])
    assert still.shape == (9, 32, 48, 3) and still.std() > 1
    # yuv420p halves the colour resolution of this noisy random video: compare each frame's mean colour.
    assert np.abs(still.mean((1, 2)) - read_video(out).mean((1, 2))).max() < 4
    gif = tmp_path / "out.gif"
    cli.main(["generate", "a cat walks on the grass", "-o", str(gif), "--model", str(model), "--seed", "5", *ARGS])
    with Image.open(gif) as image:
        assert image.n_frames == 9 and image.size == (48, 32)


def test_generate_rejects_bad_sizes_and_missing_model(model, tmp_path):
    with pytest.raises(SystemExit, match="4k \\+ 1.*9 or 13"):
        cli.main(["generate", "x", "-o", str(tmp_path / "a.mp4"), "--model", str(model), *ARGS, "--frames", "10"])
    if not (Path(cli.__file__).parent / cli.TINY_MODEL).is_dir():
        with pytest.raises(SystemExit, match="--model"):
            cli.main(["generate", "x", "-o", str(tmp_path / "a.mp4")])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA GPU"):
            cli.main(["generate", "x", "-o", str(tmp_path / "a.mp4"), "--model", str(model), "--device", "cuda"])
    with pytest.raises(SystemExit, match="expected one of these layouts"):
        cli.main(["generate", "x", "-o", str(tmp_path / "a.mp4"), "--model", str(tmp_path), *ARGS])


def test_info_prints_the_layout_and_parameter_counts(model, capsys):
    assert cli.main(["info", str(model)]) == 0
    printed = capsys.readouterr().out
    assert "official layout" in printed
    for part in ("transformer:", "vae:", "text_encoder:", "text_encoder_2:", "float32", "hidden_size: 64"):
        assert part in printed
