"""Quality of the embedded tiny image-to-video model: held-out clips' first frames and captions in, videos scored.

For each of the first `--videos` clips of the synthetic world's test split (seed 0: combinations of colour, shape and
motion the training clips never show), the clip's first frame is the image and its caption the prompt; the model
folder's image-to-video model samples a video with its defaults (seed = the clip's index). Measured:
- the first frame's PSNR against the image, beside the VAE's own round trip of the image (encode, decode) against
  the image: the first frame can be no better than that round trip (target: within 1.5 dB of it);
- `hunyuan_video.tiny.evaluate` on the videos: the main object's motion right (target >= 75%) and its colour kept
  (target >= 90%).
Writes OUT/videos/*.mp4 with their metadata.jsonl and eval.json, OUT/report.json and OUT/contact_sheet.png (first,
middle and last frame of each video, tagged green or red for colour and motion).

    python bench/tiny_i2v.py --out outputs/tiny_i2v                 # 100 videos, the embedded model
    python bench/tiny_i2v.py --model some/ckpts --videos 20

Prints a markdown table row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from tiny_quality import TINY, caption_rows, contact_sheet, psnr, row_frames

from hunyuan_video.data.dataset import frames_to_tensor
from hunyuan_video.pipelines import HunyuanVideoImageToVideoPipeline
from hunyuan_video.tiny.evaluate import evaluate_folder
from hunyuan_video.video_io import to_uint8, write_video

TARGETS = {"first_frame_gap_db": 1.5, "motion": 0.75, "colour": 0.90}


@torch.no_grad()
def round_trip(pipe: HunyuanVideoImageToVideoPipeline, image: np.ndarray) -> np.ndarray:
    """The VAE's encode (posterior mode) and decode of one uint8 `(H, W, 3)` image, as uint8."""
    dtype = next(pipe.vae.parameters()).dtype
    latent = pipe.vae.encode(frames_to_tensor(image[None])[None].to(pipe.device, dtype)).mode()
    return to_uint8(pipe.vae.decode(latent)[0].float().permute(1, 2, 3, 0).cpu().numpy())[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TINY), help="model folder (default: the embedded tiny model)")
    parser.add_argument("--out", default="outputs/tiny_i2v")
    parser.add_argument("--videos", type=int, default=100, help="held-out clips (the first N of the test split)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--light-prob", type=float, default=0.0, help="share of held-out clips on light backgrounds")
    parser.add_argument("--cfg-scale", type=float, default=None, help="true CFG scale (default: the folder's)")
    args = parser.parse_args()
    if args.videos < 1:
        parser.error(f"--videos must be at least 1, got {args.videos}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out, videos = Path(args.out), Path(args.out) / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    pipe = HunyuanVideoImageToVideoPipeline.from_pretrained(args.model, dtype=torch.float32, device="cpu")
    pipe.progress = False
    d = pipe.defaults
    rows = caption_rows(args.videos, light_prob=args.light_prob)
    first_frame, vae = [], []
    start = time.perf_counter()
    for row in rows:
        image = row_frames(row)[0]
        video = pipe(image, row["caption"], height=d.height, width=d.width, seed=row["index"],
                     cfg_scale=args.cfg_scale).frames[0]
        first_frame.append(psnr(video[0], image))
        vae.append(psnr(round_trip(pipe, image), image))
        write_video(videos / row["file"], video, fps=d.fps)
    seconds = (time.perf_counter() - start) / len(rows)
    (videos / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evaluation = evaluate_folder(videos, out=videos / "eval.json")
    contact_sheet(videos, rows, evaluation, out / "contact_sheet.png")
    result = {
        "first_frame_psnr_db": float(np.mean(first_frame)), "vae_round_trip_psnr_db": float(np.mean(vae)),
        "colour": evaluation["colour_accuracy"], "motion": evaluation["motion_accuracy"],
        "speed": evaluation["speed_accuracy"], "seconds_per_video": seconds,
    }
    result["first_frame_gap_db"] = result["vae_round_trip_psnr_db"] - result["first_frame_psnr_db"]
    met = {"first_frame_gap_db": result["first_frame_gap_db"] <= TARGETS["first_frame_gap_db"],
           "motion": result["motion"] >= TARGETS["motion"], "colour": result["colour"] >= TARGETS["colour"]}
    cfg_scale = d.cfg_scale if args.cfg_scale is None else args.cfg_scale
    report = {"model": args.model, "videos": len(rows), "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)",
              "sampling": {"frames": d.frames, "height": d.height, "width": d.width, "steps": d.steps,
                           "guidance": d.guidance, "cfg_scale": cfg_scale, "shift": d.shift},
              **result, "targets": TARGETS, "met": met, "per_video": {"first_frame_psnr_db": first_frame,
                                                                      "vae_round_trip_psnr_db": vae},
              "motion_confusion": evaluation["motion_confusion"]}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print("| videos | first frame vs image (dB) | VAE round trip (dB) | gap (target <= 1.5) | motion (>= 75%) | "
          "colour (>= 90%) | s/video |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {len(rows)} | {result['first_frame_psnr_db']:.2f} | {result['vae_round_trip_psnr_db']:.2f} | "
          f"{result['first_frame_gap_db']:.2f} | {result['motion']:.0%} | {result['colour']:.0%} | {seconds:.1f} |")
    print(f"report: {out / 'report.json'}; contact sheet: {out / 'contact_sheet.png'}")


if __name__ == "__main__":
    main()
