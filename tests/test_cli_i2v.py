"""Image-to-video folders and `generate --image`: the official I2V layout, `info` naming the kind, and one-line
errors that write nothing."""

import shutil

import numpy as np
import pytest
from PIL import Image
from test_cli_generate import ARGS, _fails
from tiny_models import write_official_i2v_model, write_official_model

from hunyuan_video import cli
from hunyuan_video.pipelines import find_model_folder, folder_transformer_config
from hunyuan_video.video_io import read_video


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Official ckpts/ folders: text-to-video, and image-to-video of each kind."""
    root = tmp_path_factory.mktemp("models")
    models = {"t2v": write_official_model(root / "t2v" / "ckpts"),
            **{kind: write_official_i2v_model(root / kind / "ckpts", kind) for kind in ("token_replace",
                                                                                       "latent_concat")}}
    for kind in ("token_replace", "latent_concat"):
        (models[kind] / "generate.json").write_text('{"height": 64, "width": 64}')
    return models


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "first.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind", ["token_replace", "latent_concat"])
def test_the_official_i2v_layout_and_info_name_the_kind(models, kind, capsys):
    folder = find_model_folder(models[kind])
    assert folder.layout == "official" and folder.image_to_video
    assert folder.text_encoder.name == folder.image_processor.name == "text_encoder_i2v"
    assert folder.lora == models[kind] / "hunyuan-video-i2v-720p" / "lora"
    assert folder_transformer_config(folder).i2v_condition_type == kind
    assert find_model_folder(models[kind] / "hunyuan-video-i2v-720p") == folder
    assert cli.main(["info", str(models[kind])]) == 0
    assert f"official layout, image-to-video ({kind}) model" in capsys.readouterr().out
    assert cli.main(["info", str(models["t2v"])]) == 0
    assert "official layout, text-to-video model" in capsys.readouterr().out


def test_a_ckpts_folder_with_both_models_is_chosen_by_the_image(models, tmp_path):
    both = tmp_path / "ckpts"
    shutil.copytree(models["t2v"], both)
    shutil.copytree(models["token_replace"], both, dirs_exist_ok=True)
    assert find_model_folder(both, image=True).image_to_video
    assert not find_model_folder(both, image=False).image_to_video
    with pytest.raises(ValueError, match="holds both hunyuan-video-t2v-720p/ and hunyuan-video-i2v-720p/"):
        find_model_folder(both)
    (both / "text_encoder_i2v" / "config.json").unlink()
    shutil.rmtree(both / "text_encoder_i2v")
    with pytest.raises(ValueError, match="lacks text_encoder_i2v"):
        find_model_folder(both, image=True)


def test_generate_with_an_image_writes_the_video(models, image, tmp_path, capsys):
    """Token replace at a given size with --i2v-stability; latent concat (4 frames fewer) at the official bucket
    of the 40 x 60 (w x h) image's aspect for the folder's defaults' 64 x 64 pixels (buckets 32 x 128, 64 x 64,
    128 x 32), with a step cache."""
    out = tmp_path / "out.mp4"
    assert cli.main(["generate", "a red ball rolls", "--image", str(image), "-o", str(out), "--model",
                     str(models["token_replace"]), "--seed", "1", "--i2v-stability", *ARGS]) == 0
    assert "seed: 1" in capsys.readouterr().out
    assert read_video(out).shape == (9, 32, 48, 3)
    out = tmp_path / "bucket.gif"
    assert cli.main(["generate", "a red ball rolls", "--image", str(image), "-o", str(out), "--model",
                     str(models["latent_concat"]), "--cache", "fbcache", *ARGS[4:]]) == 0  # no --height, --width
    with Image.open(out) as written:
        assert written.n_frames == 5 and written.size == (64, 64)


def test_image_errors_are_one_line_and_write_nothing(models, image, tmp_path):
    out = tmp_path / "a.mp4"
    run = ["generate", "a red ball rolls", "-o", str(out), *ARGS]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    _fails([*run, "--model", str(models["token_replace"]), "--image", str(tmp_path / "broken.png")],
           "cannot read", "broken.png as an image")
    _fails([*run, "--model", str(models["token_replace"]), "--image", str(tmp_path / "none.png")], "no image file at")
    _fails([*run, "--model", str(models["t2v"]), "--image", str(image)], "text-to-video model: it takes no image")
    _fails([*run, "--model", str(models["latent_concat"])], "image-to-video (latent_concat) model: it needs an image")
    _fails([*run, "--model", str(models["token_replace"]), "--image", str(image), "--width", "40"],
           "width must be a multiple of 16, got 40: use 32 or 48")
    _fails([*run, "--model", str(models["token_replace"]), "--image", str(image), "--frames", "8"], "4k + 1")
    _fails([*run, "--model", str(models["token_replace"]), "--i2v-stability"], "--i2v-stability needs --image")
    _fails(["generate", "x", "-o", str(out), "--image", str(image), "--height", "32", "--model",
            str(models["token_replace"])], "give both --height and --width")
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "broken.png"]


def test_torchrun_ulysses_generate_with_an_image_writes_the_video_of_one_process(models, image, tmp_path):
    """`torchrun --nproc-per-node 2 ... generate --image --ulysses-degree 2` on a token replace model (the first
    latent frame's tokens, modulated from t = 0, all on rank 0's shard) writes the frames one process makes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import hunyuan_video

    run = ["generate", "a red ball", "--image", str(image), "--model", str(models["token_replace"]), "--seed", "4",
           "--cfg-scale", "2", *ARGS]
    env = {**os.environ, "PYTHONPATH": str(Path(hunyuan_video.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                           "hunyuan_video", *run, "--ulysses-degree", "2", "-o", str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # one process with the ranks' thread count: the float sums then round alike
    one = subprocess.run([sys.executable, "-m", "hunyuan_video", *run, "-o", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]

    def frames(name: str) -> np.ndarray:
        return np.stack([np.asarray(Image.open(f)) for f in sorted((tmp_path / name).glob("*.png"))])

    assert frames("two").shape == (9, 32, 48, 3) and np.array_equal(frames("two"), frames("one"))
