"""Quality of the embedded tiny model: videos for held-out captions, scored by the synthetic world's evaluator.

The captions are the first `--videos` clips of the world's test split (seed 0): every main object is a (colour,
shape, motion) combination the training clips never show. Each video is sampled with its own seed, written as
mp4 with a metadata.jsonl holding the caption's objects, and scored by `hunyuan_video.tiny.evaluate`; the same is done
with a randomly initialised transformer of the same shape (everything else trained) as the floor, and with the
VAE's own reconstructions of the real clips as the ceiling that decoder allows. Each row also says how many videos
show the caption's background (the named dark or light background nearest the video's top rows). Both the trained
row and the ceiling are also broken down by the main object's motion (straight motions split by speed) and size,
and by the number of objects in the caption.
Writes OUT/trained/*.mp4, OUT/random/*.mp4, OUT/vae_ceiling/*.mp4, OUT/report.json and OUT/contact_sheet.png.

    python bench/tiny_quality.py --out outputs/tiny_quality            # 100 videos
    python bench/tiny_quality.py --model runs/some_folder --videos 20

Prints two markdown tables for BENCHMARKS.md: the rows, and the breakdown.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hunyuan_video.data.dataset import frames_to_tensor
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.pipelines import HunyuanVideoPipeline
from hunyuan_video.tiny.evaluate import evaluate_folder, summarize
from hunyuan_video.tiny.synth import COLOURS, SynthConfig, render_clip, sample_clip
from hunyuan_video.video_io import read_video, to_uint8, write_video

TINY = Path(__file__).resolve().parent.parent / "hunyuan_video" / "assets" / "tiny"


def caption_rows(n: int, split: str = "test", first: int = 0, world_seed: int = 0, light_prob: float = 0.0
                 ) -> list[dict]:
    """Caption and objects of clips `first` .. `first + n - 1` of the world's `split` (the test split: held out),
    a `light_prob` share of them on light backgrounds."""
    rows = []
    for i in range(first, first + n):
        clip = sample_clip(i, world_seed, split, SynthConfig(light_prob=light_prob))
        objects = [{"colour": o.colour, "shape": o.shape, "size": o.size, "motion": o.motion, "speed": o.speed}
                   for o in clip.objects]
        rows.append({"file": f"{i:03d}.mp4", "caption": clip.caption, "objects": objects, "split": split, "index": i,
                     "world_seed": world_seed, "light_prob": light_prob, "background": clip.background})
    return rows


def psnr(video: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of uint8 `video` (or image) against `reference` (inf when equal)."""
    mse = float(np.mean((video.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def row_frames(row: dict, new_concepts: bool = False) -> np.ndarray:
    """The real clip of a `caption_rows` row (of the new-concept world with `new_concepts`): uint8 (T, H, W, 3)."""
    config = SynthConfig(light_prob=row.get("light_prob", 0.0))
    return render_clip(sample_clip(row["index"], row.get("world_seed", 0), row["split"], config, new_concepts), config)


def load_pipeline(model: str) -> tuple[HunyuanVideoPipeline, dict]:
    """The model folder's pipeline (CPU, float32, no progress bars) and its `generate.json` as sampling kwargs."""
    pipe = HunyuanVideoPipeline.from_pretrained(model, dtype=torch.float32, device="cpu")
    pipe.progress = False
    defaults = json.loads((Path(model) / "generate.json").read_text())
    return pipe, {"height": defaults["height"], "width": defaults["width"], "num_frames": defaults["frames"],
                  "num_inference_steps": defaults["steps"], "cfg_scale": defaults["cfg_scale"],
                  "flow_shift": defaults["shift"], "negative_prompt": defaults["negative_prompt"]}


def seeded_latents(pipe: HunyuanVideoPipeline, first: int, count: int, **kwargs) -> torch.Tensor:
    """Starting noise of videos `first` .. `first + count - 1`, each drawn with its index as the seed (so a video
    does not depend on the batch it is sampled in)."""
    shape = pipe.latent_shape(1, kwargs["height"], kwargs["width"], kwargs["num_frames"])
    return torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(first + i)) for i in range(count)])


def sample_folder(pipe: HunyuanVideoPipeline, rows: list[dict], out: Path, batch: int, **kwargs) -> float:
    """Sample a video per row (seed = its index) into `out` with the manifest; returns seconds per video."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for first in range(0, len(rows), batch):
        chunk = rows[first : first + batch]
        latents = seeded_latents(pipe, first, len(chunk), **kwargs)
        frames = pipe([r["caption"] for r in chunk], latents=latents, **kwargs).frames
        for row, video in zip(chunk, frames):
            write_video(out / row["file"], video, fps=8)
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return (time.perf_counter() - start) / len(rows)


def vae_ceiling(pipe: HunyuanVideoPipeline, rows: list[dict], out: Path, new_concepts: bool = False,
                palette: Mapping[str, tuple[int, int, int]] = COLOURS) -> dict:
    """The evaluator (with `palette`) on the VAE's reconstructions of the real held-out clips (of the new-concept
    world with `new_concepts`): the best any transformer can reach through this decoder."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for row in rows:
        video = frames_to_tensor(row_frames(row, new_concepts))
        with torch.no_grad():
            rec = pipe.vae.decode(pipe.vae.encode(video[None]).mode())[0]
        write_video(out / row["file"], to_uint8(rec.permute(1, 2, 3, 0).numpy()), fps=8)
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seconds = (time.perf_counter() - start) / len(rows)
    return summary(rows, evaluate_folder(out, out=out / "eval.json", palette=palette), seconds)


