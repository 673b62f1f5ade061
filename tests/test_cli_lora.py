"""LoRA from the command line and the pipeline: `generate --lora`, `pipe.load_lora_weights`/`fuse_lora`,
`hunyuan-video lora convert|merge`, and their one-line failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli_generate import _fails
from tiny_models import tiny_transformer, write_official_model

from hunyuan_video import cli
from hunyuan_video.checkpoint import load_transformer, save_transformer
from hunyuan_video.lora import LoraWeight, linear_shapes
from hunyuan_video.lora_formats import read_lora, save_lora
from hunyuan_video.pipelines import HunyuanVideoPipeline
from hunyuan_video.video_io import read_video

ARGS = ["--height", "32", "--width", "32", "--frames", "5", "--steps", "2", "--dtype", "float32", "--device", "cpu",
        "--seed", "4"]
PROMPT = "a cat walks on the grass"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_official_model(tmp_path_factory.mktemp("model") / "ckpts")


def pairs(seed: int, modules=("double_blocks.0.img_attn_qkv", "single_blocks.1.linear1", "double_blocks.1.img_mlp.fc2"),
          rank: int = 2) -> dict[str, LoraWeight]:
    gen = torch.Generator().manual_seed(seed)
    shapes = linear_shapes(tiny_transformer())
    return {m: LoraWeight(torch.randn(rank, shapes[m][1], generator=gen),
                          torch.randn(shapes[m][0], rank, generator=gen), 4.0) for m in modules}


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    root = tmp_path_factory.mktemp("loras")
    save_lora(pairs(1), root / "a.safetensors")
    save_lora(pairs(2), root / "b.safetensors", layout="kohya")
    return root / "a.safetensors", root / "b.safetensors"


def frames_of(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def test_generate_with_loras_matches_the_pipeline_api(model, loras, tmp_path):
    a, b = loras
    assert cli.main(["generate", PROMPT, "-o", str(tmp_path / "lora"), "--model", str(model), *ARGS,
                     "--lora", f"{a}:0.5", "--lora", str(b)]) == 0
    assert cli.main(["generate", PROMPT, "-o", str(tmp_path / "plain"), "--model", str(model), *ARGS]) == 0
    pipe = HunyuanVideoPipeline.from_pretrained(model, dtype=torch.float32, device="cpu")
    pipe.progress = False
    assert pipe.load_lora_weights(a, scale=0.5) == "a"
    assert pipe.load_lora_weights(b, adapter_name="style") == "style"
    call = dict(height=32, width=32, num_frames=5, num_inference_steps=2, seed=4)
    np.testing.assert_array_equal(frames_of(tmp_path / "lora"), pipe(PROMPT, **call).frames[0])
    assert np.abs(frames_of(tmp_path / "lora").astype(int) - frames_of(tmp_path / "plain")).max() > 10
    pipe.fuse_lora()
    fused = pipe(PROMPT, **call).frames[0].astype(int)
    assert np.abs(fused - frames_of(tmp_path / "lora")).max() <= 1
    pipe.unfuse_lora()
    pipe.set_lora_scale("a", 0.0)
    pipe.set_lora_scale("style", 0.0)
    np.testing.assert_array_equal(frames_of(tmp_path / "plain"), pipe(PROMPT, **call).frames[0])


def test_bad_lora_options_are_one_line(model, loras, tmp_path):
    a, _ = loras
    run = ["generate", PROMPT, "-o", str(tmp_path / "x.mp4"), "--model", str(model), *ARGS]
    _fails([*run, "--lora", f"{a}:half"], "PATH:SCALE")
    _fails([*run, "--lora", str(tmp_path / "none.safetensors")], "no checkpoint at")
    unknown = tmp_path / "unknown.safetensors"
    save_lora(pairs(3), unknown)
    from safetensors.torch import load_file, save_file

    tensors = load_file(unknown) | {"lora_te_x.lora_down.weight": torch.zeros(2, 3),
                                    "lora_te_x.lora_up.weight": torch.zeros(3, 2)}
    save_file(tensors, unknown)
    _fails([*run, "--lora", str(unknown)], "2 keys that match no layer", "--lora-ignore-unknown")
    with pytest.warns(UserWarning, match="2 keys that match no layer"):
        assert cli.main([*run[:3], str(tmp_path / "ok"), *run[4:], "--lora", str(unknown),
                         "--lora-ignore-unknown"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok", "unknown.safetensors"]


@pytest.mark.parametrize("layout", ["kohya", "diffusers", "original"])
def test_convert_command_round_trips(loras, tmp_path, layout, capsys):
    a, _ = loras
    out, back = tmp_path / "out.safetensors", tmp_path / "back.safetensors"
    assert cli.main(["lora", "convert", str(a), str(out), "--to", layout]) == 0
    assert cli.main(["lora", "convert", str(out), str(back), "--to", "original"]) == 0
    assert f"wrote {back}" in capsys.readouterr().out
    shapes = linear_shapes(tiny_transformer())
    for module, pair in read_lora(back, shapes).items():
        assert torch.allclose(pair.delta(), pairs(1)[module].delta(), rtol=1e-6, atol=1e-6)


def test_merge_command_writes_the_merged_transformer(loras, tmp_path):
    a, _ = loras
    base = tmp_path / "base.safetensors"
    save_transformer(tiny_transformer(), base)
    assert cli.main(["lora", "merge", str(base), str(a), str(tmp_path / "merged.safetensors"), "--scale", "0.5"]) == 0
    merged, original = load_transformer(tmp_path / "merged.safetensors").state_dict(), tiny_transformer().state_dict()
    lora = pairs(1)
    assert merged.keys() == original.keys()
    for key, value in original.items():
        module = key.removesuffix(".weight")
        want = value + 0.5 * lora[module].delta() if module in lora else value
        assert torch.allclose(merged[key], want, atol=1e-6), key
    _fails(["lora", "merge", str(base), str(base), str(tmp_path / "bad.safetensors")], "not a LoRA file")
    _fails(["lora", "convert", str(base), str(tmp_path / "bad.safetensors"), "--to", "kohya"], "not a LoRA file")
    _fails(["lora", "convert", str(a), str(tmp_path / "bad.pt"), "--to", "kohya"], "must end in .safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_the_shipped_concept_lora_reads_and_changes_the_embedded_model(tmp_path):
    """The example LoRA of `configs/lora_tiny_new_concepts.json` (BENCHMARKS: the heart it teaches): every pair fits
    the embedded transformer, and `generate --lora` on the embedded model draws a different video."""
    tiny = Path(cli.__file__).parent / cli.TINY_MODEL
    shipped = tiny / "lora" / "new_concepts.safetensors"
    transformer = HunyuanVideoPipeline.from_pretrained(tiny, dtype=torch.float32, device="cpu").transformer
    weights = read_lora(shipped, linear_shapes(transformer))
    assert len(weights) == 44 and {w.down.shape[0] for w in weights.values()} == {8}  # every block's default targets
    prompt = "a large white heart moves to the right on a black background"
    run = ["--frames", "5", "--steps", "4", "--seed", "0"]
    assert cli.main(["generate", prompt, "-o", str(tmp_path / "lora.mp4"), *run, "--lora", str(shipped)]) == 0
    assert cli.main(["generate", prompt, "-o", str(tmp_path / "plain.mp4"), *run]) == 0
    lora, plain = (read_video(tmp_path / f"{n}.mp4").astype(int) for n in ("lora", "plain"))
    assert lora.shape == plain.shape and np.abs(lora - plain).max() > 10
