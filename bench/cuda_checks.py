"""The CUDA-only paths of issue 31, checked on a GPU in one short run (about a minute on an H100).

Offload with prefetch (side stream, pinned memory) against no offload, and the "model" and "auto" offload levels
(the transformer brought whole); each attention kernel that is installed against SDPA; fp8 weights (memory and
error) and, on GPUs of capability 8.9+, the fp8 matmul against the de-quantised path (error and time); the automatic
MLP chunk; the VAE decode over chunks of frames against the whole decode (difference and peak, fixed and automatic
chunk); regional compile (no recompiles over 3 steps, close to eager). Exits non-zero when a check fails.

    python bench/cuda_checks.py                     # bench-mid, bfloat16, latent grid 4x32x32
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch._dynamo.utils import counters

from hunyuan_video.config import TRANSFORMER_PRESETS, VAE_PRESETS
from hunyuan_video.models import HunyuanVideoTransformer
from hunyuan_video.models.attention import ATTENTION_BACKENDS, AttentionBackendError, check_attention_backend
from hunyuan_video.models.regional_compile import compile_blocks
from hunyuan_video.models.vae import CausalVAE
from hunyuan_video.pipelines import ModelOffload
from hunyuan_video.quant import (
    add_fp8_scales,
    enable_fp8_matmul,
    fp8_linear_names,
    has_fp8_tensor_cores,
    quantize_state_dict,
    to_fp8_linears,
)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def timed(fn, repeats: int = 3) -> tuple[torch.Tensor, float]:
    """`fn()`'s result and its best time in seconds over `repeats` runs (after one warm-up)."""
    out, best = fn(), float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return out, best


def peak_of(fn) -> tuple[torch.Tensor, float]:
    """`fn()`'s result and the CUDA allocation peak it added, in GiB."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    return out, (torch.cuda.max_memory_allocated() - base) / 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="bench-mid")
    parser.add_argument("--grid", type=int, nargs=3, default=(4, 32, 32))
    parser.add_argument("--vae-latent", type=int, nargs=3, default=(5, 32, 32),
                        help="latent grid of the VAE decode checks (5x32x32: 17 frames of 256x256)")
    args = parser.parse_args()
    config, dtype, device = TRANSFORMER_PRESETS[args.preset], torch.bfloat16, torch.device("cuda")
    torch.manual_seed(0)
    model = HunyuanVideoTransformer(config).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    mask = (torch.arange(256) < 100).long()[None]
    inputs = dict(x=torch.randn(1, config.in_channels, *args.grid, device=device, dtype=dtype),
                  t=torch.tensor([500.0], device=device),
                  text_states=torch.randn(1, 256, config.text_states_dim, device=device, dtype=dtype), text_mask=mask,
                  text_states_2=torch.randn(1, config.text_states_dim_2, device=device, dtype=dtype),
                  guidance=torch.tensor([6000.0], device=device, dtype=dtype) if config.guidance_embed else None)
    failures = []

    def check(name: str, ok: bool, detail: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            failures.append(name)

    model.set_attention_backend("sdpa")
    with torch.no_grad():
        offload = ModelOffload(device)  # the weights stay on the CPU
        torch.cuda.reset_peak_memory_stats()
        with offload.on_device(model, stream_blocks=True):
            streamed = model(**inputs)
        peak = torch.cuda.max_memory_allocated() / 2**30
        for level in ("model", "auto"):  # the bench-mid transformer fits whole: both bring it at once
            whole_offload = ModelOffload(device, level)
            with whole_offload.on_device(model, stream_blocks=True):
                brought = model(**inputs)
            check(f"offload level {level}", torch.equal(brought, streamed) and not whole_offload.streams(model),
                  "equal to block streaming, transformer brought whole")
        model.to(device)
        eager = model(**inputs)
        check("offload with prefetch", torch.equal(streamed, eager), f"equal to no offload; peak {peak:.2f} GiB")

        model.set_ffn_chunk("auto")
        err = relative(model(**inputs), eager)
        chunk = model.single_blocks[0].ffn_chunk
        check("automatic MLP chunk", err < 1e-2, f"chunk {chunk} tokens; relative difference {err:.1e}")
        model.set_ffn_chunk(None)

        for name in ATTENTION_BACKENDS:
            try:
                check_attention_backend(name, device, dtype)
            except AttentionBackendError as error:
                print(f"skip {name}: {error}")
                continue
            model.set_attention_backend(name)
            err = relative(model(**inputs), eager)
            check(f"attention {name}", err < (0.05 if name == "sage" else 1e-2), f"relative difference {err:.1e}")
        model.set_attention_backend("sdpa")

        state_dict, names = dict(model.state_dict()), fp8_linear_names(model)
        add_fp8_scales(state_dict, quantize_state_dict(state_dict, names), names, "the check")
        fp8 = to_fp8_linears(HunyuanVideoTransformer(config).to(dtype)).to(device).eval()
        fp8.load_state_dict(state_dict)
        weights = lambda m: sum(t.nbytes for t in m.state_dict().values()) / 2**30
        err = relative(fp8(**inputs), eager)
        check("fp8 weights", err < 0.1, f"relative difference {err:.1e}; weights {weights(fp8):.2f} GiB against "
                                        f"{weights(model):.2f} GiB")
        if has_fp8_tensor_cores(device):
            dequantised, dequantised_s = timed(lambda: fp8(**inputs))
            switched = enable_fp8_matmul(fp8, device)
            matmul, matmul_s = timed(lambda: fp8(**inputs))
            err, err_eager = relative(matmul, dequantised), relative(matmul, eager)
            check("fp8 matmul", err < 0.1, f"{switched} linears; relative difference {err:.1e} to the de-quantised "
                                           f"path ({err_eager:.1e} to bf16); forward {matmul_s * 1e3:.1f} ms against "
                                           f"{dequantised_s * 1e3:.1f} ms de-quantised")
        else:
            print(f"skip fp8 matmul: {torch.cuda.get_device_name(device)} has no fp8 tensor cores")

        # float32 without TF32 convolutions (cuDNN's default), so that only the chunks' own rounding shows
        torch.backends.cudnn.allow_tf32 = False
        vae = CausalVAE(VAE_PRESETS["884-16c-hy"]).to(device).eval()
        z = torch.randn(1, 16, *args.vae_latent, device=device)
        whole, whole_peak = peak_of(lambda: vae.decode(z, tiling=False))
        for chunk in (4, "auto"):
            vae.set_decode_chunk(chunk)
            chunked, chunked_peak = peak_of(lambda: vae.decode(z, tiling=False))
            err = relative(chunked, whole)
            check(f"VAE decode chunk {chunk}", err < 1e-5 and chunked_peak <= whole_peak,
                  f"relative difference {err:.1e}; peak {chunked_peak:.2f} GiB against {whole_peak:.2f} GiB whole")
        vae.set_decode_chunk(None)

        counters.clear()
        compile_blocks(model)
        outs = [model(**{**inputs, "t": torch.tensor([t], device=device)}) for t in (900.0, 600.0, 500.0)]
        err = relative(outs[-1], eager)
        graphs = counters["stats"]["unique_graphs"]
        check("regional compile", graphs == 2 and err < 1e-2, f"{graphs} graphs over 3 steps; relative difference "
                                                              f"{err:.1e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
