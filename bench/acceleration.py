"""Step caches on the embedded tiny model: the speed they buy against what they cost, side by side in one process.

For each held-out caption (the world's test split, seed 0: combinations training never shows) the exact video and
one video per cache setting are sampled from the same starting noise (seed = the caption's index), at the model
folder's default size, steps and CFG. Per setting: the denoising time as a ratio to the exact runs (summed over the
captions; the order of the settings alternates from caption to caption), the mean full and skipped steps, the PSNR
of each decoded video against the exact one (mean over videos, uint8 frames), and the evaluator's colour and motion
accuracy (`hunyuan_video.tiny.evaluate.score` on the frames). Writes OUT/report.json and OUT/contact_sheet.png (per
caption the middle frame of the exact video, then of each setting).

    python bench/acceleration.py --captions 100                   # the full setting
    python bench/acceleration.py --captions 16 --out outputs/accel  # a quick look

Prints the markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hunyuan_video.pipelines import HunyuanVideoPipeline
from hunyuan_video.tiny.evaluate import score, summarize
from hunyuan_video.tiny.synth import sample_clip

TINY = Path(__file__).resolve().parent.parent / "hunyuan_video" / "assets" / "tiny"
SETTINGS = ("teacache:0.05", "teacache:0.1", "fbcache:0.2", "fbcache:0.3")


def psnr(video: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of uint8 `video` against `reference` (inf when equal)."""
    mse = float(np.mean((video.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def sample(pipe: HunyuanVideoPipeline, setting: str, caption: str, latents: torch.Tensor) -> tuple:
    """One video under `setting` ("exact" or "method:threshold"): frames, denoise seconds, cache steps."""
    if setting == "exact":
        pipe.disable_step_cache()
    else:
        method, threshold = setting.split(":")
        pipe.enable_step_cache(method, float(threshold))
    out = pipe(caption, latents=latents.clone())
    return out.frames[0], out.timings["denoise_s"], out.cache_steps or {"full": pipe.defaults.steps, "skipped": 0}


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(TINY), help="model folder (default: the embedded tiny model)")
    parser.add_argument("--captions", type=int, default=100, help="held-out captions (test split, seed 0)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="method:threshold, e.g. teacache:0.1")
    parser.add_argument("--out", default="outputs/acceleration", help="folder for report.json and contact_sheet.png")
    args = parser.parse_args()

    pipe = HunyuanVideoPipeline.from_pretrained(args.model, dtype=torch.float32, device="cpu")
    pipe.progress = False
    d = pipe.defaults
    settings = ["exact", *args.settings]
    rows = {s: {"seconds": 0.0, "full": 0, "skipped": 0, "psnr": [], "scores": [], "frames": []} for s in settings}
    start = time.perf_counter()
    for i in range(args.captions):
        clip = sample_clip(i, 0, "test")
        objects = [{"colour": o.colour, "motion": o.motion, "speed": o.speed} for o in clip.objects]
        latents = torch.randn(pipe.latent_shape(1, d.height, d.width, d.frames), generator=torch.Generator()
                              .manual_seed(i))
        videos = {}
        for setting in settings if i % 2 == 0 else settings[::-1]:
            frames, seconds, steps = sample(pipe, setting, clip.caption, latents)
            videos[setting] = frames
            row = rows[setting]
            row["seconds"] += seconds
            row["full"], row["skipped"] = row["full"] + steps["full"], row["skipped"] + steps["skipped"]
            row["scores"].append(score(frames, objects))
            if i < 6:
                row["frames"].append(frames[len(frames) // 2])
        for setting in settings:
            rows[setting]["psnr"].append(psnr(videos[setting], videos["exact"]))
        print(f"caption {i + 1}/{args.captions} ({time.perf_counter() - start:.0f}s)", flush=True)

    exact = rows["exact"]
    report = {"model": args.model, "captions": args.captions, "steps": d.steps, "cfg_scale": d.cfg_scale,
              "size": [d.frames, d.height, d.width], "machine": f"{platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads", "settings": {}}
    print(f"\n{args.captions} held-out captions, {d.frames}x{d.height}x{d.width}, {d.steps} steps, CFG {d.cfg_scale}, "
          f"CPU {torch.get_num_threads()} thread(s)\n")
    print("| setting | full / skipped steps per video | denoise speed-up | PSNR vs exact (dB) | colour | motion |")
    print("|---|---|---|---|---|---|")
    for setting in settings:
        row = rows[setting]
        summary = summarize(row["scores"])
        finite = [p for p in row["psnr"] if np.isfinite(p)]
        entry = {"speedup": exact["seconds"] / row["seconds"], "full": row["full"] / args.captions,
                 "skipped": row["skipped"] / args.captions,
                 "psnr_mean": float(np.mean(finite)) if finite else None,
                 "psnr_min": float(np.min(finite)) if finite else None,
                 "colour": summary["colour_accuracy"], "motion": summary["motion_accuracy"]}
        report["settings"][setting] = entry
        psnr_text = "exact" if setting == "exact" else (f"{entry['psnr_mean']:.1f} (min {entry['psnr_min']:.1f})"
                                                        if finite else "inf")
        print(f"| {setting} | {entry['full']:.1f} / {entry['skipped']:.1f} | {entry['speedup']:.2f}x | {psnr_text} | "
              f"{entry['colour']:.1%} | {entry['motion']:.1%} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    grid = np.concatenate([np.concatenate(rows[s]["frames"], axis=0) for s in settings], axis=1)
    Image.fromarray(grid).save(out / "contact_sheet.png")
    print(f"\nreport: {out / 'report.json'}; contact sheet (rows: captions; columns: {', '.join(settings)}): "
          f"{out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
