"""Full training against LoRA training of the same random transformer on the CPU: trainable parameters, optimiser
state, peak resident memory and seconds per step.

Each mode runs in a fresh process that builds the model as `hunyuan-video train` does (`train.dit.build_transformer`,
`trained_part`: the whole model, or a rank-r adapter on the frozen model with the default targets and blocks) and
takes a few optimisation steps with the trainer's own pieces (`draw_noise`, `velocity_loss`, AdamW,
`apply_gradients`) on random latents and text states; no cache or dataset is read. Peak RSS is the process's
high-water mark (`getrusage`'s `ru_maxrss`, what the trainer logs as `rss_peak_mib`); "above weights" is that peak
less the resident set once the model is built, i.e. what training adds (gradients, optimiser state, activations).

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
import time


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


def measure(args: argparse.Namespace, rank: int | None) -> dict:
    """Train `args.steps` steps in this process (full when `rank` is None, else a LoRA of that rank); the numbers."""
    import torch

    from hunyuan_video.train.dit import DiTTrainConfig, build_transformer, draw_noise, trained_part, velocity_loss
    from hunyuan_video.train.loop import adamw, apply_gradients

    torch.set_num_threads(1)
    config = DiTTrainConfig(
        data="-", vae="-", text_encoder="-", text_encoder_2="-", cache_dir="-", out_dir="-",
        stages=[{"name": "bench", "steps": args.steps, "batch_size": args.batch, "buckets": [[9, 64, 64]]}],
        transformer=transformer_fields(args.hidden, args.double, args.single),
        lora=None if rank is None else {"rank": rank}, gradient_checkpointing=args.checkpointing)
    model = build_transformer(config).train()
    model.gradient_checkpointing = config.gradient_checkpointing
    trained = trained_part(model, config)
    params = list(trained.parameters())
    optimizer = adamw(params, config.lr, config.betas, config.weight_decay)
    generator = torch.Generator().manual_seed(0)
    frames, size, text = args.latent
    latent = (args.batch, model.config.in_channels, frames, size, size)
    batch = {"x0": torch.randn(latent, generator=generator),
             "text_states": torch.randn(args.batch, text, config.transformer["text_states_dim"], generator=generator),
             "text_mask": torch.ones(args.batch, text, dtype=torch.long),
             "text_states_2": torch.randn(args.batch, config.transformer["text_states_dim_2"], generator=generator)}
    built = rss_mib()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = velocity_loss(model, {**batch, **draw_noise(batch["x0"].shape, config, generator)}, config)
        apply_gradients(loss, optimizer, params, config.grad_clip)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    return {"trainable": sum(p.numel() for p in params), "total": sum(p.numel() for p in model.parameters()),
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

    rows = []
    for rank in (None, args.rank):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", json.dumps(rank)],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"the {'full' if rank is None else 'LoRA'} run failed: {out.stderr.strip().splitlines()[-1]}")
        rows.append((rank, json.loads(out.stdout.strip().splitlines()[-1])))
    frames, size, text = args.latent
    tokens = frames * (size // 2) ** 2 + text
    print(f"hidden {args.hidden}, {args.double} double + {args.single} single blocks, batch {args.batch}, "
          f"latent {frames}x{size}x{size} + {text} text tokens ({tokens} tokens), float32, AdamW, "
          f"gradient checkpointing {'on' if args.checkpointing else 'off'}, {args.steps} steps, 1 thread")
    print("| training | trainable parameters | % of model | optimizer state MiB | peak RSS MiB | "
          "peak above weights MiB | s / step |")
    print("|---|---|---|---|---|---|---|")
    for rank, r in rows:
        print(f"| {'full' if rank is None else f'LoRA rank {rank}'} | {r['trainable']:,} | "
              f"{100 * r['trainable'] / r['total']:.2f} | {r['optimizer_mib']:.1f} | {r['peak_mib']:.0f} | "
              f"{r['above_weights_mib']:.0f} | {r['seconds_per_step']:.2f} |")


if __name__ == "__main__":
    main()
