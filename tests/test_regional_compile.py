"""Regional compilation: one graph per block type, no recompilation across steps, the eager result.

The graphs are built with the "aot_eager" backend: the capture, the guards that decide recompilation and the
functionalised graph are inductor's, without its C++ code generation (minutes on a shared CPU);
`bench/transformer.py --compile` times and checks inductor itself.
"""

from __future__ import annotations

import pytest
import torch
from test_transformer import TINY, make_inputs, randomize_
from torch._dynamo.utils import counters

from hunyuan_video import HunyuanVideoTransformer
from hunyuan_video.models.regional_compile import compile_blocks
from hunyuan_video.quant import add_fp8_scales, fp8_linear_names, quantize_state_dict, to_fp8_linears

pytestmark = pytest.mark.usefixtures("one_thread")


def steps(model: HunyuanVideoTransformer, inputs: dict) -> list[torch.Tensor]:
    """Three forwards at the timesteps of three denoising steps."""
    with torch.no_grad():
        return [model(**{**inputs, "t": torch.full_like(inputs["t"], t)}) for t in (900.0, 600.0, 300.0)]


@pytest.mark.parametrize("fp8", [False, True])
def test_each_block_type_compiles_once_and_equals_eager(fp8):
    model = randomize_(HunyuanVideoTransformer(TINY), seed=2).eval()
    if fp8:
        state_dict, names = dict(model.state_dict()), fp8_linear_names(model)
        add_fp8_scales(state_dict, quantize_state_dict(state_dict, names), names, "the test")
        to_fp8_linears(model).load_state_dict(state_dict)
    inputs = make_inputs(TINY)
    eager = steps(model, inputs)
    torch._dynamo.reset()
    counters.clear()
    compile_blocks(model, backend="aot_eager")
    with torch._dynamo.config.patch(error_on_recompile=True):  # a recompilation fails the test
        compiled = steps(model, inputs)
    assert counters["stats"]["unique_graphs"] == 2  # one double-block graph, one single-block graph
    assert counters["frames"]["ok"] == 2 and not counters["graph_break"]
    assert fp8 == (model.single_blocks[0].linear1.weight.dtype == torch.float8_e4m3fn)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
