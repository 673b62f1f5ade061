"""Attention speed of sliding tile attention against full attention, on one layer's q, k, v (random), in one process.

Four timings over [video tokens of `--grid` | `--text` text tokens]: PyTorch's SDPA (full attention), compiled
`flex_attention` without a mask (full attention, the same kernel family as STA), and STA with `--tile` and
`--window` by its two kernels: compiled `flex_attention` with the block mask, and the gather kernel (each query
tile's window of key tiles gathered for SDPA; `hunyuan_video.models.sliding_tile`). Also prints the fraction of
blocks the mask skips.

    python bench/sliding_tile.py                                   # 8192 video tokens, 2 heads of 64, CPU
    python bench/sliding_tile.py --grid 30 48 80 --tile 6 8 8 --window 3 3 5 --heads 24 --head-dim 128 --device cuda
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from hunyuan_video.models.sliding_tile import TilePlan, sliding_tile_attention


def seconds(run: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Mean seconds of `run` after one warm-up call."""
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    """Time the four paths and print one markdown row."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, nargs=3, default=[8, 32, 32], metavar=("T", "H", "W"))
    parser.add_argument("--tile", type=int, nargs=3, default=[4, 8, 8], metavar=("T", "H", "W"))
    parser.add_argument("--window", type=int, nargs=3, default=[1, 3, 3], metavar=("T", "H", "W"),
                        help="tiles per axis a query tile attends to")
    parser.add_argument("--text", type=int, default=128, help="text tokens")
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    plan = TilePlan(tuple(args.grid), tuple(args.tile), tuple(args.window))
    video = args.grid[0] * args.grid[1] * args.grid[2]
    s = video + args.text
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, args.heads, s, args.head_dim, generator=g).to(device, dtype) for _ in range(3))
    mask = create_block_mask(plan.mask_mod(None), None, None, s, s, device=device, BLOCK_SIZE=plan.tile_size)
    flex = torch.compile(flex_attention, dynamic=False)
    sdpa_s = seconds(lambda: F.scaled_dot_product_attention(q, k, v), device)
    dense_s = seconds(lambda: flex(q, k, v), device)
    sta_s = seconds(lambda: flex(q, k, v, block_mask=mask), device)
    qs, ks, vs = (x.transpose(1, 2) for x in (q, k, v))  # (B, S, heads, head_dim), the model's layout
    gather_s = seconds(lambda: sliding_tile_attention(qs, ks, vs, plan, kernel="gather"), device)
    print(f"{video} video + {args.text} text tokens, tile {args.tile}, window {args.window}, {args.heads} heads of "
          f"{args.head_dim}, {args.dtype} on {device}, {torch.get_num_threads()} thread(s); blocks skipped: "
          f"{mask.sparsity():.1f}%\n")
    print("| SDPA (full) | flex, no mask (full) | STA flex | STA gather | flex STA vs SDPA | flex STA vs flex full | "
          "gather STA vs SDPA |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {sdpa_s * 1e3:.0f} ms | {dense_s * 1e3:.0f} ms | {sta_s * 1e3:.0f} ms | {gather_s * 1e3:.0f} ms | "
          f"{sdpa_s / sta_s:.2f}x | {dense_s / sta_s:.2f}x | {sdpa_s / gather_s:.2f}x |")


if __name__ == "__main__":
    main()
