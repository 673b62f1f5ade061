import json
from dataclasses import replace

import pytest
import torch
from tiny_models import tiny_transformer

from hunyuan_video import cli
from hunyuan_video.pipelines import HunyuanVideoPipeline
from hunyuan_video.step_cache import (
    HUNYUAN_VIDEO_TEACACHE,
    FirstBlockCache,
    TeaCache,
    calibrate_teacache,
    relative_l1,
)

SIZE = dict(height=32, width=48, num_frames=9)
PROMPT, NEGATIVE = "a red ball rolls across the green floor", "bad quality video"
CACHES = {"teacache": lambda threshold: TeaCache(threshold), "fbcache": lambda threshold: FirstBlockCache(threshold)}


@pytest.fixture(scope="module")
def model():
    return tiny_transformer()


def _state(model, batch: int = 1, seed: int = 0):
    """The embedded inputs of random latents and text for the test-tiny transformer."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    x = torch.randn(batch, c.in_channels, 2, 4, 6, generator=g)
    states, pooled = torch.randn(batch, 5, c.text_states_dim, generator=g), torch.randn(batch, c.text_states_dim_2,
                                                                                         generator=g)
    guidance = torch.full((batch,), 6000.0) if c.guidance_embed else None
    with torch.no_grad():
        return model.embed(x, torch.full((batch,), 500.0), states, None, pooled, guidance)


def _count_block_runs(model, cache, states):
    """Run `cache` over `states` (one per step); the steps on which the blocks after the first ran."""
    ran, blocks = [], model.blocks

    def spy(state, start=0, stop=None):
        if stop is None:
            ran.append(cache.step)
        return blocks(state, start, stop)

    model.blocks = spy
    try:
        cache.start(len(states))
        with torch.no_grad():
            outs = [cache(model, s) for s in states]
    finally:
        del model.blocks
    return ran, outs


@pytest.mark.parametrize("method", CACHES)
def test_threshold_zero_is_the_exact_video(pipe, method):
    latents = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    call = dict(**SIZE, num_inference_steps=5, cfg_scale=3.0, negative_prompt=NEGATIVE, latents=latents,
                output_type="latent")
    want = pipe(PROMPT, **call)
    assert want.cache_steps is None
    try:
        pipe.enable_step_cache(method, 0)
        got = pipe(PROMPT, **call)
        pipe.enable_step_cache(method, 1e9)  # skips every step it may: the video moves away from the exact one
        loose = pipe(PROMPT, **call)
    finally:
        pipe.disable_step_cache()
    assert torch.equal(got.frames, want.frames) and got.cache_steps == {"full": 5, "skipped": 0}
    assert loose.cache_steps == {"full": 2, "skipped": 3} and not torch.equal(loose.frames, want.frames)


@pytest.mark.parametrize("method", CACHES)
def test_an_unchanging_input_skips_every_step_but_the_first_and_last(model, method):
    state = _state(model)
    exact = model.blocks(state).img
    noise = torch.Generator().manual_seed(1)
    # The same input with a 1e-4 wobble per step: every middle step reuses the residual, and its video tokens stay
    # those of the blocks (to the size of the wobble).
    states = [replace(state, img=state.img + 1e-4 * torch.randn(state.img.shape, generator=noise)) for _ in range(6)]
    # The published polynomial is ~0.096 at no change: 4 middle steps accumulate ~0.38.
    ran, outs = _count_block_runs(model, CACHES[method](0.5 if method == "teacache" else 0.05), states)
    assert ran == [0, 5]
    for out in outs:
        torch.testing.assert_close(out.img, exact, atol=2e-3, rtol=0)
    # A large change on every step runs the blocks on every step.
    states = [replace(state, img=state.img + torch.randn(state.img.shape, generator=noise)) for _ in range(6)]
    ran, _ = _count_block_runs(model, CACHES[method](0.5 if method == "teacache" else 0.05), states)
    assert ran == list(range(6))


@pytest.mark.parametrize("method", CACHES)
def test_cfg_halves_keep_separate_caches(model, method):
    """Sample 0 (the negative half) does not change; sample 1 (the positive half) changes by a relative amount that a
    measure over the whole batch halves. The threshold sits between the two: per half, the step must run."""
    state = _state(model, batch=2)
    moved = state.img.clone()
    moved[1] = moved[1] + 0.3 * torch.randn(moved[1].shape, generator=torch.Generator().manual_seed(2))
    after = replace(state, img=moved)
    with torch.no_grad():
        if method == "teacache":
            a, b = model.first_block_input(state), model.first_block_input(after)
        else:
            a, b = model.blocks(state, 0, 1).img - state.img, model.blocks(after, 0, 1).img - after.img
    per_half = relative_l1(b, a)
    joint = relative_l1(b.flatten()[None], a.flatten()[None])[0]
    assert per_half[0] == 0 and joint < per_half[1] / 1.5
    threshold = float(joint + per_half[1]) / 2
    cache = TeaCache(threshold, coefficients=(1.0, 0.0)) if method == "teacache" else FirstBlockCache(threshold)
    ran, _ = _count_block_runs(model, cache, [state, after, after, state])
    assert ran == [0, 1, 3]  # step 1: sample 1 moved too far; step 2: nothing moved since step 1, reused
    if method == "teacache":
        assert cache.accumulated.shape == (2,)


def test_bad_settings_fail_before_any_work(pipe, folder, tmp_path):
    with pytest.raises(ValueError, match="unknown step cache 'tea'"):
        pipe.enable_step_cache("tea")
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        pipe.enable_step_cache("fbcache", -1)
    out = tmp_path / "a.mp4"
    with pytest.raises(SystemExit, match="--cache-threshold must be a finite number >= 0"):
        cli.main(["generate", "x", "-o", str(out), "--model", str(folder), "--cache", "teacache",
                  "--cache-threshold", "nan", "--device", "cpu"])
    with pytest.raises(SystemExit, match="--cache-threshold needs --cache"):
        cli.main(["generate", "x", "-o", str(out), "--model", str(folder), "--cache-threshold", "0.1"])
    assert not out.exists()
    try:
        pipe.enable_model_cpu_offload("cpu")
        pipe.enable_step_cache("teacache")
        with pytest.raises(ValueError, match="use the fbcache step cache with offload"):
            pipe(PROMPT, **SIZE, num_inference_steps=2, output_type="latent")
    finally:
        pipe.disable_step_cache().to("cpu")


def test_generate_prints_the_full_and_skipped_steps(folder, tmp_path, capsys):
    args = ["--height", "32", "--width", "48", "--frames", "9", "--steps", "4", "--dtype", "float32", "--device", "cpu"]
    assert cli.main(["generate", PROMPT, "-o", str(tmp_path / "a.mp4"), "--model", str(folder), "--cache", "fbcache",
                     "--cache-threshold", "0", *args]) == 0
    assert "steps: 4 full, 0 skipped (fbcache, threshold 0)" in capsys.readouterr().out


def test_calibration_fits_the_polynomial_and_the_folder_uses_it(pipe, folder, tmp_path, capsys):
    coefficients, pairs = calibrate_teacache(pipe, [PROMPT, "a blue cube spins"], steps=(4,), cfg_scale=3.0,
                                             negative_prompt=NEGATIVE, **SIZE)
    assert len(coefficients) == 5 and pairs == 2 * 2 * 3  # prompts x CFG halves x consecutive step pairs
    assert pipe.step_cache is None
    pooled, pairs = calibrate_teacache(pipe, [PROMPT], steps=(4, 8), cfg_scale=1.0, **SIZE)
    assert pairs == 3 + 7 and len(pooled) == 5  # each step count's consecutive pairs, pooled
    assert HunyuanVideoPipeline.from_pretrained(folder, dtype=torch.float32).teacache_coefficients \
        == HUNYUAN_VIDEO_TEACACHE
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPT}\n\na blue cube spins\n")
    try:
        assert cli.main(["calibrate-cache", "--model", str(folder), "--prompts-file", str(prompts), "--steps", "4",
                         "5", "--height", "32", "--width", "48", "--frames", "9", "--dtype", "float32", "--device",
                         "cpu"]) == 0
        written = json.loads((folder / "teacache.json").read_text())
        assert written["prompts"] == 2 and written["steps"] == [4, 5] and len(written["coefficients"]) == 5
        loaded = HunyuanVideoPipeline.from_pretrained(folder, dtype=torch.float32)
        assert loaded.teacache_coefficients == tuple(written["coefficients"])
        assert loaded.enable_step_cache("teacache").step_cache.coefficients == tuple(written["coefficients"])
        with pytest.raises(SystemExit, match="no calibration prompt"):
            cli.main(["calibrate-cache", "--model", str(folder)])
        (folder / "teacache.json").write_text('{"coefficients": "x"}')
        with pytest.raises(ValueError, match="teacache.json: 'coefficients' must be a non-empty list"):
            HunyuanVideoPipeline.from_pretrained(folder, dtype=torch.float32)
    finally:
        (folder / "teacache.json").unlink(missing_ok=True)
