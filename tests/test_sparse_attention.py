import pytest
import torch
from random_weights import tiny_transformer

from hunyuan_video import cli
from hunyuan_video.sparse_attention import SlidingTile, default_tile

SIZE = dict(height=64, width=64, num_frames=9)  # latents (3, 8, 8): a video token grid (3, 4, 4)
PROMPT = "a red ball rolls across the green floor"


@pytest.fixture(scope="module")
def model():
    return tiny_transformer()


def _state(model):
    """The embedded inputs of two samples (the second with 3 of 5 real text tokens) on a (4, 4, 6) token grid."""
    g = torch.Generator().manual_seed(0)
    c = model.config
    x = torch.randn(2, c.in_channels, 4, 8, 12, generator=g)
    states, pooled = torch.randn(2, 5, c.text_states_dim, generator=g), torch.randn(2, c.text_states_dim_2, generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    guidance = torch.full((2,), 6000.0) if c.guidance_embed else None
    with torch.no_grad():
        return model.embed(x, torch.full((2,), 500.0), states, mask, pooled, guidance)


def _run(model, state, sta: SlidingTile | None = None):
    with torch.no_grad():
        return model.head(model.blocks(state if sta is None else sta.apply(state)))


def test_a_window_covering_everything_is_full_attention_through_the_model(model):
    state = _state(model)
    assert state.grid == (4, 4, 6) and state.padding is not None
    full = _run(model, state)
    for kernel in ("flex", "gather", "reference"):
        sta = _run(model, state, SlidingTile((2, 2, 3), tile=(2, 2, 2), kernel=kernel))
        torch.testing.assert_close(sta, full, atol=1e-5, rtol=1e-5)


def test_a_small_window_differs_from_full_attention_and_equals_the_masked_reference(model):
    state = _state(model)
    flex = _run(model, state, SlidingTile((1, 1, 2), tile=(2, 2, 2), kernel="flex"))
    dense = _run(model, state, SlidingTile((1, 1, 2), tile=(2, 2, 2), kernel="reference"))
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
    gather = _run(model, state, SlidingTile((1, 1, 2), tile=(2, 2, 2), kernel="gather"))
    torch.testing.assert_close(gather, dense, atol=1e-5, rtol=1e-5)
    assert (flex - _run(model, state)).abs().max() > 1e-3


def test_with_a_step_cache_at_threshold_zero_it_is_the_same_video(pipe):
    def run():
        return pipe(PROMPT, **SIZE, num_inference_steps=2, seed=1, output_type="latent").frames

    pipe.enable_sliding_tile_attention((1, 1, 1), tile=(1, 2, 2), full_steps=1)
    try:
        alone = run()
        pipe.enable_step_cache("teacache", 0)
        torch.testing.assert_close(run(), alone, atol=0, rtol=0)
    finally:
        pipe.disable_step_cache().disable_sliding_tile_attention()


def test_the_first_full_steps_run_full_attention(pipe):
    def latents_per_step(**sta):
        if sta:
            pipe.enable_sliding_tile_attention((1, 1, 1), tile=(1, 2, 2), **sta)
        seen = []
        try:
            pipe(PROMPT, **SIZE, num_inference_steps=3, seed=1, output_type="latent",
                 callback=lambda i, x: seen.append(x.clone()))
        finally:
            pipe.disable_sliding_tile_attention()
        return seen

    exact = latents_per_step()
    first_two = latents_per_step(full_steps=2)
    assert torch.equal(first_two[0], exact[0]) and torch.equal(first_two[1], exact[1])
    assert not torch.equal(first_two[2], exact[2])
    assert not torch.equal(latents_per_step(full_steps=0)[0], exact[0])
    assert all(torch.equal(a, b) for a, b in zip(latents_per_step(full_steps=3), exact))


def test_the_default_tile_divides_the_grid():
    assert default_tile((30, 48, 80)) == (6, 8, 8)  # 768 x 1280, 117 frames: STA's tiles
    assert default_tile((33, 45, 80)) == (3, 5, 8)  # 720 x 1280, 129 frames
    assert default_tile((3, 4, 6)) == (3, 4, 6)
    assert default_tile((7, 9, 10)) == (1, 3, 5)


def test_bad_settings_fail_before_any_work(pipe, model, folder, tmp_path):
    with pytest.raises(ValueError, match="window is three positive numbers"):
        SlidingTile((0, 1, 1))
    with pytest.raises(ValueError, match="full_steps must be >= 0"):
        SlidingTile((1, 1, 1), full_steps=-1)
    with pytest.raises(ValueError, match=r"does not divide the video token grid \(3, 4, 4\): use per axis one of "
                                         r"\{1,3\} x \{1,2,4\} x \{1,2,4\}"):
        SlidingTile((1, 1, 1), tile=(2, 2, 2)).plan((3, 4, 4))
    sta = SlidingTile((1, 1, 1), tile=(2, 2, 2))
    with pytest.raises(ValueError, match="takes the state `embed` returns"):
        sta.apply(sta.apply(_state(model)))
    try:
        pipe.enable_sliding_tile_attention((1, 2, 1), tile=(1, 2, 2))
        with pytest.raises(ValueError, match=r"larger than the grid of tiles \(3, 1, 2\).*use at most 3 1 2"):
            pipe(PROMPT, height=32, width=64, num_frames=9, num_inference_steps=1, output_type="latent")
        pipe.parallel = object()  # stands for enable_parallel, which needs a process group
        with pytest.raises(ValueError, match="does not run with parallel inference"):
            pipe(PROMPT, **SIZE, num_inference_steps=1, output_type="latent")
    finally:
        pipe.parallel = None
        pipe.disable_sliding_tile_attention()
    out = tmp_path / "a.mp4"
    base = ["generate", "x", "-o", str(out), "--model", str(folder), "--device", "cpu"]
    with pytest.raises(SystemExit, match="--sparse-attention sta needs --sta-window"):
        cli.main([*base, "--sparse-attention", "sta"])
    with pytest.raises(SystemExit, match="--sta-window and --sta-full-steps need --sparse-attention sta"):
        cli.main([*base, "--sta-window", "1", "1", "1"])
    with pytest.raises(SystemExit, match="--sta-full-steps must be >= 0, got -1"):
        cli.main([*base, "--sparse-attention", "sta", "--sta-window", "1", "1", "1", "--sta-full-steps", "-1"])
    with pytest.raises(SystemExit, match="--sta-window .* is larger than the grid of tiles"):
        cli.main([*base, "--sparse-attention", "sta", "--sta-window", "9", "1", "1", "--height", "32", "--width",
                  "48", "--frames", "9", "--steps", "1"])
    assert not out.exists()


def test_generate_with_sliding_tile_attention(folder, tmp_path):
    out = tmp_path / "a.mp4"
    assert cli.main(["generate", PROMPT, "-o", str(out), "--model", str(folder), "--height", "64", "--width", "64",
                     "--frames", "9", "--steps", "2", "--dtype", "float32", "--device", "cpu",
                     "--sparse-attention", "sta", "--sta-window", "1", "1", "1", "--sta-full-steps", "1"]) == 0
    assert out.is_file()
