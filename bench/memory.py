"""Peak activation memory of one transformer forward (one denoising step, batch 1) against the number of tokens,
with and without `--chunk-ffn`, measured on the CPU; and the peaks of the real model at 720x1280x129, computed.

Each point runs in a fresh process: the weights and inputs are built, the resident-set high-water mark is reset
(`/proc/self/clear_refs`), one forward runs, and the new high-water mark less the resident set before it is the
activation peak. Peaks grow linearly in the tokens S (SDPA never holds the S x S scores on the CPU or in the GPU's
fused kernels), so a fit `peak = bytes_per_token * S` of the largest points, scaled by hidden size and element
size, extrapolates to the real config:

    activation peak ~= k * S * hidden * element_bytes     (k fitted here, per chunking)
    weights          =  transformer parameters * element_bytes (fp8: block linears 1 byte each)

    python bench/memory.py                                  # bench-mid, a few grids, chunk 64
    python bench/memory.py --grids 1x16x16 2x32x32 4x32x32 --chunk 512

`--vae` measures the VAE decode instead (the real VAE config, random weights, float32, untiled): the peak of the
tensor bytes alive at once (`memory_budget.TensorBytesPeak`, exact and independent of the allocator) against the
latent tokens t x h x w, whole and over chunks of `--vae-chunk` frames, beside the bound `vae_chunks.chunk_for`
plans with (`vae_chunks.chunk_bytes`: 2 x largest activation + 4 x its frame x (chunk + 2)); then that bound for
720x1280x129, untiled and per official tile (256 px, 64 frames), in bfloat16:

    python bench/memory.py --vae --latents 2x8x8 3x8x16 3x16x16 --vae-chunk 1 4

Linux only (reads /proc). Prints markdown tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

REAL = dict(preset="HYVideo-T/2-cfgdistill", height=720, width=1280, frames=129, text=256)


def rss_bytes() -> int:
    """The current resident set of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def high_water_bytes() -> int:
    """The resident-set high-water mark (VmHWM) of this process."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def measure(preset: str, grid: tuple[int, int, int], text: int, chunk: int | None) -> dict:
    """One forward's activation peak in bytes (float32, CPU), in this process."""
    import torch

    from hunyuan_video.config import TRANSFORMER_PRESETS
    from hunyuan_video.models import HunyuanVideoTransformer

    torch.set_num_threads(1)
    config = TRANSFORMER_PRESETS[preset]
    with torch.device("meta"):
        model = HunyuanVideoTransformer(config)
    model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.set_ffn_chunk(chunk)
    x = torch.randn(1, config.in_channels, *grid)
    inputs = dict(t=torch.tensor([500.0]), text_states=torch.randn(1, text, config.text_states_dim),
                  text_mask=None, text_states_2=torch.randn(1, config.text_states_dim_2),
                  guidance=torch.tensor([6000.0]) if config.guidance_embed else None)
    with torch.no_grad():
        model(x, **inputs)  # warm-up: lazily built tables and allocator pools
        before = rss_bytes()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        model(x, **inputs)
    pt, ph, pw = config.patch_size
    tokens = grid[0] // pt * (grid[1] // ph) * (grid[2] // pw) + text
    return dict(tokens=tokens, peak=high_water_bytes() - before)


def measure_vae(latent: tuple[int, int, int], chunk: int | None) -> dict:
    """One untiled decode's tensor-bytes peak of the real VAE config (random weights, float32, CPU)."""
    import torch

    from hunyuan_video.config import VAE_PRESETS
    from hunyuan_video.memory_budget import TensorBytesPeak
    from hunyuan_video.models.vae import CausalVAE
    from hunyuan_video.models.vae_chunks import activation_sizes

    torch.set_num_threads(1)
    vae = CausalVAE(VAE_PRESETS["884-16c-hy"]).eval()
    vae.set_decode_chunk(chunk)
    z = torch.randn(1, 16, *latent)
    with torch.no_grad(), TensorBytesPeak() as meter:
        vae.decode(z, tiling=False)
    whole, frame = activation_sizes(vae.decoder, tuple(z.shape), 4)
    return dict(tokens=latent[0] * latent[1] * latent[2], peak=meter.peak, whole=whole, frame=frame)


