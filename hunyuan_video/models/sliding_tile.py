"""Sliding tile attention (STA; Zhang et al., "Fast Video Generation with Sliding Tile Attention"): video tokens
ordered by 3D tiles, each query tile attending to the key tiles of a 3D window around it plus every text token;
text queries attend to everything.

The sequence is the transformer's [video tokens, t-major over `grid` | text tokens]. `sliding_tile_attention` puts the
video tokens in tile order, runs one of three kernels, and puts them back:

- "flex": `flex_attention` with a block mask whose blocks are whole tiles, so the tiles outside a window are never
  computed (the fused kernel on CUDA; on the CPU PyTorch's flex kernel is ~3x slower than its SDPA);
- "gather": every query tile's window of key tiles (and the text) gathered into one dense batch for SDPA, a bounded
  number of query tiles at a time: what the CPU runs fast;
- "reference": the same mask as a dense boolean mask through masked SDPA (slow; what the tests compare against).

"auto" is flex on CUDA and gather elsewhere. Windows count tiles per axis; near the edges a window slides to stay
inside the grid (it keeps its size), as STA's does, so every query tile sees the same number of key tiles. A plan
holds one window for every head, or one per head (the block mask then has a head dimension; gather runs the heads
of each window together). With padding, a real token sees real tokens only (the official segments).
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
KERNELS = ("auto", "flex", "gather", "reference")
GATHER_BYTES = 256 * 2**20  # the gathered keys and values of one batch of query tiles, at most


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

    def window_tiles(self, window: Window) -> Tensor:
        """(tiles, tiles in the window): the key tiles (tile-order index) that each query tile's `window` covers."""
        per_axis = []
        for n, w in zip(self.tiles, window):
            w = min(w, n)
            start = (torch.arange(n) - w // 2).clamp(0, n - w)
            per_axis.append(start[:, None] + torch.arange(w))  # (n, w)
        (nt, nh, nw), (rt, rh, rw) = self.tiles, per_axis
        index = (rt[:, None, None, :, None, None] * (nh * nw) + rh[None, :, None, None, :, None] * nw
                 + rw[None, None, :, None, None, :])
        return index.reshape(nt * nh * nw, -1)

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


def _gather(q: Tensor, k: Tensor, v: Tensor, plan: TilePlan, window: Window, real: Tensor | None) -> Tensor:
    """The "gather" kernel for heads that share `window`: (B, heads, S, head_dim) tile-ordered q, k, v -> the same
    shape. Video query tiles attend their window's key tiles and the text; text queries attend everything."""
    b, heads, s, d = q.shape
    video, size = plan.grid[0] * plan.grid[1] * plan.grid[2], plan.tile_size
    tiles = video // size
    text_keys = (k[:, :, video:], v[:, :, video:])
    index = plan.window_tiles(window).to(q.device)
    keys = index.shape[1] * size + (s - video)
    video_mask = None  # video queries are real: they see the window's video keys and the real text keys
    if real is not None:
        window_keys = torch.ones(b, index.shape[1] * size, dtype=torch.bool, device=q.device)
        video_mask = torch.cat([window_keys, real[:, video:]], dim=1)[:, None, None, :]
    chunk = max(1, GATHER_BYTES // (2 * b * heads * keys * d * q.element_size()))
    out = torch.empty_like(q)
    video_q, video_k, video_v = (x[:, :, :video].unflatten(2, (tiles, size)) for x in (q, k, v))
    for first in range(0, tiles, chunk):
        rows = index[first : first + chunk]  # (n, tiles in the window)
        n = rows.shape[0]
        gathered = [torch.cat([x[:, :, rows].flatten(3, 4), text[:, :, None].expand(-1, -1, n, -1, -1)], dim=3)
                    for x, text in zip((video_k, video_v), text_keys)]  # (B, heads, n, keys, d)
        o = F.scaled_dot_product_attention(video_q[:, :, first : first + n].flatten(1, 2), gathered[0].flatten(1, 2),
                                           gathered[1].flatten(1, 2), attn_mask=video_mask)
        out[:, :, first * size : (first + n) * size] = o.unflatten(1, (heads, n)).flatten(2, 3)
    text_mask = None if real is None else real[:, None, video:, None] == real[:, None, None, :]
    out[:, :, video:] = F.scaled_dot_product_attention(q[:, :, video:], k, v, attn_mask=text_mask)
    return out


def sliding_tile_attention(q: Tensor, k: Tensor, v: Tensor, plan: TilePlan, padding: Padding | None = None,
                           kernel: str = "auto", block_masks: dict | None = None) -> Tensor:
    """Attention of (B, S, heads, head_dim) tensors over [video tokens (t-major over `plan.grid`) | text tokens]
    under `plan`'s sliding tile mask; returns (B, S, heads * head_dim) in the input order. `kernel`: one of
    `KERNELS` (see the module docstring). `block_masks`: a dict that keeps the flex block masks built here for later
    calls with the same plan, `padding` and shapes (e.g. the blocks of one forward)."""
    b, s, heads, _ = q.shape
    if kernel not in KERNELS:
        raise ValueError(f"unknown sliding tile kernel {kernel!r}: use one of {', '.join(KERNELS)}")
    per_head = plan.head_windows is not None
    if per_head and len(plan.head_windows) != heads:
        raise ValueError(f"the plan has windows for {len(plan.head_windows)} heads, the attention has {heads}")
    if kernel == "auto":
        kernel = "flex" if q.device.type == "cuda" else "gather"
    video = plan.grid[0] * plan.grid[1] * plan.grid[2]
    order = torch.cat([plan.order(), torch.arange(video, s)]).to(q.device)
    q, k, v = (x[:, order].transpose(1, 2) for x in (q, k, v))
    if kernel == "gather":
        real = None if padding is None else padding.key_mask[:, 0, 0, order]
        windows = plan.head_windows or (plan.window,) * heads
        out = torch.empty_like(q)
        for window in dict.fromkeys(windows):
            group = [h for h, w in enumerate(windows) if w == window]
            if len(group) == heads:
                out = _gather(q, k, v, plan, window, real)
            else:
                out[:, group] = _gather(q[:, group], k[:, group], v[:, group], plan, window, real)
        return _restore(out, order)
    mask_mod = plan.mask_mod(padding, q.device)
    if kernel == "reference":
        index = torch.arange(s, device=q.device)
        batch = torch.arange(b, device=q.device)[:, None, None, None]
        head = torch.arange(heads, device=q.device)[None, :, None, None] if per_head else None
        mask = mask_mod(batch, head, index[None, None, :, None], index[None, None, None, :])
        return _restore(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), order)
    if flex_attention is None:
        raise ValueError(f"sliding tile attention's flex kernel needs torch >= 2.5 for flex_attention (this is "
                         f"{torch.__version__}): use the gather kernel")
    key = (plan, b, heads, s, q.device)
    blocks = None if block_masks is None else block_masks.get(key)
    if blocks is None:
        blocks = create_block_mask(mask_mod, None if padding is None else b, heads if per_head else None, s, s,
                                   device=q.device, BLOCK_SIZE=plan.tile_size)
    if block_masks is not None:
        block_masks[key] = blocks
    return _restore(flex_attention(q, k, v, block_mask=blocks), order)


def _restore(out: Tensor, order: Tensor) -> Tensor:
    """(B, heads, S, head_dim) in tile order -> (B, S, heads * head_dim) in the input order."""
    restored = torch.empty_like(out)
    restored[:, :, order] = out
    return restored.transpose(1, 2).flatten(2)
