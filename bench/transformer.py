"""One transformer forward, ours against diffusers' HunyuanVideoTransformer3DModel: same weights, same inputs.

Both models share one set of random weights (diffusers' tensors are views of ours), runs alternate between the two,
and the median of `--runs` timed forwards is reported, with the matmul throughput of ours (FLOPs: every
token-wise linear layer plus attention's two matmuls) and, on a GPU, its share of the card's bf16 peak.

    python bench/transformer.py                                   # CPU, bench-mid preset, small grid
    python bench/transformer.py --device cuda --dtype bfloat16 --preset HYVideo-T/2-cfgdistill \\
        --grid 33 68 120 --runs 5 --compile                       # 129 frames at 544x960, the real config

`--attention`, `--fp8`, `--chunk-ffn` and `--compile` describe a variant of ours, timed in the same process against
our eager SDPA run (the ratio says how much faster the variant is, the relative difference how far its output is):

    python bench/transformer.py --attention flex --runs 2        # CPU: flex against SDPA
    python bench/transformer.py --fp8 --chunk-ffn 256 --runs 2
    python bench/transformer.py --device cuda --dtype bfloat16 --preset HYVideo-T/2-cfgdistill \
        --grid 33 68 120 --runs 3 --attention flash3 --compile  # 544x960x129 on a Hopper GPU

Prints markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
from diffusers import HunyuanVideoTransformer3DModel

from hunyuan_video.checkpoint import (
    build_on_meta,
    load_state_dict_into,
    transformer_config_to_diffusers,
    transformer_to_diffusers,
)
from hunyuan_video.config import TRANSFORMER_PRESETS, TransformerConfig
from hunyuan_video.models import HunyuanVideoTransformer
from hunyuan_video.models.regional_compile import compile_blocks
from hunyuan_video.quant import add_fp8_scales, fp8_linear_names, quantize_state_dict, to_fp8_linears


def forward_flops(config: TransformerConfig, video_tokens: int, text_tokens: int) -> int:
    """Matmul FLOPs of one forward for batch 1: 2 * in * out per token for every token-wise linear layer, and
    4 * S^2 * hidden for attention (QK^T and AV) over the S tokens each block sees. Per-sample modulation and
    embedding MLPs are left out (a few GFLOPs)."""
    h, m = config.hidden_size, int(config.hidden_size * config.mlp_width_ratio)
    s = video_tokens + text_tokens
    linear = 2 * s * (4 * h * h + 2 * h * m) * config.mm_double_blocks_depth  # qkv, proj, mlp per stream
    linear += 2 * s * (h * (3 * h + m) + (h + m) * h) * config.mm_single_blocks_depth  # linear1, linear2
    patch = math.prod(config.patch_size)
    linear += 2 * video_tokens * h * patch * (config.in_channels + config.out_channels)  # img_in, final_layer
    linear += 2 * text_tokens * (config.text_states_dim * h + config.refiner_depth * 12 * h * h)  # refiner
    blocks = config.mm_double_blocks_depth + config.mm_single_blocks_depth
    attn = 4 * s * s * h * blocks + 4 * text_tokens * text_tokens * h * config.refiner_depth
    return linear + attn


def build_pair(config: TransformerConfig, device: str, dtype: torch.dtype):
    """Our model with random weights, and diffusers' model holding the same tensors."""
    with torch.device("meta"):
        ours = HunyuanVideoTransformer(config).to(dtype)
    ours.to_empty(device=device)
    gen = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            p.normal_(0, 0.02, generator=gen)
            if "norm" in name:
                p.add_(1)
    with torch.device("meta"):
        theirs = HunyuanVideoTransformer3DModel(**transformer_config_to_diffusers(config))
    theirs.load_state_dict(transformer_to_diffusers(ours.state_dict(), config), strict=True, assign=True)
    return ours.eval(), theirs.eval()


def build_variant(ours: HunyuanVideoTransformer, args: argparse.Namespace) -> HunyuanVideoTransformer | None:
    """A copy of `ours` with the variant's options (fp8 weights, attention kernel, MLP chunks, regional compile);
    None when no option asks for one."""
    if args.attention == "sdpa" and not (args.fp8 or args.compile or args.chunk_ffn):
        return None
    if args.fp8:
        state_dict, names = dict(ours.state_dict()), fp8_linear_names(ours)
        add_fp8_scales(state_dict, quantize_state_dict(state_dict, names), names, "the benchmark")
        variant = to_fp8_linears(build_on_meta(lambda: HunyuanVideoTransformer(ours.config)))
        variant = load_state_dict_into(variant, state_dict, device=args.device).eval()
    else:
        variant = copy.deepcopy(ours)
    variant.set_attention_backend(args.attention)
    variant.set_ffn_chunk(args.chunk_ffn)
    if args.compile:
        compile_blocks(variant)
    return variant