def vae_report(latents: list[str], chunks: list[int]) -> None:
    """The `--vae` tables (see the module docstring)."""
    import torch

    from hunyuan_video.config import VAE_PRESETS
    from hunyuan_video.models.vae import CausalVAE
    from hunyuan_video.models.vae_chunks import activation_sizes, chunk_bytes

    mib, gib = 2**20, 2**30
    print("| latent t x h x w | tokens | chunk (frames) | decode peak MiB (fp32, measured) | bound MiB | "
          "largest activation MiB |")
    print("|---|---|---|---|---|---|")
    for latent in latents:
        grid = tuple(int(v) for v in latent.split("x"))
        for chunk in (None, *chunks):
            m = measure_vae(grid, chunk)
            bound = chunk_bytes(m["whole"], m["frame"], chunk or m["whole"] // m["frame"])
            print(f"| {latent} | {m['tokens']} | {chunk or '-'} | {m['peak'] / mib:.0f} | {bound / mib:.0f} | "
                  f"{m['whole'] / mib:.0f} |")
    with torch.device("meta"):
        decoder = CausalVAE(VAE_PRESETS["884-16c-hy"]).decoder
    t, h, w = 1 + (REAL["frames"] - 1) // 4, REAL["height"] // 8, REAL["width"] // 8
    print(f"\nComputed for the real VAE at {REAL['height']}x{REAL['width']}x{REAL['frames']} (latents {t}x{h}x{w}), "
          "bfloat16: bound = 2 x largest activation + 4 x its frame x (chunk + 2)")
    print("| decode | chunk (frames) | largest activation GiB | bound GiB |")
    print("|---|---|---|---|")
    tile = (1, 16, 17, 32, 32)  # the latents of one official tile: 256 px, 64 (+1) frames
    for name, shape in (("untiled", (1, 16, t, h, w)), ("one official tile", tile)):
        whole, frame = activation_sizes(decoder, shape, 2)
        for chunk in (None, *chunks):
            bound = chunk_bytes(whole, frame, chunk or whole // frame)
            print(f"| {name} | {chunk or '-'} | {whole / gib:.2f} | {bound / gib:.2f} |")


def transformer_parameters(preset: str) -> tuple[int, int, int]:
    """(all parameters, the blocks' linear weights, what offload keeps on the device: the parts outside the blocks
    and the two biggest blocks) of a preset, counted on the meta device."""
    import torch

    from hunyuan_video.config import TRANSFORMER_PRESETS
    from hunyuan_video.models import HunyuanVideoTransformer
    from hunyuan_video.quant import fp8_linear_names

    with torch.device("meta"):
        model = HunyuanVideoTransformer(TRANSFORMER_PRESETS[preset])
    linears = sum(model.get_submodule(n).weight.numel() for n in fp8_linear_names(model))
    blocks = [*model.double_blocks, *model.single_blocks]
    sizes = sorted(sum(p.numel() for p in b.parameters()) for b in blocks)
    total = sum(p.numel() for p in model.parameters())
    return total, linears, total - sum(sizes) + sum(sizes[-2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="bench-mid")
    parser.add_argument("--grids", nargs="+", default=["1x16x16", "2x16x32", "2x32x32"], metavar="TxHxW",
                        help="latent grids (frames x height x width)")
    parser.add_argument("--text", type=int, default=128, help="text tokens")
    parser.add_argument("--chunk", type=int, default=64, help="--chunk-ffn tokens for the chunked runs")
    parser.add_argument("--k", type=float, nargs=2, metavar=("UNCHUNKED", "CHUNKED"),
                        help="skip the measurements: extrapolate from these fitted k values")
    parser.add_argument("--vae", action="store_true", help="measure the VAE decode instead of the transformer")
    parser.add_argument("--latents", nargs="+", default=["2x8x8", "3x8x16", "3x16x16"], metavar="TxHxW",
                        help="--vae: latent grids")
    parser.add_argument("--vae-chunk", type=int, nargs="+", default=[1, 4], help="--vae: frames per chunk")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vae:
        vae_report(args.latents, args.vae_chunk)
        return
    if args.child:
        grid, chunk = json.loads(args.child)
        print(json.dumps(measure(args.preset, tuple(grid), args.text, chunk)))
        return

    from hunyuan_video.config import TRANSFORMER_PRESETS

    hidden = TRANSFORMER_PRESETS[args.preset].hidden_size
    rows, fits = [], dict(zip((None, args.chunk), args.k or ()))
    for chunk in () if args.k else (None, args.chunk):
        points = []
        for grid in args.grids:
            spec = json.dumps([[int(v) for v in grid.split("x")], chunk])
            out = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--text", str(args.text),
                                  "--child", spec], capture_output=True, text=True, check=True,
                                 env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})  # frees go back to the OS
            point = json.loads(out.stdout.strip().splitlines()[-1])
            points.append(point)
            rows.append(f"| {args.preset} | {grid} | {point['tokens']} | {chunk or '-'} | "
                        f"{point['peak'] / 2**20:.0f} | {point['peak'] / point['tokens'] / hidden / 4:.1f} |")
        top = max(points, key=lambda p: p["tokens"])
        fits[chunk] = top["peak"] / top["tokens"] / hidden / 4  # k: float32 elements per token per hidden unit
    if rows:
        print("| preset | latent grid | tokens S | chunk | activation peak MiB (fp32) | k = peak / (S hidden 4 B) |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))

    real = TRANSFORMER_PRESETS[REAL["preset"]]
    s = (1 + (REAL["frames"] - 1) // 4) * (REAL["height"] // 16) * (REAL["width"] // 16) + REAL["text"]
    total, linears, on_device = transformer_parameters(REAL["preset"])
    gib = 2**30
    weights = {"bf16": 2 * total, "fp8": 2 * (total - linears) + linears}
    offloaded = {"bf16": 2 * on_device, "fp8": on_device + on_device * (total - linears) // total}
    print(f"\nComputed for {REAL['preset']} at {REAL['height']}x{REAL['width']}x{REAL['frames']} (S = {s} tokens, "
          f"hidden {real.hidden_size}, bf16 activations): {total / 1e9:.2f} B parameters, {linears / 1e9:.2f} B in "
          "block linears")
    print("| weights | offload | chunk | weights on GPU GiB | activations GiB | step peak GiB (computed) |")
    print("|---|---|---|---|---|---|")
    for kind in ("bf16", "fp8"):
        for offload in (False, True):
            for chunk in (None, args.chunk):
                w = offloaded[kind] if offload else weights[kind]
                act = fits[chunk] * s * real.hidden_size * 2
                print(f"| {kind} | {'yes' if offload else 'no'} | {chunk or '-'} | {w / gib:.1f} | {act / gib:.1f} | "
                      f"{(w + act) / gib:.1f} |")
    print(f"\nk fitted on the largest grid: unchunked {fits[None]:.1f}, chunk {args.chunk}: {fits[args.chunk]:.1f}; "
          "(S = latent frames x latent height / 2 x latent width / 2 + text tokens).")


if __name__ == "__main__":
    main()
