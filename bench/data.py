"""Throughput of the data side: writing synthetic clips, loading training batches, scoring videos.

The official repository ships no data pipeline, so there is no reference to run side by side; the numbers say
whether data keeps up with training on the machine at hand (a training step of the tiny VAE takes far longer).

    python bench/data.py                      # 64 clips of 17x64x64 in a temporary folder
    python bench/data.py --clips 256 --workers 2

Prints markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from hunyuan_video.data.buckets import parse_buckets
from hunyuan_video.data.dataset import BucketBatchSampler, VideoDataset, make_loader
from hunyuan_video.tiny.evaluate import evaluate_folder
from hunyuan_video.tiny.synth import SynthConfig, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40, help="batches to time (after 2 warm-up ones)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--buckets", default="17x64x64,1x64x64")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        cfg = SynthConfig()
        t0 = time.perf_counter()
        generate(root, args.clips, seed=0, config=cfg, progress=False)
        synth_s = time.perf_counter() - t0

        dataset = VideoDataset(root, parse_buckets(args.buckets))
        sampler = BucketBatchSampler(dataset, args.batch_size, seed=0)
        loader = iter(make_loader(dataset, sampler, num_workers=args.workers))
        for _ in range(2):
            next(loader)
        t0 = time.perf_counter()
        samples = sum(len(next(loader)["caption"]) for _ in range(args.batches))
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
    print(f"| loader (decode, resize, crop) | B={args.batch_size}, {args.buckets}, 4:1, "
          f"{args.workers} workers | {samples / load_s:.0f} samples/s |")
    print(f"| `data eval` (decode + score) | {size} | {report['n'] / eval_s:.0f} "
          f"clips/s (colour {report['colour_accuracy']:.0%}, motion {report['motion_accuracy']:.0%}) |")


if __name__ == "__main__":
    main()
