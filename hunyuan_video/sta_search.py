"""The training-free window search of sliding tile attention: per block and head of a transformer, the smallest
window whose attention output stays within a tolerance of full attention on a few calibration prompts.

`search_sliding_tile_windows` samples each prompt with full attention on every step (the exact trajectory). On each
step after the first `full_steps`, every block computes, beside its full attention, the attention under each
candidate window, and adds per head the squared error of the video queries' output against the full one. Per block
and head, the chosen window is the one of fewest tiles among those whose relative error (the root of the summed
squared error over the summed squared norm of the full output) is at most `tolerance`, ties to the smaller error;
the full window (every tile) is always a candidate, so one always qualifies. `write_sliding_tile_plan` stores the
result in the model folder, where `generate --sparse-attention sta` finds it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from hunyuan_video.models.attention import Padding, attention
from hunyuan_video.models.sliding_tile import TilePlan, Window, sliding_tile_attention
from hunyuan_video.models.transformer import StreamState
from hunyuan_video.sparse_attention import SlidingTile, SlidingTilePlan

if TYPE_CHECKING:
    from hunyuan_video.pipelines import HunyuanVideoPipeline


@dataclass(frozen=True)
class _RecordingLayout:
    """Full attention for block `index`, recording each candidate window's error against it in `search`."""

    search: WindowSearch
    index: int
    plans: tuple[TilePlan, ...]
    padding: Padding | None
    block_masks: dict

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, backend: str) -> Tensor:
        """The full attention of (B, S, heads, head_dim) q, k, v (what the block goes on with)."""
        full = attention(q, k, v, self.padding, backend)
        video, heads = math.prod(self.plans[0].grid), q.shape[2]
        want = full[:, :video].unflatten(-1, (heads, -1)).float()
        self.search.norms[self.index] += want.square().sum((0, 1, 3)).cpu()
        for c, plan in enumerate(self.plans):
            got = sliding_tile_attention(q, k, v, plan, self.padding, block_masks=self.block_masks)
            got = got[:, :video].unflatten(-1, (heads, -1)).float()
            self.search.errors[self.index, :, c] += (got - want).square().sum((0, 1, 3)).cpu()
        return full


@dataclass(frozen=True)
class _RecordingBlocks:
    """A `BlockLayouts` giving each block its `_RecordingLayout`."""

    search: WindowSearch
    plans: tuple[TilePlan, ...]
    padding: Padding | None
    block_masks: dict = field(default_factory=dict, compare=False, repr=False)

    def block(self, index: int) -> _RecordingLayout:
        """The recording layout of block `index` (the block masks shared by all blocks of the forward)."""
        return _RecordingLayout(self.search, index, self.plans, self.padding, self.block_masks)


