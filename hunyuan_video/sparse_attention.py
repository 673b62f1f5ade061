"""Sliding tile attention as a sampling switch: the transformer's attention over [video | text] runs with
`sliding_tile_attention` (`models/sliding_tile.py`) on every sampling step after the first `full_steps`, which run
full attention (as STA does: the early steps lay out the whole video).

`SlidingTile.apply(state)` puts a `SlidingTileLayout` in the `padding` slot of the `StreamState` that
`HunyuanVideoTransformer.embed` returns; the blocks pass it to `attention`, which calls it in place of a kernel, so
the model classes do not know about it. The pipeline calls `start()` before its loop and `apply` once per step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

from hunyuan_video.models.attention import Padding
from hunyuan_video.models.sliding_tile import TilePlan, sliding_tile_attention
from hunyuan_video.models.transformer import StreamState

# STA's tile for HunyuanVideo (latent tokens per axis, T x H x W); per axis the largest divisor of the grid up to it.
PREFERRED_TILE = (6, 8, 8)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def default_tile(grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """Per axis the largest divisor of the video token grid that is at most `PREFERRED_TILE`'s."""
    return tuple(max(d for d in _divisors(g) if d <= p) for g, p in zip(grid, PREFERRED_TILE))


@dataclass(frozen=True)
class SlidingTileLayout:
    """A `SequenceLayout` that runs the attention of a [video | text] sequence under `plan`'s sliding tile mask,
    keeping `padding` (the text padding of the sequence; None: all real). `reference`: the masked-SDPA path."""

    plan: TilePlan
    padding: Padding | None = None
    reference: bool = False

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, backend: str) -> Tensor:
        """Sliding tile attention of (B, S, heads, head_dim) q, k, v; `backend` is unused (flex_attention runs it)."""
        return sliding_tile_attention(q, k, v, self.plan, self.padding, self.reference)


class SlidingTile:
    """Sliding tile attention with `window` (tiles per axis, T H W) of `tile`-sized tiles (None: `default_tile` of
    the grid) after the first `full_steps` steps of each sampling loop. `reference`: run the masked-SDPA path."""

    def __init__(self, window: tuple[int, int, int], tile: tuple[int, int, int] | None = None, full_steps: int = 0,
                 reference: bool = False):
        if len(window) != 3 or any(w < 1 for w in window):
            raise ValueError(f"the sliding tile window is three positive numbers of tiles (T H W), got {window}")
        if tile is not None and (len(tile) != 3 or any(t < 1 for t in tile)):
            raise ValueError(f"the tile is three positive numbers of tokens (T H W), got {tile}")
        if full_steps < 0:
            raise ValueError(f"full_steps must be >= 0, got {full_steps}")
        self.window, self.tile, self.full_steps, self.reference = tuple(window), tile, full_steps, reference
        self.step = 0

    def plan(self, grid: tuple[int, int, int]) -> TilePlan:
        """The tiling of a video token `grid`; a ValueError naming the valid tiles or windows when it does not fit."""
        tile = default_tile(grid) if self.tile is None else tuple(self.tile)
        if any(g % t for g, t in zip(grid, tile)):
            valid = " x ".join("{" + ",".join(map(str, _divisors(g))) + "}" for g in grid)
            raise ValueError(f"the tile {tile} does not divide the video token grid {grid}: use per axis one of "
                             f"{valid}")
        tiles = tuple(g // t for g, t in zip(grid, tile))
        if any(w > n for w, n in zip(self.window, tiles)):
            raise ValueError(f"the sliding tile window {self.window} is larger than the grid of tiles {tiles} (grid "
                             f"{grid} in tiles of {tile}): use at most {' '.join(map(str, tiles))}")
        return TilePlan(grid, tile, self.window)

    def start(self) -> None:
        """Count from step 0 of a new sampling loop."""
        self.step = 0

    def apply(self, state: StreamState) -> StreamState:
        """`state` for the next step: unchanged (full attention) during the first `full_steps` steps, else with its
        attention under the sliding tile mask."""
        full = self.step < self.full_steps
        self.step += 1
        if full:
            return state
        if state.padding is not None and not isinstance(state.padding, Padding):
            raise ValueError("sliding tile attention takes the state `embed` returns (padding a Padding or None), not "
                             "one whose attention another layout runs (parallel inference, or sliding tile already)")
        return replace(state, padding=SlidingTileLayout(self.plan(state.grid), state.padding, self.reference))
