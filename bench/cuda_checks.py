"""The CUDA-only paths of issue 31, checked on a GPU in one short run (about a minute on an H100).

Offload with prefetch (side stream, pinned memory) against no offload; each attention kernel that is installed
against SDPA; fp8 weights (memory and error); regional compile (no recompiles over 3 steps, close to eager). Exits
non-zero when a check fails.

    python bench/cuda_checks.py                     # bench-mid, bfloat16, latent grid 4x32x32
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch._dynamo.utils import counters

from hunyuan_video.config import TRANSFORMER_PRESETS
from hunyuan_video.models import HunyuanVideoTransformer
from hunyuan_video.models.attention import ATTENTION_BACKENDS, AttentionBackendError, check_attention_backend
from hunyuan_video.models.regional_compile import compile_blocks
from hunyuan_video.pipelines import ModelOffload
from hunyuan_video.quant import add_fp8_scales, fp8_linear_names, quantize_state_dict, to_fp8_linears


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="bench-mid")
    parser.add_argument("--grid", type=int, nargs=3, default=(4, 32, 32))
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
        model.to(device)
        eager = model(**inputs)
        check("offload with prefetch", torch.equal(streamed, eager), f"equal to no offload; peak {peak:.2f} GiB")

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
