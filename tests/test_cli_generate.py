import json
import os
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


TINY = Path(cli.__file__).parent / cli.TINY_MODEL


def test_the_cli_and_the_api_give_the_same_frames_with_the_folders_defaults(tmp_path):
    """Neither side is told the size, guidance, negative prompt, shift or dtype: both take generate.json's."""
    from PIL import Image

    from hunyuan_video.pipelines import GenerationDefaults, HunyuanVideoPipeline

    pngs = tmp_path / "frames"
    assert cli.main(["generate", "a red circle moves to the right", "-o", str(pngs), "--seed", "3", "--steps", "2",
                     "--device", "cpu"]) == 0
    from_cli = np.stack([np.asarray(Image.open(p)) for p in sorted(pngs.glob("*.png"))])
    pipe = HunyuanVideoPipeline.from_pretrained(TINY, device="cpu")
    defaults = json.loads((TINY / "generate.json").read_text())
    assert pipe.defaults == GenerationDefaults(**defaults) and pipe.dtype == getattr(torch, defaults["dtype"])
    from_api = pipe("a red circle moves to the right", seed=3, num_inference_steps=2).frames[0]
    assert from_api.shape == (defaults["frames"], defaults["height"], defaults["width"], 3) and from_api.std() > 1
    np.testing.assert_array_equal(from_cli, from_api)


def _fails(argv: list[str], *fragments: str) -> None:
    """`argv` ends in one readable line naming `fragments`: a SystemExit with a message, no traceback."""
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    message = str(error.value.code)
    assert "\n" not in message and "Traceback" not in message and message.startswith("hunyuan-video ")
    for fragment in fragments:
        assert fragment in message, message


def test_a_missing_model_folder_is_named(tmp_path):
    out = tmp_path / "a.mp4"
    _fails(["generate", "x", "-o", str(out), "--model", str(tmp_path / "nowhere")],
           f"model folder {tmp_path / 'nowhere'} does not exist")
    _fails(["info", str(tmp_path / "nowhere")], "does not exist")
    assert not out.exists()


def _copy_with_a_truncated_file(tmp_path: Path, weights: str) -> Path:
    """The embedded model with `weights` cut to half its size (the other files linked)."""
    folder = tmp_path / "model"
    for file in TINY.rglob("*"):
        if file.is_file():
            target = folder / file.relative_to(TINY)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(file)
    broken = folder / weights
    data = broken.read_bytes()
    broken.unlink()
    broken.write_bytes(data[: len(data) // 2])
    return broken


@pytest.mark.parametrize("weights", ["hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.safetensors",
                                     "hunyuan-video-t2v-720p/vae/model.safetensors", "text_encoder/model.safetensors",
                                     "text_encoder_2/model.safetensors"])
def test_a_truncated_weights_file_is_named(tmp_path, weights):
    broken = _copy_with_a_truncated_file(tmp_path, weights)
    out = tmp_path / "a.mp4"
    model = str(tmp_path / "model")
    _fails(["generate", "x", "-o", str(out), "--model", model], str(broken), "incomplete or corrupt")
    _fails(["info", model], str(broken), "incomplete or corrupt")
    assert not out.exists()


def test_bad_options_are_one_line_and_write_nothing(model, tmp_path):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a.mp4"
    run = ["generate", "a cat", "-o", str(out), "--model", str(model), *ARGS]
    cases = [
        (["--guidance", "4"], "no guidance embedding", "--cfg-scale"),  # the embedded model has none
        (["--frames", "0"], "--frames must be 4k + 1, got 0: use 1"),
        (["--steps", "0"], "at least 1, got 0"),
        (["--cfg-scale", "-2"], "--cfg-scale must be at least 1"),
        (["--cfg-scale", "nan"], "--cfg-scale must be a finite number"),
        (["--shift", "0"], "flow shift must be positive"),
        (["--seed", "-1"], "seed must be in [0, 2**64)"),
        (["--fps", "0"], "--fps must be positive"),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["-o", str(tmp_path / "a_file" / "b.mp4")], "cannot write there"),
        (["-o", str(tmp_path / "a_file")], "is a file"),
    ]
    for extra, *fragments in cases:
        argv = run if extra[0] != "--guidance" else ["generate", "a cat", "-o", str(out), *ARGS]
        _fails([*argv, *extra], *fragments)
    _fails(["generate", "  ", "-o", str(out), "--model", str(model), *ARGS], "the prompt is empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_the_destination_is_checked_before_any_compute(model, tmp_path, monkeypatch):
    from hunyuan_video.pipelines import HunyuanVideoPipeline

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr(HunyuanVideoPipeline, "from_pretrained", never)
    run = ["generate", "a cat", "--model", str(model), *ARGS]
    _fails([*run, "-o", str(tmp_path / "a.avi")], "--output", "unknown suffix '.avi'")
    for fps in ("inf", "-3", "nan"):
        _fails([*run, "-o", str(tmp_path / "a.mp4"), "--fps", fps], "--fps must be positive")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes through a read-only mode: make the OS refuse as it does for other users
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real(p, mode, **kw))
    try:
        for target in (locked / "a.mp4", locked / "sub" / "b.GIF", locked / "frames"):
            _fails([*run, "-o", str(target)], "cannot write there", f"{locked} is not a writable folder")
    finally:
        locked.chmod(0o755)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked"] and not any(locked.iterdir())


def test_a_full_disk_or_ctrl_c_while_writing_leaves_the_earlier_file(model, tmp_path, monkeypatch, capsys):
    import errno

    from test_video_io import _fail_on_frame

    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier video")
    run = ["generate", "a cat", "-o", str(out), "--model", str(model), *ARGS]
    monkeypatch.setattr(av.VideoFrame, "from_ndarray", _fail_on_frame(3, OSError(errno.ENOSPC, "No space left")))
    _fails(run, "hunyuan-video generate: [Errno 28] No space left")
    assert out.read_bytes() == b"an earlier video" and os.listdir(tmp_path) == ["out.mp4"]
    capsys.readouterr()
    monkeypatch.setattr(av.VideoFrame, "from_ndarray", _fail_on_frame(3, KeyboardInterrupt()))
    with pytest.raises(SystemExit) as error:
        cli.main(run)
    assert error.value.code == 130
    last = capsys.readouterr().err.rstrip().splitlines()[-1]  # after the progress bars: one line
    assert last == f"hunyuan-video generate: interrupted; nothing written to {out}"
    assert out.read_bytes() == b"an earlier video" and os.listdir(tmp_path) == ["out.mp4"]


def test_suffixes_in_any_case_frames_folders_and_the_float16_warning(model, tmp_path, capsys):
    out = tmp_path / "OUT.MP4"
    assert cli.main(["generate", "a cat", "-o", str(out), "--model", str(model), *ARGS]) == 0
    assert f"wrote {out} (mp4, 9 frames, 48x32)" in capsys.readouterr().out
    assert read_video(out).shape == (9, 32, 48, 3)
    frames = tmp_path / "run.v2"
    half = [a if a != "float32" else "float16" for a in ARGS]
    assert cli.main(["generate", "a cat", "-o", f"{frames}/", "--model", str(model), *half]) == 0
    printed = capsys.readouterr()
    assert f"wrote {frames} (a folder of 9 png frames, 48x32)" in printed.out
    assert "warning: float16 on the CPU" in printed.err and "--dtype float32 or --dtype bfloat16" in printed.err
    assert len(list(frames.glob("*.png"))) == 9


def test_info_on_a_file_says_it_is_a_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    _fails(["info", str(tmp_path / "model.safetensors")], "is a file, not a model folder")
