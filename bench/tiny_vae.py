"""Quality and speed of the shipped tiny VAE on held-out synthetic clips (results go to BENCHMARKS.md by hand).

    hunyuan-video data synth data_cache/vae_val --clips 32 --seed 0 --split test --size 64 --frames 17
    python bench/tiny_vae.py --val data_cache/vae_val --threads 1

Prints PSNR / SSIM of the reconstructions (posterior mean, un-tiled and with the model's tiles), the same for a
flat baseline that paints each frame its mean colour, and the encode / decode time of one 17x64x64 clip.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import hunyuan_video
from hunyuan_video.checkpoint import load_vae
from hunyuan_video.train.losses import psnr, ssim
from hunyuan_video.train.vae import evaluate, load_val_clips

TINY_VAE = Path(hunyuan_video.__file__).parent / "assets" / "tiny" / "hunyuan-video-t2v-720p" / "vae"


def median_seconds(fn, runs: int = 3, warmup: int = 0) -> float:
    """Median seconds of `fn()` over `runs` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", default=str(TINY_VAE), help="VAE folder or file")
    parser.add_argument("--val", default="data_cache/vae_val", help="held-out clips (metadata.jsonl + mp4)")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    vae = load_vae(args.vae)
    clips = load_val_clips(args.val, args.clips, 64, 17)
    scores = evaluate(vae, clips)
    flat = clips.mean(dim=(3, 4), keepdim=True).expand_as(clips)
    params = sum(p.numel() for p in vae.parameters())
    print(f"{len(clips)} held-out clips 17x64x64, {params / 1e6:.2f}M parameters")
    print(f"reconstruction   PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.3f}")
    print(f"tiled            PSNR {scores['psnr_tiled']:.2f} dB  SSIM {scores['ssim_tiled']:.3f}")
    print(f"flat baseline    PSNR {psnr(flat, clips).mean():.2f} dB  SSIM {ssim(flat, clips).mean():.3f}")
    clip = clips[:1]
    latents = vae.encode(clip, tiling=False).mode()
    for tiling in (False, True):
        enc = median_seconds(lambda t=tiling: vae.encode(clip, tiling=t))
        dec = median_seconds(lambda t=tiling: vae.decode(latents, tiling=t))
        print(f"tiling={tiling!s:5}  encode {enc:.3f} s  decode {dec:.3f} s  ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