class WindowSearch(SlidingTile):
    """Stands in for `SlidingTile` in a pipeline while searching: full attention on every step, and after the first
    `full_steps` the squared errors of each of `candidates` (windows in tiles; None: every window that fits the grid
    of tiles) per block and head (`errors`, blocks x heads x candidates; `norms`, blocks x heads: the full output's)."""

    def __init__(self, blocks: int, heads: int, candidates: Sequence[Window] | None = None,
                 tile: tuple[int, int, int] | None = None, full_steps: int = 0):
        super().__init__((1, 1, 1), tile, full_steps)
        self.blocks, self.heads, self.given = blocks, heads, candidates
        self.candidates: list[Window] = []
        self.tile_plan: TilePlan | None = None

    def plan(self, grid: tuple[int, int, int]) -> TilePlan:
        """The tiling of `grid` with the candidates fixed on first use (the full window added); a ValueError when a
        candidate does not fit, or a later call brings another grid."""
        if self.tile_plan is not None:
            if self.tile_plan.grid != grid:
                raise ValueError(f"the window search runs on one video size: token grid {self.tile_plan.grid}, then "
                                 f"{grid}")
            return self.tile_plan
        tiling = SlidingTile((1, 1, 1), self.tile).plan(grid)
        everything = tiling.tiles
        candidates = ([tuple(w) for w in self.given] if self.given is not None
                      else list(itertools.product(*(range(1, n + 1) for n in everything))))
        for window in candidates:
            SlidingTile(window, tiling.tile).plan(grid)  # a ValueError naming the largest window that fits
        self.candidates = sorted(set(candidates) | {everything}, key=lambda w: (math.prod(w), w))
        self.errors = torch.zeros(self.blocks, self.heads, len(self.candidates), dtype=torch.float64)
        self.norms = torch.zeros(self.blocks, self.heads, dtype=torch.float64)
        self.tile_plan = tiling
        return tiling

    def apply(self, state: StreamState) -> StreamState:
        """`state` with its attention recording the candidates' errors (after the first `full_steps` steps)."""
        record = self.step >= self.full_steps
        self.step += 1
        if not record:
            return state
        tiling = self.plan(state.grid)
        plans = tuple(TilePlan(tiling.grid, tiling.tile, w) for w in self.candidates)
        return replace(state, padding=_RecordingBlocks(self, plans, state.padding))

    def relative_errors(self) -> Tensor:
        """Per block, head and candidate the relative error of the attention output against full attention."""
        if self.tile_plan is None or not bool((self.norms > 0).all()):
            raise ValueError("the window search recorded no step: sample more steps than full_steps")
        return (self.errors / self.norms[..., None]).sqrt()

    def choose(self, tolerance: float) -> tuple[SlidingTilePlan, Tensor]:
        """The plan of the windows with fewest tiles within `tolerance`, and the chosen windows' relative errors
        (blocks x heads)."""
        relative = self.relative_errors()
        cost = torch.tensor([math.prod(w) for w in self.candidates], dtype=torch.float64)
        within = relative <= tolerance
        within[..., -1] = True  # the full window (the last: the most tiles), equal to full attention up to rounding
        # fewest tiles first (counts differ by >= 1), then the smaller error
        rank = torch.where(within, cost + relative.clamp(max=0.5), torch.inf)
        chosen = rank.argmin(-1)
        windows = tuple(tuple(self.candidates[c] for c in row.tolist()) for row in chosen)
        return (SlidingTilePlan(self.tile_plan.tile, windows, self.full_steps),
                relative.gather(-1, chosen[..., None])[..., 0])


def search_sliding_tile_windows(pipe: HunyuanVideoPipeline, prompts: Sequence[str], tolerance: float = 0.05,
                                candidates: Sequence[Window] | None = None, tile: tuple[int, int, int] | None = None,
                                full_steps: int = 0, seed: int = 0, **call: object
                                ) -> tuple[SlidingTilePlan, Tensor]:
    """Search the sliding tile windows of `pipe`'s transformer: sample each prompt (seed `seed + i`, the other
    arguments of the call from `call` or the pipeline's defaults) with full attention, recording each candidate
    window's error per block and head on the steps after `full_steps`; returns the plan (see `WindowSearch.choose`)
    and the chosen windows' relative errors (blocks x heads)."""
    if not prompts:
        raise ValueError("no calibration prompt given")
    if not tolerance >= 0:
        raise ValueError(f"the tolerance must be a number >= 0, got {tolerance}")
    config = pipe.transformer.config
    search = WindowSearch(config.mm_double_blocks_depth + config.mm_single_blocks_depth, config.heads_num,
                          candidates, tile, full_steps)
    kept, kept_cache = pipe.sliding_tile, pipe.step_cache
    pipe.sliding_tile, pipe.step_cache = search, None
    try:
        for i, prompt in enumerate(prompts):
            pipe(prompt, seed=seed + i, output_type="latent", **call)
    finally:
        pipe.sliding_tile, pipe.step_cache = kept, kept_cache
    return search.choose(tolerance)
