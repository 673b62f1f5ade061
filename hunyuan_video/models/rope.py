"""3D rotary position embedding of the video tokens (official `get_nd_rotary_pos_embed`, `use_real=True`).

The head dim is split into `rope_dim_list` parts (t, h, w); each part rotates adjacent channel pairs
(x[2i], x[2i+1]) by the angle `pos * theta ** (-2i / dim)`. Text tokens are not rotated: their rows of the
tables are the identity (cos 1, sin 0), so one rotation covers a whole [video, text] sequence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rope_tables(
    grid: tuple[int, int, int],
    rope_dim_list: tuple[int, int, int],
    theta: float,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """`(cos, sin)` of shape (T*H*W, 1, head_dim), float32, for `apply_rope`, tokens in t-major order.

    `sin` carries the rotation's sign: -sin on even channels, +sin on odd ones.
    """
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in grid]
    positions = torch.stack(torch.meshgrid(*axes, indexing="ij")).flatten(1)  # (3, T*H*W), t-major
    angles = []
    for pos, dim in zip(positions, rope_dim_list):
        inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device)[: dim // 2] / dim)
        angles.append(torch.outer(pos, inv_freq))
    angles = torch.cat(angles, dim=1)  # (S, head_dim / 2)
    cos = angles.cos().repeat_interleave(2, dim=1)
    sin = torch.stack([-angles.sin(), angles.sin()], dim=-1).flatten(1)
    return cos[:, None], sin[:, None]


def with_text_rows(cos: Tensor, sin: Tensor, text_len: int) -> tuple[Tensor, Tensor]:
    """The tables extended by `text_len` identity rows (cos 1, sin 0): text tokens are not rotated."""
    return F.pad(cos, (0, 0, 0, 0, 0, text_len), value=1.0), F.pad(sin, (0, 0, 0, 0, 0, text_len))


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of `x` (B, S, heads, head_dim) in float32; returns `x`'s dtype."""
    xf = x.float()
    swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x0, x3, x2, ...)
    return torch.addcmul(xf * cos, swapped, sin).type_as(x)
