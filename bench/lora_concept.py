"""What a LoRA taught the embedded tiny model: the evaluator's scores before and after it, on captions of the
new-concept world (pink, heart: words the model never saw; moving in a circle: a motion it never saw, in words it
knows) and on the default world's held-out captions.

The new captions are the first `--new-videos` clips of the new-concept world's test split (seed 0: colour x shape x
motion combinations the LoRA's training clips never show, every main object pink, a heart or moving in a circle);
the old ones the first `--old-videos` of the default world's test split, as `bench/tiny_quality.py` samples them.
Each video is sampled from the noise of seed = its index, as `generate` samples it, once by the embedded model and
once with the LoRA loaded, and scored by `hunyuan_video.tiny.evaluate` with `NEW_CONCEPT_PALETTE` (the old colours
and pink), so that a pink object counts as pink and not as the nearest old colour, and with its shape reader (the
heart among the shapes); the table also scores each new concept apart. The VAE's reconstructions of the same real
clips, scored the same way, are the ceiling any transformer (or LoRA on it) can reach through this decoder. Writes
OUT/{base,lora,vae}/{new,old}/*.mp4 and their eval.json; `--models` and `--kinds` pick a part to run now (parts may
run apart, e.g. the base while the LoRA trains), the table reads all six eval.json.

    python bench/lora_concept.py --lora runs/lora_tiny_new_concepts/new_concepts.safetensors  # 40 new + 100 old
    python bench/lora_concept.py --lora LORA --models base --new-videos 20 --old-videos 40      # one part of it

Prints a markdown table for BENCHMARKS.md, and the old captions' paired comparison: the videos whose motion the LoRA
loses and gains against the base's video of the same seed, and the mean PSNR between them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tiny_quality import TINY, caption_rows, load_pipeline, psnr, sample_folder, vae_ceiling

from hunyuan_video.tiny.evaluate import NEW_CONCEPT_PALETTE, evaluate_folder, summarize
from hunyuan_video.tiny.synth import NEW_COLOURS, NEW_MOTIONS, NEW_SHAPES, sample_clip
from hunyuan_video.video_io import read_video


def new_concept_rows(n: int, world_seed: int = 0) -> list[dict]:
    """Caption and objects of the first `n` clips of the new-concept world's test split."""
    rows = []
    for i in range(n):
        clip = sample_clip(i, world_seed, "test", new_concepts=True)
        objects = [{"colour": o.colour, "shape": o.shape, "size": o.size, "motion": o.motion, "speed": o.speed}
                   for o in clip.objects]
        rows.append({"file": f"{i:03d}.mp4", "caption": clip.caption, "objects": objects, "index": i, "split": "test"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora", required=True,
                        help="the LoRA file (runs/lora_tiny_new_concepts/new_concepts.safetensors)")
    parser.add_argument("--scale", type=float, default=1.0, help="the LoRA's scale")
    parser.add_argument("--out", default="outputs/lora_concept")
    parser.add_argument("--new-videos", type=int, default=40)
    parser.add_argument("--old-videos", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--models", nargs="+", choices=("base", "lora", "vae"),
                        default=["base", "lora", "vae"],
                        help="whose videos to sample and score now (vae: reconstructions of the real clips)")
    parser.add_argument("--kinds", nargs="+", choices=("new", "old"), default=["new", "old"],
                        help="which captions to sample and score now")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    captions = {"new": new_concept_rows(args.new_videos), "old": caption_rows(args.old_videos)}
    pipe, kwargs = load_pipeline(str(TINY))
    for model in args.models:
        if model == "lora":
            pipe.load_lora_weights(args.lora, scale=args.scale)
        for kind in args.kinds:
            folder = out / model / kind
            if model == "vae":
                vae_ceiling(pipe, captions[kind], folder, new_concepts=kind == "new", palette=NEW_CONCEPT_PALETTE)
                continue
            seconds = sample_folder(pipe, captions[kind], folder, args.batch, **kwargs)
            evaluate_folder(folder, out=folder / "eval.json", palette=NEW_CONCEPT_PALETTE)
            print(f"{model} {kind}: {seconds:.1f} s a video")
    reports = {(m, k): out / m / k / "eval.json" for m in ("base", "lora", "vae") for k in ("new", "old")}
    if missing := [str(p) for p in reports.values() if not p.is_file()]:
        raise SystemExit(f"no table yet: {', '.join(missing)} missing")
    scores = {key: json.loads(p.read_text()) for key, p in reports.items()}
    print("| captions | videos | colour: base -> LoRA (VAE ceiling) | motion: base -> LoRA (VAE ceiling) | "
          "shape: base -> LoRA (VAE ceiling) |")
    print("| --- | --- | --- | --- | --- |")
    groups = {"new concepts (pink, heart, in a circle), held out": ("new", lambda c: True),
              "... of them: pink main objects": ("new", lambda c: c["colour"] in NEW_COLOURS),
              "... of them: hearts": ("new", lambda c: c["shape"] in NEW_SHAPES),
              "... of them: moving in a circle": ("new", lambda c: c["motion"] in NEW_MOTIONS),
              "default world, held out": ("old", lambda c: True)}
    for name, (kind, keep) in groups.items():
        b, a, v = (summarize([c for c in scores[m, kind]["clips"] if keep(c)]) for m in ("base", "lora", "vae"))
        if not b["n"] == a["n"] == v["n"]:
            raise SystemExit(f"{kind}: {b['n']} base videos, {a['n']} with the LoRA, {v['n']} VAE: rerun them alike")
        cells = [f"{b[k]:.0%} -> {a[k]:.0%} ({v[k]:.0%})" for k in ("colour_accuracy", "motion_accuracy",
                                                                        "shape_accuracy")]
        print(f"| {name} | {b['n']} | {' | '.join(cells)} |")
    print(paired_line(out, scores["base", "old"]["clips"], scores["lora", "old"]["clips"]))


def paired_line(out: Path, base: list[dict], lora: list[dict]) -> str:
    """The old captions' videos with the LoRA against the base's of the same seed: videos whose motion it loses and
    gains, and their mean PSNR (how far the LoRA moves what the base draws)."""
    lost = sum(b["motion_ok"] and not a["motion_ok"] for b, a in zip(base, lora))
    gained = sum(a["motion_ok"] and not b["motion_ok"] for b, a in zip(base, lora))
    distances = [psnr(*(read_video(out / model / "old" / clip["file"]) for model in ("lora", "base")))
                 for clip in base]
    finite = [d for d in distances if np.isfinite(d)]
    return (f"old captions, the LoRA's videos against the base's of the same seed: motion lost in {lost}, gained in "
            f"{gained} of {len(base)}; mean PSNR {np.mean(finite):.1f} dB ({len(base) - len(finite)} identical)")

if __name__ == "__main__":
    main()