def make_inputs(config: TransformerConfig, grid, text_len: int, real_text: int, device: str, dtype: torch.dtype):
    gen = torch.Generator(device).manual_seed(1)
    mask = (torch.arange(text_len) < real_text).long()[None]
    return dict(
        x=torch.randn(1, config.in_channels, *grid, generator=gen, device=device, dtype=dtype),
        t=torch.tensor([500.0], device=device),
        text_states=torch.randn(1, text_len, config.text_states_dim, generator=gen, device=device, dtype=dtype),
        text_mask=mask,  # on the CPU, as the tokenizer returns it
        text_states_2=torch.randn(1, config.text_states_dim_2, generator=gen, device=device, dtype=dtype),
        guidance=torch.tensor([6000.0], device=device, dtype=dtype) if config.guidance_embed else None,
    )


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="bench-mid", choices=sorted(TRANSFORMER_PRESETS))
    parser.add_argument("--grid", type=int, nargs=3, default=(2, 32, 32), metavar=("T", "H", "W"),
                        help="latent frames, height, width")
    parser.add_argument("--text-len", type=int, default=256, help="padded text length (the official pipeline: 256)")
    parser.add_argument("--real-text", type=int, default=128, help="real (unpadded) text tokens")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--compile", action="store_true", help="variant: regional torch.compile of the blocks")
    parser.add_argument("--attention", default="sdpa", help="variant: the attention kernel (auto, flash, flash3, ...)")
    parser.add_argument("--fp8", action="store_true", help="variant: block linears in float8 (quantised)")
    parser.add_argument("--chunk-ffn", type=int, default=None, help="variant: MLP chunk in tokens")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak (H100 SXM: 989)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    config, dtype = TRANSFORMER_PRESETS[args.preset], getattr(torch, args.dtype)
    ours, theirs = build_pair(config, args.device, dtype)
    ours.set_attention_backend("sdpa")
    variant = build_variant(ours, args)
    inputs = make_inputs(config, args.grid, args.text_len, args.real_text, args.device, dtype)
    ref_inputs = {**inputs, "text_mask": inputs["text_mask"].to(args.device)}
    run_ours = lambda: ours(**inputs)
    run_theirs = lambda: theirs(ref_inputs["x"], ref_inputs["t"], ref_inputs["text_states"], ref_inputs["text_mask"],
                                ref_inputs["text_states_2"], ref_inputs["guidance"], return_dict=False)[0]

    with torch.no_grad():
        a, b = run_ours().float(), run_theirs().float()  # also the warm-up
        err = ((a - b).norm() / b.norm()).item()
        times = {"ours": [], "diffusers": [], "variant": []}
        if variant is not None:
            start = time.perf_counter()
            v = variant(**inputs).float()  # also the compilation
            compile_s = time.perf_counter() - start
            variant_err = ((v - a).norm() / a.norm()).item()
        for _ in range(args.runs):
            times["ours"].append(timed(run_ours, args.device))
            times["diffusers"].append(timed(run_theirs, args.device))
            if variant is not None:
                times["variant"].append(timed(lambda: variant(**inputs), args.device))
    ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["diffusers"])

    pt, ph, pw = config.patch_size
    video_tokens = (args.grid[0] // pt) * (args.grid[1] // ph) * (args.grid[2] // pw)
    flops = forward_flops(config, video_tokens, args.real_text)  # ours computes no padding
    achieved = flops / ours_s / 1e12
    peak = f"{100 * achieved / args.peak_tflops:.0f}% of {args.peak_tflops:g}" if args.device == "cuda" else "n/a"
    print(f"times ours {times['ours']} diffusers {times['diffusers']}; relative difference {err:.1e}")
    print(f"threads: {torch.get_num_threads()}")
    print("| device | preset | dtype | latent grid | video tokens | text (real/padded) | ours s | diffusers s "
          "| speed-up | ours TFLOP/s | % of bf16 peak |")
    print(f"| {args.device} | {args.preset} | {args.dtype} | {'x'.join(map(str, args.grid))} | {video_tokens} | "
          f"{args.real_text}/{args.text_len} | {ours_s:.3f} | {theirs_s:.3f} | {theirs_s / ours_s:.2f}x | "
          f"{achieved:.3g} | {peak} |")
    if variant is not None:
        variant_s = statistics.median(times["variant"])
        name = " + ".join([f"attention {args.attention}"] + ["fp8"] * args.fp8 + [f"chunk-ffn {args.chunk_ffn}"]
                          * bool(args.chunk_ffn) + ["compile"] * args.compile)
        print(f"\nvariant times {times['variant']}; first call (warm-up; compiles with --compile) {compile_s:.1f} s")
        print("| device | preset | dtype | latent grid | variant | eager SDPA s | variant s | speed-up "
              "| relative difference |")
        print(f"| {args.device} | {args.preset} | {args.dtype} | {'x'.join(map(str, args.grid))} | {name} | "
              f"{ours_s:.3f} | {variant_s:.3f} | {ours_s / variant_s:.2f}x | {variant_err:.1e} |")


if __name__ == "__main__":
    main()