def motion_group(obj: dict) -> str:
    """The breakdown's motion group of an object: "straight slow" / "straight fast" for the eight directions."""
    return f"straight {obj['speed']}" if obj["speed"] else obj["motion"]


def breakdown(rows: list[dict], report: dict) -> dict:
    """Colour and motion accuracy grouped by the main object's motion group, by its size, and by the number of
    objects in the caption."""
    groups: dict[str, dict[str, list[dict]]] = {"motion": {}, "size": {}, "objects": {}}
    for row, result in zip(rows, report["clips"]):
        main = row["objects"][0]
        groups["motion"].setdefault(motion_group(main), []).append(result)
        groups["size"].setdefault(main["size"], []).append(result)
        groups["objects"].setdefault(str(len(row["objects"])), []).append(result)
    return {by: {name: group_accuracy(rs) for name, rs in sorted(found.items())} for by, found in groups.items()}


def group_accuracy(results: list[dict]) -> dict:
    """Videos, colour and motion accuracy of a group of `score` results."""
    report = summarize(results)
    return {"videos": len(results), "colour": report["colour_accuracy"], "motion": report["motion_accuracy"]}


def summary(rows: list[dict], report: dict, seconds: float) -> dict:
    """A row of the table from `evaluate_folder`'s report on `rows`' videos (the share whose background is the
    caption's among them), with its breakdown."""
    return {"videos": len(rows), "colour": report["colour_accuracy"], "motion": report["motion_accuracy"],
            "speed": report["speed_accuracy"], "background": report["background_accuracy"],
            "seconds_per_video": seconds, "motion_confusion": report["motion_confusion"],
            "breakdown": breakdown(rows, report)}


def contact_sheet(folder: Path, rows: list[dict], report: dict, path: Path, count: int = 24) -> Path:
    """A grid: per video its first, middle and last frame, with a green (right) or red (wrong) colour/motion tag."""
    cols, pad, label = 4, 4, 26
    tiles = []
    for row, result in list(zip(rows, report["clips"]))[:count]:
        video = read_video(folder / row["file"])
        strip = np.concatenate([video[0], video[len(video) // 2], video[-1]], axis=1)
        tile = Image.new("RGB", (strip.shape[1], strip.shape[0] + label), "white")
        tile.paste(Image.fromarray(strip), (0, label))
        draw = ImageDraw.Draw(tile)
        main = row["objects"][0]
        draw.text((2, 1), f"{main['colour']} {main['shape']}", fill="green" if result["colour_ok"] else "red")
        draw.text((2, 13), f"{main['motion']} -> {result['detected_motion']}",
                  fill="green" if result["motion_ok"] else "red")
        tiles.append(tile)
    w, h = tiles[0].size
    rows_n = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows_n * (h + pad) + pad), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, (pad + (k % cols) * (w + pad), pad + (k // cols) * (h + pad)))
    sheet.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TINY), help="model folder (default: the embedded tiny model)")
    parser.add_argument("--out", default="outputs/tiny_quality")
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--random-videos", type=int, default=20, help="videos of the random-transformer floor")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--light-prob", type=float, default=0.0, help="share of held-out clips on light backgrounds")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = caption_rows(args.videos, light_prob=args.light_prob)
    pipe, kwargs = load_pipeline(args.model)
    results = {}
    for name in ("trained", "random"):
        if name == "random":
            torch.manual_seed(0)
            pipe.transformer = HunyuanVideoTransformer(pipe.transformer.config).eval().requires_grad_(False)
        rows_used = rows if name == "trained" else rows[: args.random_videos]
        seconds = sample_folder(pipe, rows_used, out / name, args.batch, **kwargs)
        report = evaluate_folder(out / name, out=out / name / "eval.json")
        results[name] = summary(rows_used, report, seconds)
        if name == "trained":
            contact_sheet(out / name, rows, report, out / "contact_sheet.png")
    results["vae ceiling"] = vae_ceiling(pipe, rows, out / "vae_ceiling")  # the trained model's clips, all of them
    (out / "report.json").write_text(json.dumps({"videos": args.videos, "sampling": kwargs, **results}, indent=1))
    print(f"| transformer | videos | colour | motion | speed (straight motions) | background | "
          f"s/video (batch {args.batch}) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        speed = "-" if r["speed"] is None else f"{r['speed']:.0%}"
        print(f"| {name} | {r['videos']} | {r['colour']:.0%} | {r['motion']:.0%} | {speed} | {r['background']:.0%} | "
              f"{r['seconds_per_video']:.2f} |")
    trained, ceiling = results["trained"]["breakdown"], results["vae ceiling"]["breakdown"]
    print("\n| main object | videos | colour (trained / VAE ceiling) | motion (trained / VAE ceiling) |")
    print("| --- | --- | --- | --- |")
    for by in ("motion", "size", "objects"):
        for name, t in trained[by].items():
            c = ceiling[by][name]
            print(f"| {by}: {name} | {t['videos']} | {t['colour']:.0%} / {c['colour']:.0%} | "
                  f"{t['motion']:.0%} / {c['motion']:.0%} |")


if __name__ == "__main__":
    main()
