"""Sliding tile windows per block and head, and their training-free search (`calibrate-sta`)."""

import json
import shutil

import pytest
import torch
from random_weights import tiny_transformer
from test_sparse_attention import _run, _state

from hunyuan_video import cli
from hunyuan_video.pipelines import HunyuanVideoPipeline
from hunyuan_video.sparse_attention import SlidingTile, SlidingTilePlan, read_sliding_tile_plan
from hunyuan_video.sta_search import search_sliding_tile_windows

SIZE = dict(height=64, width=64, num_frames=9)  # a video token grid (3, 4, 4); tiles of (1, 2, 2): 3 x 2 x 2
TILE = (1, 2, 2)
PROMPTS = ["a red ball rolls across the green floor", "a blue cube spins"]
BLOCKS, HEADS = 4, 4  # the "test-tiny" transformer: 2 double + 2 single blocks of 4 heads


def test_windows_per_block_and_head_through_the_model():
    """Full windows per block and head are full attention; mixed ones equal the masked reference, and a plan whose
    blocks all hold one window equals that window."""
    model = tiny_transformer()
    state = _state(model)  # token grid (4, 4, 6), tiles of (2, 2, 2): 2 x 2 x 3
    full = [[(2, 2, 3)] * HEADS] * BLOCKS
    torch.testing.assert_close(_run(model, state, SlidingTile(full, (2, 2, 2))), _run(model, state),
                               atol=1e-5, rtol=1e-5)
    mixed = [[(1, 1, 2), (2, 2, 3), (1, 2, 1), (2, 1, 1)], [(1, 1, 1)] * HEADS, [(2, 2, 3)] * HEADS,
             [(1, 2, 2), (1, 1, 3), (2, 1, 2), (1, 1, 1)]]
    flex = _run(model, state, SlidingTile(mixed, (2, 2, 2), kernel="flex"))
    dense = _run(model, state, SlidingTile(mixed, (2, 2, 2), kernel="reference"))
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_run(model, state, SlidingTile(mixed, (2, 2, 2), kernel="gather")), dense,
                               atol=1e-5, rtol=1e-5)
    assert (flex - _run(model, state)).abs().max() > 1e-3
    torch.testing.assert_close(_run(model, state, SlidingTile([[(1, 1, 2)] * HEADS] * BLOCKS, (2, 2, 2))),
                               _run(model, state, SlidingTile((1, 1, 2), (2, 2, 2))), atol=1e-6, rtol=1e-6)


def test_the_search_writes_a_plan_that_loads_and_generates(pipe, folder, tmp_path):
    model = tmp_path / "ckpts"
    shutil.copytree(folder, model)
    assert cli.main(["calibrate-sta", "--model", str(model), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1],
                     "--tile", *map(str, TILE), "--full-steps", "1", "--steps", "3", "--height", "64", "--width",
                     "64", "--frames", "9", "--dtype", "float32", "--device", "cpu", "--tolerance", "0.8"]) == 0
    plan = read_sliding_tile_plan(model)
    about = json.loads((model / "sliding_tile.json").read_text())
    assert plan.tile == TILE and plan.full_steps == 1 and about["max_error"] <= 0.8
    assert len(plan.windows) == BLOCKS and all(len(heads) == HEADS for heads in plan.windows)
    assert all(all(1 <= w <= n for w, n in zip(window, (3, 2, 2))) for heads in plan.windows for window in heads)
    assert any(window != (3, 2, 2) for heads in plan.windows for window in heads)  # something was cut at 0.8
    loaded = HunyuanVideoPipeline.from_pretrained(model, dtype=torch.float32, device="cpu")
    loaded.progress = False
    loaded.enable_sliding_tile_attention()
    assert loaded.sliding_tile.full_steps == 1 and loaded.sliding_tile.window == plan.windows
    out = tmp_path / "a.mp4"
    assert cli.main(["generate", PROMPTS[0], "-o", str(out), "--model", str(model), "--steps", "2", "--dtype",
                     "float32", "--device", "cpu", "--height", "64", "--width", "64", "--frames", "9",
                     "--sparse-attention", "sta"]) == 0
    assert out.is_file()


