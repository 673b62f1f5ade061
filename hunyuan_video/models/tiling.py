"""Spatial-temporal tiled encode and decode, blended like the official `AutoencoderKLCausal3D.enable_tiling()`.

The video is cut into overlapping tiles of `sample_size` pixels (square) and `sample_tsize + 1` frames, each tile
is encoded or decoded alone, and the overlaps are blended linearly: tile b's first `extent` rows take
`a * (1 - y / extent) + b * (y / extent)` from the tile a before it (above, to the left, earlier in time). Tiles are
processed in raster order and each one is blended with the already blended neighbours, exactly as the official
code blends in place, so the results equal the official tiled results for the same tile sizes.

Temporal tiles start every `stride` frames at a multiple of 4, and each starts with the frame it shares with the
tile before: that frame is encoded alone into one latent frame (the causal first frame), which is dropped, so the
tiles line up on the latent grid.

Unlike the official code, which keeps every decoded tile before blending, the output is written tile by tile
into one preallocated tensor and only the overlapping strips of the previous tiles are kept: beyond the output
itself, peak memory is that of one tile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TileSpec:
    """Tile sizes in pixels (`sample_size`, square) and frames (`sample_tsize`), and the overlap fraction."""

    sample_size: int = 256
    sample_tsize: int = 64
    overlap: float = 0.25

    def check(self, spatial_ratio: int, time_ratio: int) -> None:
        """Raise ValueError unless the tiles and their overlaps fall on the latent grid of the given ratios."""
        _stride(self.sample_size, self.overlap, spatial_ratio, "sample_size (pixels)")
        _stride(self.sample_tsize, self.overlap, time_ratio, "sample_tsize (frames)")


def _stride(size: int, overlap: float, ratio: int, name: str) -> int:
    """The step between tiles of `size` overlapping by `overlap`, checked to be a positive multiple of `ratio`."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    if size <= 0 or size % ratio:
        raise ValueError(f"{name} must be a positive multiple of the compression ratio {ratio}, got {size}")
    stride = size * (1.0 - overlap)
    if abs(stride - round(stride)) > 1e-6 or round(stride) % ratio or round(stride) == 0:
        raise ValueError(
            f"{name}={size} with overlap {overlap} steps {stride:g} between tiles, which is not a positive multiple "
            f"of the compression ratio {ratio}; pick a size such that size * (1 - overlap) is (e.g. a multiple of "
            f"{4 * ratio} with overlap 0.25)"
        )
    return round(stride)


def blend(a: Tensor, b: Tensor, extent: int, dim: int) -> Tensor:
    """`b` with its first `extent` entries along `dim` faded in from the last `extent` entries of `a`.

    Weight of a: 1 - y / extent, weight of b: y / extent (they sum to one); `extent` shrinks to the shorter of the
    two, as official. Computed in float32 at least, returned in b's dtype; out of place (autograd-safe).
    """
    extent = min(a.shape[dim], b.shape[dim], extent)
    if extent == 0:
        return b
    shape = [1] * b.ndim
    shape[dim] = extent
    dtype = torch.promote_types(b.dtype, torch.float32)
    w = (torch.arange(extent, device=b.device, dtype=dtype) / extent).view(shape)
    head = a.narrow(dim, a.shape[dim] - extent, extent).to(dtype) * (1 - w) + b.narrow(dim, 0, extent).to(dtype) * w
    return torch.cat([head.to(b.dtype), b.narrow(dim, extent, b.shape[dim] - extent)], dim=dim)


def _tail(x: Tensor, n: int, dim: int) -> Tensor:
    """A copy of the last `n` entries along `dim` (a copy, so the rest of `x` can be freed)."""
    n = min(n, x.shape[dim])
    return x.narrow(dim, x.shape[dim] - n, n).clone()


