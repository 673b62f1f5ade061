"""Cost of a wider or deeper tiny transformer: one training step and one sampled video, before training it.

Each variant is the embedded tiny transformer's config (read from its checkpoint) with some fields changed. A
training step is what `hunyuan-video train` does at the tiny recipe's video bucket (batch 24 of 17x64x64 clips:
latents 16x5x8x8, 80 tokens; 64 text tokens): forward, MSE backward, AdamW. A video is 20 sampling steps of a
batch of 2 (true CFG). Random weights and inputs (the cost does not depend on them); the median of `--repeats`
timings after a warm-up.

    python bench/tiny_width.py --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F
from tiny_quality import TINY
from tiny_vae import median_seconds

from hunyuan_video.checkpoint import load_transformer
from hunyuan_video.config import TransformerConfig
from hunyuan_video.models.transformer import HunyuanVideoTransformer

TINY_TRANSFORMER = TINY / "hunyuan-video-t2v-720p" / "transformers" / "mp_rank_00_model_states.safetensors"
VARIANTS = {
    "tiny (shipped)": {},
    "hidden 192, 3 heads": {"hidden_size": 192, "heads_num": 3},
    "hidden 256, 4 heads": {"hidden_size": 256, "heads_num": 4},
    "4 double + 6 single blocks": {"mm_double_blocks_depth": 4, "mm_single_blocks_depth": 6},
}


def measure(config: TransformerConfig, batch: int, repeats: int) -> dict:
    """Parameters, seconds per training step and seconds per sampled video of one transformer config."""
    torch.manual_seed(0)
    model = HunyuanVideoTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def inputs(n: int) -> tuple:
        return (torch.randn(n, 16, 5, 8, 8), torch.rand(n) * 1000, torch.randn(n, 64, config.text_states_dim),
                torch.ones(n, 64, dtype=torch.bool), torch.randn(n, config.text_states_dim_2))

    train_inputs, target = inputs(batch), torch.randn(batch, 16, 5, 8, 8)

    def train_step() -> None:
        loss = F.mse_loss(model(*train_inputs), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    sample_inputs = inputs(2)

    @torch.no_grad()
    def video() -> None:
        for _ in range(20):
            model(*sample_inputs)

    return {"params": sum(p.numel() for p in model.parameters()),
            "step": median_seconds(train_step, repeats, warmup=1), "video": median_seconds(video, repeats, warmup=1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiny = load_transformer(TINY_TRANSFORMER).config
    results = {name: measure(dataclasses.replace(tiny, **overrides), args.batch, args.repeats)
               for name, overrides in VARIANTS.items()}
    base = results["tiny (shipped)"]
    print(f"| transformer | parameters | MB (fp32) | s/training step (batch {args.batch}) | ratio | s/video "
          "(20 steps, CFG) | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['params'] / 1e6:.2f}M | {r['params'] * 4 / 2**20:.1f} | {r['step']:.3f} | "
              f"{r['step'] / base['step']:.2f}x | {r['video']:.3f} | {r['video'] / base['video']:.2f}x |")


if __name__ == "__main__":
    main()
