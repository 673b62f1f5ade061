"""Sliding tile attention as a sampling switch: the transformer's attention over [video | text] runs with
`sliding_tile_attention` (`models/sliding_tile.py`) on every sampling step after the first `full_steps`, which run
full attention (as STA does: the early steps lay out the whole video).

`SlidingTile.apply(state)` puts a `SlidingTileLayout` (one window for every block) or a `SlidingTileBlocks` (a window
per block and head, e.g. the `SlidingTilePlan` that `hunyuan_video.sta_search` finds and stores in a model folder's
`sliding_tile.json`) in the `padding` slot of the `StreamState` that `HunyuanVideoTransformer.embed` returns; the
blocks pass it to `attention`, which calls it in place of a kernel, so the model classes do not know about it. The
pipeline calls `start()` before its loop and `apply` once per step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import Tensor

from hunyuan_video.config import TransformerConfig
from hunyuan_video.models.attention import Padding
from hunyuan_video.models.sliding_tile import KERNELS, TilePlan, Window, sliding_tile_attention
from hunyuan_video.models.transformer import StreamState

SLIDING_TILE_FILE = "sliding_tile.json"  # a model folder's searched plan (`hunyuan-video calibrate-sta`)
BlockWindows = tuple[tuple[Window, ...], ...]  # per block (double blocks, then single), per head: tiles T H W

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
    keeping `padding` (the text padding of the sequence; None: all real), with `kernel` (`sliding_tile.KERNELS`).
    `block_masks`: the block masks built so far for this sequence, shared by the blocks of one forward."""

    plan: TilePlan
    padding: Padding | None = None
    kernel: str = "auto"
    block_masks: dict = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, backend: str) -> Tensor:
        """Sliding tile attention of (B, S, heads, head_dim) q, k, v; `backend` is unused (`kernel` runs it)."""
        return sliding_tile_attention(q, k, v, self.plan, self.padding, self.kernel, self.block_masks)


@dataclass(frozen=True)
class SlidingTileBlocks:
    """A `BlockLayouts`: block `i` attends under `plans[i]` (windows per head), keeping `padding`."""

    plans: tuple[TilePlan, ...]
    padding: Padding | None = None
    kernel: str = "auto"
    block_masks: dict = field(default_factory=dict, compare=False, repr=False)

    def block(self, index: int) -> SlidingTileLayout:
        """The layout of block `index`."""
        return SlidingTileLayout(self.plans[index], self.padding, self.kernel, self.block_masks)


@dataclass(frozen=True)
class SlidingTilePlan:
    """Per block (double blocks, then single) and head the window (tiles per axis) of `tile`-sized tiles, and the
    first `full_steps` sampling steps that run full attention: what a window search finds for a model."""

    tile: tuple[int, int, int]
    windows: BlockWindows
    full_steps: int = 0


def _check_window(window: object, what: str) -> Window:
    if not isinstance(window, Sequence) or len(window) != 3 or any(not isinstance(w, int) or w < 1 for w in window):
        raise ValueError(f"{what} is three positive numbers of tiles (T H W), got {window}")
    return tuple(window)


def _block_windows(windows: object) -> BlockWindows:
    """`windows` as a tuple per block of a tuple per head of (T, H, W); a ValueError when it is not that."""
    if not isinstance(windows, Sequence) or not windows or any(
            not isinstance(heads, Sequence) or not heads for heads in windows):
        raise ValueError("the sliding tile windows per block are a list (one per block) of lists (one per head) of "
                         "T H W")
    return tuple(tuple(_check_window(w, "the sliding tile window") for w in heads) for heads in windows)


