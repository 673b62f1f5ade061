"""Sampling settings of the embedded tiny model, chosen on training-split captions (not the held-out ones).

For each CFG scale x flow shift x step count, samples `--videos` clips of the world's train split (from index
`--first`, past clips 0-22999 that its training drew from, so the captions' combinations are familiar but the clips
are new) and scores them with `hunyuan_video.tiny.evaluate`. Writes OUT/cfg{c}_shift{s}[_steps{n}]/*.mp4 with
eval.json, and OUT/sweep.json; prints a markdown table. `generate.json` takes the best row; `bench/tiny_quality.py`
then measures it on held-out captions.

    python bench/tiny_sweep.py --cfg 2 3 5 7 --shift 3
    python bench/tiny_sweep.py --cfg 3 --steps 20 40
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from tiny_quality import TINY, caption_rows, load_pipeline, sample_folder

from hunyuan_video.tiny.evaluate import evaluate_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TINY), help="model folder (default: the embedded tiny model)")
    parser.add_argument("--out", default="outputs/tiny_sweep")
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--first", type=int, default=30000,
                        help="first train-split clip index (past the training clips)")
    parser.add_argument("--cfg", type=float, nargs="+", default=[2.0, 3.0, 5.0, 7.0])
    parser.add_argument("--shift", type=float, nargs="+", default=[3.0])
    parser.add_argument("--steps", type=int, nargs="+", default=None,
                        help="Euler steps (default: generate.json's)")
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    out = Path(args.out)
    rows = caption_rows(args.videos, "train", args.first)
    pipe, defaults = load_pipeline(args.model)
    results = []
    steps_grid = args.steps or [defaults["num_inference_steps"]]
    for cfg, shift, steps in itertools.product(args.cfg, args.shift, steps_grid):
        folder = out / (f"cfg{cfg:g}_shift{shift:g}" + (f"_steps{steps}" if args.steps else ""))
        sample_folder(pipe, rows, folder, args.batch,
                      **{**defaults, "cfg_scale": cfg, "flow_shift": shift, "num_inference_steps": steps})
        report = evaluate_folder(folder, out=folder / "eval.json")
        results.append({"cfg_scale": cfg, "flow_shift": shift, "steps": steps, "colour": report["colour_accuracy"],
                         "motion": report["motion_accuracy"]})
    (out / "sweep.json").write_text(json.dumps({"videos": args.videos, "first": args.first, "results": results},
                                               indent=1))
    print(f"| cfg_scale | flow_shift | steps | colour ({args.videos} train-split captions) | motion |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['cfg_scale']:g} | {r['flow_shift']:g} | {r['steps']} | {r['colour']:.0%} | {r['motion']:.0%} |")


if __name__ == "__main__":
    main()