def test_the_search_keeps_what_full_attention_needs_and_a_full_plan_is_full_attention(pipe):
    """At tolerance 0 every head keeps the full window, and that plan samples the exact video; a looser tolerance
    picks windows of fewer tiles whose errors stay within it."""
    call = dict(**SIZE, num_inference_steps=2)
    exact, errors = search_sliding_tile_windows(pipe, PROMPTS[:1], 0.0, tile=TILE, **call)
    assert exact.windows == ((((3, 2, 2),) * HEADS),) * BLOCKS and float(errors.max()) < 1e-5
    latents = pipe(PROMPTS[0], **call, seed=3, output_type="latent").frames
    pipe.sliding_tile_plan = exact
    try:
        pipe.enable_sliding_tile_attention()
        torch.testing.assert_close(pipe(PROMPTS[0], **call, seed=3, output_type="latent").frames, latents,
                                   atol=1e-5, rtol=1e-5)
    finally:
        pipe.sliding_tile_plan = None
        pipe.disable_sliding_tile_attention()
    loose, errors = search_sliding_tile_windows(pipe, PROMPTS[:1], 1.2, [(1, 1, 1), (1, 2, 2)], TILE, **call)
    assert {w for heads in loose.windows for w in heads} <= {(1, 1, 1), (1, 2, 2), (3, 2, 2)}
    assert any(w != (3, 2, 2) for heads in loose.windows for w in heads) and float(errors.max()) <= 1.2


def test_bad_plans_and_searches_fail_with_one_line(pipe, folder, tmp_path):
    with pytest.raises(ValueError, match="no sliding tile window given and no searched plan"):
        pipe.enable_sliding_tile_attention()
    pipe.sliding_tile_plan = SlidingTilePlan(TILE, (((1, 1, 1),) * HEADS,) * 3)
    try:
        with pytest.raises(ValueError, match="windows for 3 blocks of \\[4\\] heads; the transformer has 4 blocks"):
            pipe.enable_sliding_tile_attention()
        assert pipe.sliding_tile is None
        with pytest.raises(ValueError, match="has its own tile"):
            pipe.enable_sliding_tile_attention(tile=(1, 1, 1))
    finally:
        pipe.sliding_tile_plan = None
    with pytest.raises(ValueError, match="no calibration prompt"):
        search_sliding_tile_windows(pipe, [])
    with pytest.raises(ValueError, match=r"window \(4, 1, 1\) is larger than the grid of tiles \(3, 2, 2\)"):
        search_sliding_tile_windows(pipe, PROMPTS[:1], 0.1, [(4, 1, 1)], TILE, **SIZE, num_inference_steps=1)
    with pytest.raises(ValueError, match="recorded no step"):
        search_sliding_tile_windows(pipe, PROMPTS[:1], 0.1, tile=TILE, full_steps=2, **SIZE, num_inference_steps=2)
    model = tmp_path / "ckpts"
    shutil.copytree(folder, model)
    (model / "sliding_tile.json").write_text('{"tile": [1, 2], "windows": [[[1, 1, 1]]]}')
    with pytest.raises(ValueError, match="sliding_tile.json: 'tile' is three positive numbers"):
        read_sliding_tile_plan(model)
    with pytest.raises(SystemExit, match="^hunyuan-video calibrate-sta: no calibration prompt"):
        cli.main(["calibrate-sta", "--model", str(folder), "--device", "cpu"])
    with pytest.raises(SystemExit, match="^hunyuan-video calibrate-sta: the tolerance must be a number >= 0"):
        cli.main(["calibrate-sta", "--model", str(folder), "--device", "cpu", "--prompt", "x", "--tolerance", "-1"])
    assert not (folder / "sliding_tile.json").exists()


def test_the_embedded_model_ships_a_plan_that_fits_it():
    from pathlib import Path

    from hunyuan_video.checkpoint import transformer_config_for
    from hunyuan_video.pipelines import find_model_folder

    tiny = find_model_folder(Path(cli.__file__).parent / cli.TINY_MODEL, image=False)
    plan = read_sliding_tile_plan(tiny.root)
    sta = SlidingTile.from_plan(plan)
    sta.check_model(transformer_config_for(tiny.transformer))
    defaults = json.loads((tiny.root / "generate.json").read_text())
    grid = ((defaults["frames"] - 1) // 4 + 1, defaults["height"] // 16, defaults["width"] // 16)  # latent / patch
    assert len(sta.plan(grid)) == len(plan.windows) and sta.full_steps == plan.full_steps
