"""The fp8 matmul of float8 linears (`torch._scaled_mm`): its guard, and its numerics against the de-quantised
path (torch._scaled_mm runs on the CPU too, so the same code is checked here; bench/cuda_checks.py times it on a
GPU)."""

from __future__ import annotations

import pytest
import torch
from test_chunking import fp8_copy
from test_transformer import TINY, make_inputs, randomize_

from hunyuan_video import HunyuanVideoTransformer
from hunyuan_video.quant import FP8Linear, enable_fp8_matmul, fp8_matmul, has_fp8_tensor_cores, quantize_weight

pytestmark = pytest.mark.usefixtures("one_thread")

# Rounding the activations to float8 (3 mantissa bits) on top of the weights: about 1% of the output here.
TOLERANCE = 0.05


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp8_matmul_is_close_to_the_dequantised_linear(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 64, generator=g).to(dtype)  # 150 rows: padded to 160 for the GEMM
    weight, scale = quantize_weight(torch.randn(48, 64, generator=g) * 0.05)
    bias = torch.randn(48, generator=g)
    want = torch.nn.functional.linear(x, weight.to(dtype) * scale.to(dtype), bias.to(dtype))
    got = fp8_matmul(x, weight, scale, bias)
    assert got.dtype == dtype and got.shape == want.shape
    assert relative(got, want) < TOLERANCE
    assert relative(fp8_matmul(x, weight, scale, None), want - bias.to(dtype)) < TOLERANCE
    assert torch.equal(fp8_matmul(torch.zeros_like(x), weight, scale, None), torch.zeros_like(want))


def test_the_guard_refuses_devices_without_fp8_tensor_cores():
    model = fp8_copy(randomize_(HunyuanVideoTransformer(TINY), seed=4).eval())
    assert not has_fp8_tensor_cores("cpu")
    with pytest.raises(ValueError, match="fp8_matmul needs a CUDA GPU with fp8 tensor cores"):
        enable_fp8_matmul(model, "cpu")
    with pytest.raises(ValueError, match="fp8_matmul needs float8 weights"), pytest.MonkeyPatch.context() as mp:
        mp.setattr("hunyuan_video.quant.has_fp8_tensor_cores", lambda device: True)
        enable_fp8_matmul(HunyuanVideoTransformer(TINY), "cpu")
    assert all(m.fp8_matmul_device is None for m in model.modules() if isinstance(m, FP8Linear))


def test_switched_linears_run_the_fp8_matmul_for_inputs_on_their_device(monkeypatch):
    model = fp8_copy(randomize_(HunyuanVideoTransformer(TINY), seed=4).eval())
    inputs = make_inputs(TINY)
    with torch.no_grad():
        dequantised = model(**inputs)
        monkeypatch.setattr("hunyuan_video.quant.has_fp8_tensor_cores", lambda device: True)  # as on an H100
        linears = [m for m in model.modules() if isinstance(m, FP8Linear)]
        assert enable_fp8_matmul(model, "cpu") == len(linears)  # every block linear of TINY is a multiple of 16
        calls = []
        monkeypatch.setattr("hunyuan_video.quant.fp8_matmul",
                            lambda *args, f=fp8_matmul: calls.append(1) or f(*args))
        got = model(**inputs)
        assert len(calls) == len(linears)
        assert relative(got, dequantised) < TOLERANCE and not torch.equal(got, dequantised)
        for linear in linears:  # inputs on another device than the switched one de-quantise as before
            linear.fp8_matmul_device = torch.device("meta")
        assert torch.equal(model(**inputs), dequantised)
