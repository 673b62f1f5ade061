"""Training speed of the tiny VAE on the CPU: float32 against bf16 autocast (`cpu_bf16`), in one process.

    hunyuan-video data synth data_cache/vae_val --clips 32 --seed 0 --split test --size 64 --frames 17
    python bench/vae_train.py --data data_cache/vae_val --threads 2

Each run fine-tunes the embedded VAE (encoder and decoder) for `--steps` steps of 2 whole 5x64x64 clips (or 4 images)
from the same seed; the two runs alternate `--rounds` times and the median seconds per step of each is printed, with
the reconstruction loss of the last 10 steps (the same batches in both runs). Results go to BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from tiny_vae import TINY_VAE

from hunyuan_video.train.common import read_jsonl
from hunyuan_video.train.vae import VAEStage, VAETrainConfig, train_vae


def run(data: str, steps: int, cpu_bf16: bool, out: Path) -> tuple[float, float]:
    """Seconds per step (after the first) and the mean reconstruction loss of the last 10 steps."""
    cfg = VAETrainConfig(
        train_dir=data, out_dir=str(out), init_from=str(TINY_VAE), device="cpu", cpu_bf16=cpu_bf16,
        stages=[VAEStage(steps=steps, size=64, frames=5, batch_size=2, image_batch_size=4)], video_per_image=1,
        rec_loss="mse", lpips_weight=0.0, disc_weight=0.0, lr=1e-4, warmup_steps=5, log_every=1,
        checkpoint_every=10**6,
    )
    train_vae(cfg, overwrite=True, progress=False)
    log = read_jsonl(out / "log.jsonl")
    times = [b["time"] - a["time"] for a, b in zip(log, log[1:])]
    return statistics.median(times), statistics.mean(r["rec"] for r in log[-10:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data_cache/vae_val", help="clips to train on (metadata.jsonl + mp4)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for bf16 in (False, True):
                results[bf16].append(run(args.data, args.steps, bf16, Path(tmp) / f"{bf16}_{i}"))
    base = statistics.median(t for t, _ in results[False])
    print(f"| run | s/step | speed | rec. loss, last 10 steps |  ({args.threads} thread(s), {args.steps} steps)")
    print("| --- | --- | --- | --- |")
    for bf16, name in ((False, "float32"), (True, "cpu_bf16")):
        step = statistics.median(t for t, _ in results[bf16])
        rec = statistics.mean(r for _, r in results[bf16])
        print(f"| {name} | {step:.3f} | {base / step:.2f}x | {rec:.5f} |")


if __name__ == "__main__":
    main()
