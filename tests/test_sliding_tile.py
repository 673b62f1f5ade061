import itertools

import pytest
import torch

from hunyuan_video.models import sliding_tile
from hunyuan_video.models.attention import attention, make_padding
from hunyuan_video.models.sliding_tile import TilePlan, sliding_tile_attention

GRID, TILE, TEXT = (4, 4, 6), (2, 2, 2), 5  # 96 video tokens in 2 x 2 x 3 tiles of 8, then 5 text tokens


def _qkv(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = GRID[0] * GRID[1] * GRID[2] + TEXT
    return [torch.randn(batch, s, 3, 16, generator=g) for _ in range(3)]


def _padding():
    mask = torch.ones(2, TEXT, dtype=torch.bool)
    mask[1, 3:] = False  # sample 1 has 3 real text tokens
    return make_padding(mask, GRID[0] * GRID[1] * GRID[2])


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("kernel", ["flex", "gather", "reference"])
def test_a_window_covering_everything_is_full_attention(kernel, padded):
    q, k, v = _qkv()
    padding = _padding() if padded else None
    plan = TilePlan(GRID, TILE, window=(2, 2, 3))
    got = sliding_tile_attention(q, k, v, plan, padding, kernel=kernel)
    want = attention(q, k, v, padding, "sdpa")
    real = torch.ones(2, q.shape[1], dtype=torch.bool) if padding is None else padding.key_mask[:, 0, 0, :]
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("kernel", ["flex", "gather"])
@pytest.mark.parametrize("window", [(1, 1, 2), (2, 1, 2), (1, 2, 1)])
def test_each_kernel_equals_the_masked_reference(kernel, window, padded):
    q, k, v = _qkv(seed=1)
    padding = _padding() if padded else None
    plan = TilePlan(GRID, TILE, window)
    got = sliding_tile_attention(q, k, v, plan, padding, kernel=kernel)
    dense = sliding_tile_attention(q, k, v, plan, padding, kernel="reference")
    torch.testing.assert_close(got, dense, atol=1e-5, rtol=1e-5)
    assert (got - attention(q, k, v, padding, "sdpa")).abs().max() > 1e-2  # the window does cut keys away


def test_gather_in_batches_of_query_tiles_is_the_same(monkeypatch):
    """A gather budget of one query tile per batch gives the output of one batch for all tiles."""
    q, k, v = _qkv(seed=3)
    plan = TilePlan(GRID, TILE, (1, 2, 2))
    whole = sliding_tile_attention(q, k, v, plan, _padding(), kernel="gather")
    monkeypatch.setattr(sliding_tile, "GATHER_BYTES", 1)
    torch.testing.assert_close(sliding_tile_attention(q, k, v, plan, _padding(), kernel="gather"), whole,
                               atol=1e-6, rtol=1e-6)


def test_the_window_tiles_are_the_masks_key_tiles():
    plan = TilePlan(GRID, TILE, window=(1, 2, 2))
    index = torch.arange(96 + TEXT)
    mask = plan.mask_mod(None)(None, None, index[:, None], index[None, :])[:96, :96]
    tiles = mask[::8, ::8]  # (query tile, key tile): the mask is constant over a tile's tokens
    want = [set(torch.nonzero(row).flatten().tolist()) for row in tiles]
    assert [set(row.tolist()) for row in plan.window_tiles((1, 2, 2))] == want
    with pytest.raises(ValueError, match="unknown sliding tile kernel 'fast'"):
        sliding_tile_attention(*_qkv(), plan, kernel="fast")


def test_the_mask_is_the_sliding_window_of_tiles():
    """Brute force over tile coordinates: a video query sees the video keys of the `window` tiles around its tile
    (slid to stay inside the grid) and every text key; text queries see everything."""
    plan = TilePlan(GRID, TILE, window=(1, 1, 2))
    video, s = 96, 96 + TEXT
    index = torch.arange(s)
    got = plan.mask_mod(None)(None, None, index[:, None], index[None, :])
    tiles = list(itertools.product(*(range(n) for n in plan.tiles)))
    for qi, kj in itertools.product(range(s), range(s)):
        if qi >= video or kj >= video:
            want = True
        else:
            qt, kt = tiles[qi // 8], tiles[kj // 8]
            starts = [min(max(c - w // 2, 0), max(n - w, 0)) for c, w, n in zip(qt, plan.window, plan.tiles)]
            want = all(st <= c < st + w for c, st, w in zip(kt, starts, plan.window))
        assert bool(got[qi, kj]) == want, (qi, kj)
    # the window's keys: a query tile sees 1 x 1 x 2 tiles (16 video keys) plus the text
    assert set(got[:video].sum(1).tolist()) == {16 + TEXT}


def test_a_bad_plan_says_what_is_wrong():
    with pytest.raises(ValueError, match="divisible by the tile"):
        TilePlan((4, 4, 6), (2, 4, 4), (1, 1, 1))
    with pytest.raises(ValueError, match="at least one tile"):
        TilePlan(GRID, TILE, (0, 1, 1))


def test_per_head_windows_equal_the_masked_reference_and_each_head_its_own_window():
    """Three heads with three windows: flex equals masked SDPA, and head i equals a one-window run's head i."""
    q, k, v = _qkv(seed=2)
    padding = _padding()
    windows = ((1, 1, 2), (2, 2, 3), (1, 2, 1))
    plan = TilePlan(GRID, TILE, windows)
    flex = sliding_tile_attention(q, k, v, plan, padding, kernel="flex")
    dense = sliding_tile_attention(q, k, v, plan, padding, kernel="reference")
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sliding_tile_attention(q, k, v, plan, padding, kernel="gather"), dense,
                               atol=1e-5, rtol=1e-5)
    for head, window in enumerate(windows):
        alone = sliding_tile_attention(q, k, v, TilePlan(GRID, TILE, window), padding).unflatten(-1, (3, 16))
        torch.testing.assert_close(flex.unflatten(-1, (3, 16))[:, :, head], alone[:, :, head], atol=1e-5, rtol=1e-5)
    full = attention(q, k, v, padding, "sdpa").unflatten(-1, (3, 16))
    real = padding.key_mask[:, 0, 0, :]
    torch.testing.assert_close(flex.unflatten(-1, (3, 16))[:, :, 1][real], full[:, :, 1][real], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="windows for 2 heads, the attention has 3"):
        sliding_tile_attention(q, k, v, TilePlan(GRID, TILE, windows[:2]), padding)
    with pytest.raises(ValueError, match="at least one tile"):
        TilePlan(GRID, TILE, ((1, 1, 1), (1, 0, 1)))
