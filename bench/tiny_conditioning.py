"""Which text pathway the embedded tiny model follows: the LLM's token states or CLIP's pooled vector.

For `--videos` one-object held-out captions A, each paired with a donor caption B whose colour and motion both
differ, samples a video per condition with one encoder fed B instead of A, and scores it against A and against B:
- "A": both encoders read A (the normal video);
- "LLM reads B": the token states are B's, CLIP's pooled vector A's;
- "CLIP reads B": the token states are A's, the pooled vector B's;
- "no pooled": the token states are A's, the pooled vector the empty caption's (what `pooled_dropout` trains).
A model that reads its tokens follows A in "CLIP reads B" and "no pooled"; one that reads only the pooled bag of
words follows B there. Two objects need the tokens: a bag of words cannot say which colour moves which way.
Writes OUT/report.json and prints a markdown table.

    python bench/tiny_conditioning.py --videos 40
    python bench/tiny_conditioning.py --model runs/some_model_folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tiny_quality import TINY, caption_rows, load_pipeline, seeded_latents
from torch import nn

from hunyuan_video.tiny.evaluate import score


class ReadsOther(nn.Module):
    """A text encoder that reads `mapping[prompt]` instead of each prompt it is given (others as they are)."""

    def __init__(self, encoder: nn.Module, mapping: dict[str, str]):
        super().__init__()
        self.encoder, self.mapping = encoder, mapping

    def forward(self, prompts: list[str]):
        return self.encoder([self.mapping.get(p, p) for p in prompts])


def donor_pairs(count: int) -> list[tuple[dict, dict]]:
    """(A, B): the first `count` one-object held-out captions, each with the next one whose colour and motion
    both differ."""
    rows = [r for r in caption_rows(4 * count) if len(r["objects"]) == 1][:count]
    if len(rows) < count:
        raise ValueError(f"only {len(rows)} one-object captions among the first {4 * count} held-out clips")

    def differs(a: dict, b: dict) -> bool:
        return a["objects"][0]["colour"] != b["objects"][0]["colour"] and \
            a["objects"][0]["motion"] != b["objects"][0]["motion"]

    return [(a, next(b for b in rows[i + 1:] + rows[:i] if differs(a, b))) for i, a in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(TINY), help="model folder (default: the embedded tiny model)")
    parser.add_argument("--out", default="outputs/tiny_conditioning")
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe, kwargs = load_pipeline(args.model)
    llm, clip = pipe.text_encoder, pipe.text_encoder_2
    pairs = donor_pairs(args.videos)
    to_b = {a["caption"]: b["caption"] for a, b in pairs}
    to_empty = {a["caption"]: "" for a, _ in pairs}
    conditions = {"A": (llm, clip), "LLM reads B": (ReadsOther(llm, to_b), clip),
                  "CLIP reads B": (llm, ReadsOther(clip, to_b)), "no pooled": (llm, ReadsOther(clip, to_empty))}
    report = {}
    for name, (text_encoder, text_encoder_2) in conditions.items():
        pipe.text_encoder, pipe.text_encoder_2 = text_encoder, text_encoder_2
        scores: dict[str, list[dict]] = {"A": [], "B": []}
        for first in range(0, len(pairs), args.batch):
            chunk = pairs[first : first + args.batch]
            latents = seeded_latents(pipe, first, len(chunk), **kwargs)
            videos = pipe([a["caption"] for a, _ in chunk], latents=latents, **kwargs).frames
            for (a, b), video in zip(chunk, videos):
                scores["A"].append(score(video, a["objects"]))
                scores["B"].append(score(video, b["objects"]))
        report[name] = {f"{k}_{what}": float(np.mean([s[f"{what}_ok"] for s in v]))
                        for k, v in scores.items() for what in ("colour", "motion")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"model": args.model, "videos": len(pairs), **report}, indent=1))
    print(f"| condition ({len(pairs)} videos) | colour of A | motion of A | colour of B | motion of B |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in report.items():
        print(f"| {name} | {r['A_colour']:.0%} | {r['A_motion']:.0%} | {r['B_colour']:.0%} | {r['B_motion']:.0%} |")


if __name__ == "__main__":
    main()
