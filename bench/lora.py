"""Full training against LoRA training of the same random transformer on the CPU, and LoRA on a float8 base
(`lora.fp8_base`): trainable parameters, bytes of weights, optimiser state, peak resident memory and seconds per step.

The random transformer is written once to a temporary file; each mode runs in a fresh process that loads it as
`hunyuan-video train` does with `init_from` (`train.dit.build_transformer`, `trained_part`: the whole model, or a
rank-r adapter on the frozen model with the default targets and blocks, its base optionally quantised to float8 as it
loads) and takes a few optimisation steps with the trainer's own pieces (`draw_noise`, `velocity_loss`, AdamW,
`apply_gradients`) on random latents and text states; no cache or dataset is read. Peak RSS is the process's
high-water mark (`getrusage`'s `ru_maxrss`, what the trainer logs as `rss_peak_mib`); "above weights" is that peak
less the resident set once the model is built, i.e. what training adds (gradients, optimiser state, activations);
the loading itself holds the float32 checkpoint, so on the CPU an fp8 base saves resident memory after loading
(the weights column), not at the peak of a short run.

    OMP_NUM_THREADS=1 python bench/lora.py                      # hidden 512, 2 double + 4 single blocks, rank 16
    OMP_NUM_THREADS=1 python bench/lora.py --hidden 256 --steps 3 --rank 8

Linux only (reads /proc). Prints a markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    """The current resident set of this process in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def transformer_fields(hidden: int, double: int, single: int) -> dict:
    """A random transformer of width `hidden` (64-wide heads) with `double` + `single` blocks."""
    heads = hidden // 64
    return {"hidden_size": hidden, "heads_num": heads, "mm_double_blocks_depth": double,
            "mm_single_blocks_depth": single, "rope_dim_list": [16, 24, 24], "text_states_dim": 512,
            "text_states_dim_2": 256, "refiner_depth": 1, "guidance_embed": False}


def measure(args: argparse.Namespace, mode: dict) -> dict:
    """Train `args.steps` steps in this process from `mode["init_from"]` (full when `mode["rank"]` is None, else a
    LoRA of that rank, on a float8 base with `mode["fp8"]`); the numbers."""
    import torch

    from hunyuan_video.train.dit import DiTTrainConfig, build_transformer, draw_noise, trained_part, velocity_loss
    from hunyuan_video.train.loop import adamw, apply_gradients

    torch.set_num_threads(1)
    config = DiTTrainConfig(
        data="-", vae="-", text_encoder="-", text_encoder_2="-", cache_dir="-", out_dir="-",
        stages=[{"name": "bench", "steps": args.steps, "batch_size": args.batch, "buckets": [[9, 64, 64]]}],
        init_from=mode["init_from"], gradient_checkpointing=args.checkpointing,
        lora=None if mode["rank"] is None else {"rank": mode["rank"], "fp8_base": mode["fp8"]})
    model = build_transformer(config).train()
    model.gradient_checkpointing = config.gradient_checkpointing
    trained = trained_part(model, config)
    params = list(trained.parameters())
    optimizer = adamw(params, config.lr, config.betas, config.weight_decay)
    generator = torch.Generator().manual_seed(0)
    frames, size, text = args.latent
    latent = (args.batch, model.config.in_channels, frames, size, size)
    batch = {"x0": torch.randn(latent, generator=generator),
             "text_states": torch.randn(args.batch, text, model.config.text_states_dim, generator=generator),
             "text_mask": torch.ones(args.batch, text, dtype=torch.long),
             "text_states_2": torch.randn(args.batch, model.config.text_states_dim_2, generator=generator)}
    built = rss_mib()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = velocity_loss(model, {**batch, **draw_noise(batch["x0"].shape, config, generator)}, config)
        apply_gradients(loss, optimizer, params, config.grad_clip)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    weights = sum(t.nbytes for t in [*model.parameters(), *model.buffers()])
    return {"trainable": sum(p.numel() for p in params), "total": sum(p.numel() for p in model.parameters()),
            "weights_mib": weights / 2**20,
            "optimizer_mib": state / 2**20, "peak_mib": peak, "above_weights_mib": peak - built,
            "seconds_per_step": sum(times[1:]) / max(len(times) - 1, 1), "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--double", type=int, default=2, help="double-stream blocks")
    parser.add_argument("--single", type=int, default=4, help="single-stream blocks")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (default targets and blocks)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--latent", type=int, nargs=3, default=[2, 32, 64], metavar=("FRAMES", "SIZE", "TEXT"),
                        help="latent frames, latent height = width, text tokens")
    parser.add_argument("--steps", type=int, default=4, help="optimisation steps (the first is not timed)")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both modes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args, json.loads(args.child))))
        return
    if args.steps < 2:
        sys.exit("--steps must be at least 2 (the first step is not timed)")

    import torch

    from hunyuan_video import HunyuanVideoTransformer
    from hunyuan_video.checkpoint import save_transformer
    from hunyuan_video.config import TransformerConfig, config_from_dict

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(Path(tmp) / "transformer.safetensors")
        torch.manual_seed(0)
        fields = transformer_fields(args.hidden, args.double, args.single)
        save_transformer(HunyuanVideoTransformer(config_from_dict(TransformerConfig, fields)), weights)
        for name, rank, fp8 in (("full", None, False), (f"LoRA rank {args.rank}", args.rank, False),
                                (f"LoRA rank {args.rank}, fp8 base", args.rank, True)):
            mode = json.dumps({"rank": rank, "fp8": fp8, "init_from": weights})
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", mode],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"the {name} run failed: {out.stderr.strip().splitlines()[-1]}")
            rows.append((name, json.loads(out.stdout.strip().splitlines()[-1])))
    frames, size, text = args.latent
    tokens = frames * (size // 2) ** 2 + text
    print(f"hidden {args.hidden}, {args.double} double + {args.single} single blocks, batch {args.batch}, "
          f"latent {frames}x{size}x{size} + {text} text tokens ({tokens} tokens), float32, AdamW, "
          f"gradient checkpointing {'on' if args.checkpointing else 'off'}, {args.steps} steps, 1 thread")
    print("| training | trainable parameters | % of model | weights MiB | optimizer state MiB | peak RSS MiB | "
          "peak above weights MiB | s / step |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f} | {r['weights_mib']:.0f} | "
              f"{r['optimizer_mib']:.1f} | {r['peak_mib']:.0f} | {r['above_weights_mib']:.0f} | "
              f"{r['seconds_per_step']:.2f} |")


if __name__ == "__main__":
    main()
