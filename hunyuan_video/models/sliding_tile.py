"""Sliding tile attention (STA; Zhang et al., "Fast Video Generation with Sliding Tile Attention"): video tokens
ordered by 3D tiles, each query tile attending to the key tiles of a 3D window around it plus every text token;
text queries attend to everything.

The sequence is the transformer's [video tokens, t-major over `grid` | text tokens]. `sliding_tile_attention` puts the
video tokens in tile order, runs `flex_attention` with a block mask whose blocks are whole tiles (so the tiles outside
a window are never computed), and puts them back. `reference=True` runs the same mask densely through masked SDPA,
the path the tests compare against. Windows count tiles per axis; near the edges a window slides to stay inside the
grid (it keeps its size), as STA's does. A plan holds one window for every head, or one per head (the block mask then
has a head dimension). With padding, a real token sees real tokens only (the official segments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hunyuan_video.models.attention import Padding, flex_attention

if flex_attention is not None:
    from torch.nn.attention.flex_attention import create_block_mask

Window = tuple[int, int, int]  # tiles per axis (T, H, W)


@dataclass(frozen=True)
class TilePlan:
    """The tiling of a video token grid (T, H, W) into `tile`-sized tiles and the `window` (tiles per axis) that a
    query tile attends to: one window for every head, or a tuple of one window per head."""

    grid: tuple[int, int, int]
    tile: tuple[int, int, int]
    window: Window | tuple[Window, ...]

    def __post_init__(self) -> None:
        if any(g % t for g, t in zip(self.grid, self.tile)):
            raise ValueError(f"the video token grid {self.grid} must be divisible by the tile {self.tile}")
        for window in self.head_windows or (self.window,):
            if len(window) != 3 or any(w < 1 for w in window):
                raise ValueError(f"the window must cover at least one tile per axis, got {window}")

    @property
    def head_windows(self) -> tuple[Window, ...] | None:
        """The window of each head, or None when every head has `window`."""
        return None if isinstance(self.window[0], int) else tuple(tuple(w) for w in self.window)

    @property
    def tiles(self) -> tuple[int, int, int]:
        """Tiles per axis."""
        return tuple(g // t for g, t in zip(self.grid, self.tile))

    @property
    def tile_size(self) -> int:
        """Tokens per tile."""
        return self.tile[0] * self.tile[1] * self.tile[2]

    def order(self) -> Tensor:
        """The t-major index of the video token at each position of the tile order (tile by tile, t-major inside)."""
        (nt, nh, nw), (tt, th, tw) = self.tiles, self.tile
        index = torch.arange(self.grid[0] * self.grid[1] * self.grid[2]).reshape(nt, tt, nh, th, nw, tw)
        return index.permute(0, 2, 4, 1, 3, 5).flatten()

    def mask_mod(self, padding: Padding | None = None, device: torch.device | str = "cpu"
                 ) -> Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]:
        """`mask_mod(b, h, q, kv)` over the tile-ordered sequence [video | text]: True where q may attend kv (with
        per-head windows, for head `h`; their table lives on `device`)."""
        video, size = self.grid[0] * self.grid[1] * self.grid[2], self.tile_size
        tiles, heads = self.tiles, self.head_windows
        table = None if heads is None else torch.tensor(heads, device=device)
        real = None if padding is None else padding.key_mask[:, 0, 0, :]

        def coords(index: Tensor) -> list[Tensor]:
            tile = index // size
            return [tile // (tiles[1] * tiles[2]), tile // tiles[2] % tiles[1], tile % tiles[2]]

        def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            allowed = (q >= video) | (kv >= video)
            in_window = torch.ones_like(allowed)
            for axis, (qc, kc, n) in enumerate(zip(coords(q), coords(kv), tiles)):
                if table is None:
                    w = self.window[axis]
                    start = (qc - w // 2).clamp(0, max(n - w, 0))
                else:
                    w = table[h, axis]
                    start = torch.minimum((qc - w // 2).clamp(min=0), (n - w).clamp(min=0))
                in_window = in_window & (kc >= start) & (kc < start + w)
            allowed = allowed | in_window
            return allowed if real is None else allowed & (real[b, q] == real[b, kv])

        return mask_mod


def sliding_tile_attention(q: Tensor, k: Tensor, v: Tensor, plan: TilePlan, padding: Padding | None = None,
                           reference: bool = False, block_masks: dict | None = None) -> Tensor:
    """Attention of (B, S, heads, head_dim) tensors over [video tokens (t-major over `plan.grid`) | text tokens]
    under `plan`'s sliding tile mask; returns (B, S, heads * head_dim) in the input order. `reference`: the same mask
    as a dense boolean mask through masked SDPA (slow; for tests). `block_masks`: a dict that keeps the block masks
    built here for later calls with the same plan, `padding` and shapes (e.g. the blocks of one forward)."""
    b, s, heads, _ = q.shape
    per_head = plan.head_windows is not None
    if per_head and len(plan.head_windows) != heads:
        raise ValueError(f"the plan has windows for {len(plan.head_windows)} heads, the attention has {heads}")
    video = plan.grid[0] * plan.grid[1] * plan.grid[2]
    order = torch.cat([plan.order(), torch.arange(video, s)]).to(q.device)
    q, k, v = (x[:, order].transpose(1, 2) for x in (q, k, v))
    mask_mod = plan.mask_mod(padding, q.device)
    if reference:
        index = torch.arange(s, device=q.device)
        batch = torch.arange(b, device=q.device)[:, None, None, None]
        head = torch.arange(heads, device=q.device)[None, :, None, None] if per_head else None
        mask = mask_mod(batch, head, index[None, None, :, None], index[None, None, None, :])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        if flex_attention is None:
            raise ValueError(f"sliding tile attention needs torch >= 2.5 for flex_attention (this is "
                             f"{torch.__version__})")
        key = (plan, b, heads, s, q.device)
        blocks = None if block_masks is None else block_masks.get(key)
        if blocks is None:
            blocks = create_block_mask(mask_mod, None if padding is None else b, heads if per_head else None, s, s,
                                       device=q.device, BLOCK_SIZE=plan.tile_size)
        if block_masks is not None:
            block_masks[key] = blocks
        out = flex_attention(q, k, v, block_mask=blocks)
    restored = torch.empty_like(out)
    restored[:, :, order] = out
    return restored.transpose(1, 2).flatten(2)
