"""VAE decode: time and peak memory, ours against diffusers' AutoencoderKLHunyuanVideo with the same weights.

    python bench/vae.py speed  [--frames 17 --size 128 --runs 3 --threads 1]
    python bench/vae.py memory [--lengths 17 33 65 --size 256]

`speed` decodes the same latents with both models, un-tiled and tiled (the same tile sizes on both), alternating,
and prints the median times and the PSNR of a round trip of a moving pattern (random weights: plumbing only).
`memory` runs each decode in a fresh subprocess and reports its peak resident memory above the memory before the
decode (sampled every millisecond from /proc; glibc is told to mmap every large block, so freed tensors leave RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_models import randomize_  # noqa: E402

from hunyuan_video.config import VAEConfig  # noqa: E402
from hunyuan_video.models.tiling import TileSpec  # noqa: E402
from hunyuan_video.models.vae import CausalVAE  # noqa: E402

CONFIGS = {
    # Half the official widths, the official depth: a decode of 17x128x128 takes seconds on a CPU core.
    "mid": VAEConfig(block_out_channels=(64, 128, 256, 256), layers_per_block=2, norm_num_groups=32),
    "tiny": VAEConfig(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8),
    "full": VAEConfig(),
}


def build(config_name: str, tile: TileSpec | None):
    """Our VAE and diffusers' with the same random weights; diffusers tiles like `tile` (or never)."""
    from diffusers import AutoencoderKLHunyuanVideo

    c = CONFIGS[config_name]
    ours = randomize_(CausalVAE(c), seed=0, std=0.05).eval()
    ref = AutoencoderKLHunyuanVideo(latent_channels=c.latent_channels, block_out_channels=c.block_out_channels,
                                    layers_per_block=c.layers_per_block, norm_num_groups=c.norm_num_groups).eval()
    ref.load_state_dict(ours.state_dict())
    ref.use_framewise_encoding = ref.use_framewise_decoding = tile is not None
    if tile is not None:
        stride, tstride = int(tile.sample_size * 0.75), int(tile.sample_tsize * 0.75)
        ref.enable_tiling(tile.sample_size, tile.sample_size, tile.sample_tsize, stride, stride, tstride)
    return ours, ref


def moving_pattern(frames: int, size: int) -> torch.Tensor:
    """A bright square crossing striped, drifting colour fields, in [-1, 1]: (1, 3, frames, size, size)."""
    t = torch.arange(frames).view(frames, 1, 1).float()
    y = torch.arange(size).view(1, size, 1).float()
    x = torch.arange(size).view(1, 1, size).float()
    stripes = torch.sin(0.2 * (x + 2 * t))
    square = ((x - size / 8 - 2 * t).abs() < size / 8) & ((y - size / 2).abs() < size / 8)
    red = torch.where(square, 1.0, 0.3 * stripes)
    return torch.stack(torch.broadcast_tensors(red, 0.5 * stripes, torch.cos(0.1 * (y - t)))).unsqueeze(0)


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tile = TileSpec(args.tile, args.tile_frames)
    latents = torch.randn(1, 16, 1 + (args.frames - 1) // 4, args.size // 8, args.size // 8)
    rows = []
    for mode in ("untiled", "tiled"):
        ours, ref = build(args.config, tile if mode == "tiled" else None)
        fns = {"ours": partial(ours.decode, latents, tiling=tile if mode == "tiled" else False),
               "diffusers": partial(ref._decode, latents, return_dict=False)}
        times = {name: [] for name in fns}
        with torch.no_grad():
            mine, theirs = fns["ours"](), fns["diffusers"]()[0]  # warm-up, and the outputs to compare
            diff = ((mine - theirs).abs().max() / theirs.abs().max()).item()
            for _ in range(args.runs):
                for name, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append(dict(mode=mode, ours_s=med["ours"], diffusers_s=med["diffusers"],
                         speedup=med["diffusers"] / med["ours"], rel_diff=diff))
        print(json.dumps(rows[-1]), flush=True)
    video = moving_pattern(args.frames, args.size)
    with torch.no_grad():
        recon = ours.decode(ours.encode(video, tiling=False).mode(), tiling=False).clamp(-1, 1)
    psnr = (10 * torch.log10(4 / (recon - video).pow(2).mean())).item()
    print(json.dumps(dict(config=args.config, frames=args.frames, size=args.size, threads=args.threads,
                          tile=[args.tile, args.tile_frames], round_trip_psnr_db=psnr)))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _one_decode(args: argparse.Namespace) -> None:
    """(subprocess) one decode; print the peak RSS above the RSS before it."""
    torch.set_num_threads(args.threads)
    tile = TileSpec(args.tile, args.tile_frames)
    ours, ref = build(args.config, tile if args.mode == "tiled" else None)
    latents = torch.randn(1, 16, 1 + (args.frames - 1) // 4, args.size // 8, args.size // 8)
    if args.impl == "ours":
        fn = partial(ours.decode, latents, tiling=tile if args.mode == "tiled" else False)
    else:
        fn = partial(ref._decode, latents, return_dict=False)
    del ours, ref  # only the decode under test stays alive
    with torch.no_grad():  # warm-up on one latent frame: one-time allocations of the libraries are not the decode's
        fn.func(latents[:, :, :1], *fn.args[1:], **fn.keywords)
    before, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with torch.no_grad():
        out = fn()
    done.set()
    out = out if isinstance(out, torch.Tensor) else out[0]
    sampler.join()
    print(json.dumps(dict(peak_above_mib=(peak[0] - before) / 2**20, output_mib=out.numel() * 4 / 2**20)))


def memory(args: argparse.Namespace) -> None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    for frames in args.lengths:
        for impl in ("ours", "diffusers"):
            for mode in args.modes:
                cmd = [sys.executable, __file__, "_one", "--impl", impl, "--mode", mode, "--frames", str(frames),
                       "--size", str(args.size), "--config", args.config, "--tile", str(args.tile),
                       "--tile-frames", str(args.tile_frames), "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                row = dict(frames=frames, impl=impl, mode=mode, **json.loads(out.strip().splitlines()[-1]))
                print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=["speed", "memory", "_one"])
    parser.add_argument("--config", default="mid", choices=sorted(CONFIGS))
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--tile", type=int, default=64, help="tile size in pixels (official: 256)")
    parser.add_argument("--tile-frames", type=int, default=16, help="tile length in frames (official: 64)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lengths", type=int, nargs="+", default=[17, 33, 65])
    parser.add_argument("--modes", nargs="+", default=["tiled", "untiled"])
    parser.add_argument("--impl", default="ours")
    parser.add_argument("--mode", default="tiled")
    args = parser.parse_args()
    {"speed": speed, "memory": memory, "_one": _one_decode}[args.job](args)


if __name__ == "__main__":
    main()