def tile_space(fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, stride: int, out_stride: int,
               out_blend: int, out_size: tuple[int, int]) -> Tensor:
    """`fn` over square tiles of `x` (`tile` wide, every `stride`), blended, into an output of `out_size` (H, W).

    `out_stride` and `out_blend` are the stride and the overlap in output units.
    """
    height, width = x.shape[-2:]
    out = None
    above: dict[int, Tensor] = {}  # column -> the bottom strip of the blended tile above
    for row, i in enumerate(range(0, height, stride)):
        left = None  # the right strip of the blended tile to the left
        for col, j in enumerate(range(0, width, stride)):
            y = fn(x[..., i : i + tile, j : j + tile])
            if row > 0:
                y = blend(above[col], y, out_blend, dim=-2)
            if col > 0:
                y = blend(left, y, out_blend, dim=-1)
            above[col], left = _tail(y, out_blend, -2), _tail(y, out_blend, -1)
            if out is None:
                out = y.new_empty(*y.shape[:-2], *out_size)
            piece = y[..., :out_stride, :out_stride]
            top, lft = row * out_stride, col * out_stride
            out[..., top : top + piece.shape[-2], lft : lft + piece.shape[-1]] = piece
    return out


def tile_time(fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, stride: int, out_stride: int,
              out_blend: int, out_frames: int) -> Tensor:
    """`fn` over temporal tiles of `tile + 1` frames of `x` (every `stride`), blended, into `out_frames` frames.

    Every tile after the first drops its first output frame (the frame it shares with the tile before).
    """
    out = None
    previous = None  # the last frames of the blended tile before
    for k, i in enumerate(range(0, x.shape[2], stride)):
        y = fn(x[:, :, i : i + tile + 1])
        if k == 0:
            start, piece = 0, y[:, :, : out_stride + 1]
            out = y.new_empty(*y.shape[:2], out_frames, *y.shape[3:])
        else:
            y = blend(previous, y[:, :, 1:], out_blend, dim=2)
            start, piece = 1 + k * out_stride, y[:, :, :out_stride]
        previous = _tail(y, out_blend, 2)
        out[:, :, start : start + piece.shape[2]] = piece
    return out


def tiled_encode(encode: Callable[[Tensor], Tensor], video: Tensor, spec: TileSpec, spatial_ratio: int,
                 time_ratio: int) -> Tensor:
    """`encode` (video -> moments) over tiles of `video` (B, C, T, H, W); tiles only the dims larger than a tile."""
    size, tsize = spec.sample_size, spec.sample_tsize
    stride = _stride(size, spec.overlap, spatial_ratio, "sample_size (pixels)")
    tstride = _stride(tsize, spec.overlap, time_ratio, "sample_tsize (frames)")
    r, rt = spatial_ratio, time_ratio

    def space(x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        if height <= size and width <= size:
            return encode(x)
        return tile_space(encode, x, size, stride, stride // r, (size - stride) // r, (height // r, width // r))

    frames = video.shape[2]
    if frames <= tsize:
        return space(video)
    return tile_time(space, video, tsize, tstride, tstride // rt, (tsize - tstride) // rt, 1 + (frames - 1) // rt)


def tiled_decode(decode: Callable[[Tensor], Tensor], latents: Tensor, spec: TileSpec, spatial_ratio: int,
                 time_ratio: int) -> Tensor:
    """`decode` (latents -> video) over tiles of `latents` (B, C, t, h, w); tiles only the dims larger than a tile."""
    r, rt = spatial_ratio, time_ratio
    size, tsize = spec.sample_size // r, spec.sample_tsize // rt
    stride = _stride(spec.sample_size, spec.overlap, r, "sample_size (pixels)") // r
    tstride = _stride(spec.sample_tsize, spec.overlap, rt, "sample_tsize (frames)") // rt

    def space(z: Tensor) -> Tensor:
        height, width = z.shape[-2:]
        if height <= size and width <= size:
            return decode(z)
        return tile_space(decode, z, size, stride, stride * r, (size - stride) * r, (height * r, width * r))

    frames = latents.shape[2]
    if frames <= tsize:
        return space(latents)
    return tile_time(space, latents, tsize, tstride, tstride * rt, (tsize - tstride) * rt, 1 + (frames - 1) * rt)
