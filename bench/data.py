"""Throughput of the data side: writing synthetic clips, drawing VAE training batches, scoring videos.

The official repository ships no data pipeline, so there is no reference to run side by side; the numbers say
whether data keeps up with training on the machine at hand (a training step of the tiny VAE takes far longer).

    python bench/data.py                      # 64 clips of 17x64x64 in a temporary folder
    python bench/data.py --clips 256 --batch-size 4

Prints markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from hunyuan_video.tiny.evaluate import evaluate_folder
from hunyuan_video.tiny.synth import SynthConfig, generate
from hunyuan_video.train.vae import ClipSampler, VAEStage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40, help="batches to time (after 2 warm-up ones)")
    parser.add_argument("--frames", type=int, default=17, help="frames of a video sample")
    parser.add_argument("--size", type=int, default=64, help="crop size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        cfg = SynthConfig()
        t0 = time.perf_counter()
        generate(root, args.clips, seed=0, config=cfg, progress=False)
        synth_s = time.perf_counter() - t0

        sampler = ClipSampler(root, max_stride=8, seed=0)
        stage = VAEStage(steps=1, size=args.size, frames=args.frames, batch_size=args.batch_size,
                         image_batch_size=args.batch_size)
        for _ in range(2):
            sampler.batch(stage, video_per_image=4)
        t0 = time.perf_counter()
        samples = sum(len(sampler.batch(stage, video_per_image=4)) for _ in range(args.batches))
        load_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        report = evaluate_folder(root)
        eval_s = time.perf_counter() - t0

    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    print(f"| machine | {machine} |")
    print("| job | config | throughput |")
    print("| --- | --- | --- |")
    size = f"{cfg.frames}x{cfg.height}x{cfg.width}"
    print(f"| `data synth` (draw + H.264) | {size} | {args.clips / synth_s:.0f} clips/s |")
    print(f"| VAE batches (decode, stride, rescale, crop) | B={args.batch_size}, {args.frames}x{args.size}x"
          f"{args.size}, 4:1 | {samples / load_s:.0f} samples/s |")
    print(f"| `data eval` (decode + score) | {size} | {report['n'] / eval_s:.0f} "
          f"clips/s (colour {report['colour_accuracy']:.0%}, motion {report['motion_accuracy']:.0%}) |")


if __name__ == "__main__":
    main()