class SlidingTile:
    """Sliding tile attention after the first `full_steps` steps of each sampling loop, with `window` (tiles per axis,
    T H W) for every block and head, or per block a tuple of per-head windows, of `tile`-sized tiles (None: the
    `default_tile` of the grid). `kernel`: one of `sliding_tile.KERNELS` ("auto": flex on CUDA, gather elsewhere)."""

    def __init__(self, window: Window | Sequence[Sequence[Window]], tile: tuple[int, int, int] | None = None,
                 full_steps: int = 0, kernel: str = "auto"):
        per_block = isinstance(window, Sequence) and len(window) > 0 and not isinstance(window[0], int)
        self.window = _block_windows(window) if per_block else _check_window(window, "the sliding tile window")
        if tile is not None and (len(tile) != 3 or any(t < 1 for t in tile)):
            raise ValueError(f"the tile is three positive numbers of tokens (T H W), got {tile}")
        if full_steps < 0:
            raise ValueError(f"full_steps must be >= 0, got {full_steps}")
        if kernel not in KERNELS:
            raise ValueError(f"unknown sliding tile kernel {kernel!r}: use one of {', '.join(KERNELS)}")
        self.tile, self.full_steps, self.kernel = tile, full_steps, kernel
        self.per_block = per_block
        self.step = 0

    @classmethod
    def from_plan(cls, plan: SlidingTilePlan, full_steps: int | None = None, kernel: str = "auto") -> SlidingTile:
        """Sliding tile attention under a searched `plan` (`full_steps`: None, the plan's)."""
        return cls(plan.windows, plan.tile, plan.full_steps if full_steps is None else full_steps, kernel)

    def check_model(self, config: TransformerConfig) -> None:
        """A ValueError when per-block windows do not fit the blocks and heads of a transformer with `config`."""
        if not self.per_block:
            return
        blocks, heads = config.mm_double_blocks_depth + config.mm_single_blocks_depth, config.heads_num
        if len(self.window) != blocks or any(len(w) != heads for w in self.window):
            raise ValueError(f"the sliding tile plan has windows for {len(self.window)} blocks of "
                             f"{sorted({len(w) for w in self.window})} heads; the transformer has {blocks} blocks "
                             f"of {heads} heads")

    def plan(self, grid: tuple[int, int, int]) -> TilePlan | tuple[TilePlan, ...]:
        """The tiling of a video token `grid` (per block with per-block windows); a ValueError naming the valid tiles
        or windows when it does not fit."""
        tile = default_tile(grid) if self.tile is None else tuple(self.tile)
        if any(g % t for g, t in zip(grid, tile)):
            valid = " x ".join("{" + ",".join(map(str, _divisors(g))) + "}" for g in grid)
            raise ValueError(f"the tile {tile} does not divide the video token grid {grid}: use per axis one of "
                             f"{valid}")
        tiles = tuple(g // t for g, t in zip(grid, tile))
        windows = [w for heads in self.window for w in heads] if self.per_block else [self.window]
        for window in windows:
            if any(w > n for w, n in zip(window, tiles)):
                raise ValueError(f"the sliding tile window {window} is larger than the grid of tiles {tiles} (grid "
                                 f"{grid} in tiles of {tile}): use at most {' '.join(map(str, tiles))}")
        if self.per_block:
            return tuple(TilePlan(grid, tile, heads) for heads in self.window)
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
        plan = self.plan(state.grid)
        if self.per_block:
            return replace(state, padding=SlidingTileBlocks(plan, state.padding, self.kernel))
        return replace(state, padding=SlidingTileLayout(plan, state.padding, self.kernel))


def read_sliding_tile_plan(folder: str | Path) -> SlidingTilePlan | None:
    """The plan in `folder/sliding_tile.json` (written by `calibrate-sta`), or None when there is none."""
    path = Path(folder) / SLIDING_TILE_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
        tile = _check_window(values.get("tile"), "'tile'")
        full_steps = values.get("full_steps", 0)
        if not isinstance(full_steps, int) or full_steps < 0:
            raise ValueError(f"'full_steps' must be an integer >= 0, got {full_steps!r}")
        return SlidingTilePlan(tile, _block_windows(values.get("windows")), full_steps)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def write_sliding_tile_plan(folder: str | Path, plan: SlidingTilePlan, about: dict) -> Path:
    """Write `folder/sliding_tile.json`: the plan and `about` (what it was searched on)."""
    path = Path(folder) / SLIDING_TILE_FILE
    fields = [f'  "{key}": {json.dumps(value)}' for key, value in
              {"tile": list(plan.tile), "full_steps": plan.full_steps, **about}.items()]
    blocks = ",\n    ".join(json.dumps([list(w) for w in heads]) for heads in plan.windows)
    path.write_text("{\n" + ",\n".join([*fields, f'  "windows": [\n    {blocks}\n  ]']) + "\n}\n")
    return path
