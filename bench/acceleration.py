"""Step caches, sliding tile attention and a CFG-distilled transformer on the embedded tiny model: the speed they
buy against what they cost, side by side in one process.

For each held-out caption (the world's test split, seed 0: combinations training never shows) the exact video and
one video per setting are sampled from the same starting noise (seed = the caption's index), at the model folder's
default size and CFG and `--steps` steps. Settings: `teacache:X` / `fbcache:X` (a step cache at threshold X);
`sta:plan` (sliding tile attention with the model folder's searched plan, `sliding_tile.json`); `sta:TxHxW` (one
window for every block and head, in tiles of `--sta-tile`, after `--sta-full-steps` full steps); `distilled` (the
transformer of `--distilled`, one pass per step with the exact run's CFG scale as its embedded guidance, no true
CFG; `distilled:G` with embedded guidance G). STA runs the device's kernel (gather on the CPU, flex on CUDA): at
the tiny model's 80 video tokens its time says little of STA's speed, which `bench/sliding_tile.py` measures at >= 8k
tokens (or this script with `--size`).
Per setting: the denoising time as a ratio to the exact runs (summed over the captions; the order of the
settings alternates from caption to caption), the mean full and skipped steps, the PSNR of each decoded video against
the exact one (mean over videos, uint8 frames), and the evaluator's colour and motion accuracy
(`hunyuan_video.tiny.evaluate.score` on the frames). Writes OUT/report.json and OUT/contact_sheet.png (per caption
the middle frame of the exact video, then of each setting) and OUT/table.md, rewritten after each caption.

    python bench/acceleration.py --captions 100 --steps 50        # the full setting
    python bench/acceleration.py --captions 16 --out outputs/accel  # a quick look
    python bench/acceleration.py --settings sta:plan sta:3x1x1 distilled --distilled runs/x/transformer_ema.safetensors
    python bench/acceleration.py --captions 2 --size 29 512 512 --steps 10 --settings sta:1x3x3 --sta-tile 4 8 8 \
        --sta-full-steps 2                                        # STA at 8192 video tokens

Prints the markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tiny_quality import psnr

from hunyuan_video.checkpoint import load_transformer
from hunyuan_video.pipelines import HunyuanVideoPipeline
from hunyuan_video.pipelines.defaults import GenerationDefaults
from hunyuan_video.sparse_attention import SlidingTile
from hunyuan_video.tiny.evaluate import score, summarize
from hunyuan_video.tiny.synth import sample_clip

TINY = Path(__file__).resolve().parent.parent / "hunyuan_video" / "assets" / "tiny"
SETTINGS = ("teacache:0.05", "teacache:0.1", "fbcache:0.2", "fbcache:0.3")


def sample(pipe: HunyuanVideoPipeline, setting: str, caption: str, latents: torch.Tensor, args: argparse.Namespace,
           distilled: HunyuanVideoPipeline | None) -> tuple:
    """One video under `setting` ("exact", "teacache:X", "fbcache:X", "sta:plan", "sta:TxHxW", "distilled" or
    "distilled:G"): frames, denoise seconds, cache steps."""
    pipe.disable_step_cache().disable_sliding_tile_attention()
    method, _, value = setting.partition(":")
    call = {"num_inference_steps": args.steps}
    if method == "distilled":
        pipe = distilled
        call.update(cfg_scale=1.0, guidance_scale=float(value) if value else args.cfg_scale)
    elif method == "sta":  # the device's kernel: gather on the CPU, flex on CUDA
        if value == "plan":
            if pipe.sliding_tile_plan is None:
                raise SystemExit(f"sta:plan: {args.model} has no sliding_tile.json (run hunyuan-video calibrate-sta)")
            pipe.sliding_tile = SlidingTile.from_plan(pipe.sliding_tile_plan, args.sta_full_steps)
        else:
            window = tuple(int(n) for n in value.split("x"))
            pipe.sliding_tile = SlidingTile(window, tuple(args.sta_tile), args.sta_full_steps or 0)
    elif method != "exact":
        pipe.enable_step_cache(method, float(value))
    out = pipe(caption, latents=latents.clone(), **call)
    return out.frames[0], out.timings["denoise_s"], out.cache_steps or {"full": args.steps, "skipped": 0}


def distilled_pipeline(pipe: HunyuanVideoPipeline, path: str) -> HunyuanVideoPipeline:
    """`pipe` with the transformer at `path` (a CFG-distilled checkpoint) in place of its own."""
    student = load_transformer(path, dtype=pipe.dtype, device=pipe.device)
    if not student.config.guidance_embed:
        raise SystemExit(f"--distilled {path}: not a CFG-distilled transformer (it has no guidance embedding)")
    out = HunyuanVideoPipeline(student, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.defaults)
    out.progress = False
    return out


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(TINY), help="model folder (default: the embedded tiny model)")
    parser.add_argument("--captions", type=int, default=100, help="held-out captions (test split, seed 0)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS),
                        help="teacache:X, fbcache:X, sta:plan, sta:TxHxW, distilled or distilled:G")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model folder's)")
    parser.add_argument("--sta-tile", type=int, nargs=3, default=[1, 2, 2], metavar=("T", "H", "W"),
                        help="tokens per tile of the sta:TxHxW settings")
    parser.add_argument("--sta-full-steps", type=int, default=None,
                        help="full-attention steps before STA (default: the plan's; 0 for a fixed window)")
    parser.add_argument("--size", type=int, nargs=3, metavar=("FRAMES", "HEIGHT", "WIDTH"),
                        help="video size (default: the model folder's); e.g. 29 512 512 for 8192 video tokens")
    parser.add_argument("--distilled", help="the CFG-distilled transformer of the `distilled` setting")
    parser.add_argument("--out", default="outputs/acceleration", help="folder for report.json and contact_sheet.png")
    args = parser.parse_args()

    pipe = HunyuanVideoPipeline.from_pretrained(args.model, dtype=torch.float32, device="cpu")
    pipe.progress = False
    if args.size:
        pipe.defaults = replace(pipe.defaults, frames=args.size[0], height=args.size[1], width=args.size[2])
    d = pipe.defaults
    args.steps, args.cfg_scale = args.steps or d.steps, d.cfg_scale
    wants_distilled = any(s.partition(":")[0] == "distilled" for s in args.settings)
    if wants_distilled and not args.distilled:
        raise SystemExit("the distilled setting needs --distilled PATH")
    distilled = distilled_pipeline(pipe, args.distilled) if wants_distilled else None
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
            frames, seconds, steps = sample(pipe, setting, clip.caption, latents, args, distilled)
            videos[setting] = frames
            row = rows[setting]
            row["seconds"] += seconds
            row["full"], row["skipped"] = row["full"] + steps["full"], row["skipped"] + steps["skipped"]
            row["scores"].append(score(frames, objects))
            if i < 6:
                row["frames"].append(frames[len(frames) // 2])
        for setting in settings:
            rows[setting]["psnr"].append(psnr(videos[setting], videos["exact"]))
        write_results(rows, settings, args, d, i + 1)
        print(f"caption {i + 1}/{args.captions} ({time.perf_counter() - start:.0f}s)", flush=True)
    out = Path(args.out)
    print((out / "table.md").read_text())
    print(f"report: {out / 'report.json'}; contact sheet (rows: captions; columns: {', '.join(settings)}): "
          f"{out / 'contact_sheet.png'}")


def write_results(rows: dict, settings: list[str], args: argparse.Namespace, d: GenerationDefaults, done: int
                  ) -> None:
    """Write OUT/report.json, OUT/table.md (the markdown table) and OUT/contact_sheet.png over the first `done`
    captions (rewritten after each caption, so a run stopped early leaves its results so far)."""
    exact = rows["exact"]
    report = {"model": args.model, "captions": done, "steps": args.steps, "cfg_scale": d.cfg_scale,
              "sta_tile": args.sta_tile, "sta_full_steps": args.sta_full_steps, "distilled": args.distilled,
              "size": [d.frames, d.height, d.width], "machine": f"{platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads", "settings": {}}
    lines = [f"{done} held-out captions, {d.frames}x{d.height}x{d.width}, {args.steps} steps, CFG {d.cfg_scale}, CPU "
             f"{torch.get_num_threads()} thread(s)", "",
             "| setting | full / skipped steps per video | denoise speed-up | PSNR vs exact (dB) | colour | motion |",
             "|---|---|---|---|---|---|"]
    for setting in settings:
        row = rows[setting]
        summary = summarize(row["scores"])
        finite = [p for p in row["psnr"] if np.isfinite(p)]
        entry = {"speedup": exact["seconds"] / row["seconds"], "full": row["full"] / done,
                 "skipped": row["skipped"] / done,
                 "psnr_mean": float(np.mean(finite)) if finite else None,
                 "psnr_min": float(np.min(finite)) if finite else None,
                 "colour": summary["colour_accuracy"], "motion": summary["motion_accuracy"]}
        report["settings"][setting] = entry
        psnr_text = "exact" if setting == "exact" else (f"{entry['psnr_mean']:.1f} (min {entry['psnr_min']:.1f})"
                                                        if finite else "inf")
        lines.append(f"| {setting} | {entry['full']:.1f} / {entry['skipped']:.1f} | {entry['speedup']:.2f}x | "
                     f"{psnr_text} | {entry['colour']:.1%} | {entry['motion']:.1%} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    grid = np.concatenate([np.concatenate(rows[s]["frames"], axis=0) for s in settings], axis=1)
    Image.fromarray(grid).save(out / "contact_sheet.png")

if __name__ == "__main__":
    main()
