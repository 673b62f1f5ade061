"""Bounded activations: the blocks' MLPs run over chunks of tokens and give the un-chunked result."""

from __future__ import annotations

import pytest
import torch
from test_transformer import TINY, make_inputs, randomize_

from hunyuan_video import HunyuanVideoTransformer
from hunyuan_video.quant import add_fp8_scales, fp8_linear_names, quantize_state_dict, to_fp8_linears

pytestmark = pytest.mark.usefixtures("one_thread")


def fp8_copy(model: HunyuanVideoTransformer) -> HunyuanVideoTransformer:
    state_dict, names = dict(model.state_dict()), fp8_linear_names(model)
    add_fp8_scales(state_dict, quantize_state_dict(state_dict, names), names, "the test")
    copy = to_fp8_linears(HunyuanVideoTransformer(TINY)).eval()
    copy.load_state_dict(state_dict)
    return copy


@pytest.mark.parametrize("fp8", [False, True])
def test_chunked_mlps_equal_the_whole(fp8):
    model = randomize_(HunyuanVideoTransformer(TINY), seed=4).eval()
    model = fp8_copy(model) if fp8 else model
    inputs = make_inputs(TINY)  # two samples, padded text: 14 + 9 tokens per sample in the single blocks
    with torch.no_grad():
        whole = model(**inputs)
        for chunk in (1, 5, 8, 1000):
            model.set_ffn_chunk(chunk)
            torch.testing.assert_close(model(**inputs), whole, rtol=1e-6, atol=1e-6)
        model.set_ffn_chunk(None)
        assert torch.equal(model(**inputs), whole)
    with pytest.raises(ValueError, match="positive number of tokens, got 0"):
        model.set_ffn_chunk(0)


def test_chunked_mlps_keep_unfused_lora_adapters():
    from hunyuan_video.lora import linear_shapes, new_adapter

    model = randomize_(HunyuanVideoTransformer(TINY), seed=4).eval()
    new_adapter(model, [m for m in linear_shapes(model) if m.endswith(("linear1", "linear2", "mlp.fc1"))], 2, 2.0)
    for name, parameter in model.named_parameters():
        if name.endswith(".up"):  # B starts at zero: give the adapters something to add
            torch.nn.init.normal_(parameter, std=0.1, generator=torch.Generator().manual_seed(len(name)))
    inputs = make_inputs(TINY)
    with torch.no_grad():
        whole = model(**inputs)
        model.set_ffn_chunk(5)
        torch.testing.assert_close(model(**inputs), whole, rtol=1e-5, atol=1e-5)


def test_lora_on_a_float8_transformer_is_a_clear_error(tmp_path):
    from hunyuan_video.lora import load_lora

    with pytest.raises(ValueError, match="holds float8 weights"):
        load_lora(fp8_copy(randomize_(HunyuanVideoTransformer(TINY), seed=4)), tmp_path / "any.safetensors")


def test_automatic_mlp_chunk_fits_its_budget_and_is_kept_per_size(monkeypatch):
    model = randomize_(HunyuanVideoTransformer(TINY), seed=4).eval()
    inputs = make_inputs(TINY)
    per_token = model.mlp_bytes_per_token(inputs["x"].shape[0], 4)
    with torch.no_grad():
        whole = model(**inputs)
        for fits in (1, 5, 8):
            budget = per_token * fits + per_token // 2
            monkeypatch.setattr("hunyuan_video.models.transformer.auto_budget", lambda device, b=budget: b)
            model.set_ffn_chunk("auto")
            torch.testing.assert_close(model(**inputs), whole, rtol=1e-6, atol=1e-6)
            chunks = {block.ffn_chunk for block in [*model.double_blocks, *model.single_blocks]}
            assert chunks == {fits} and per_token * fits <= budget
            monkeypatch.setattr("hunyuan_video.models.transformer.auto_budget", lambda device: per_token * 2)
            model(**inputs)  # the same size again: the chunk chosen first is kept (no recompile of compiled blocks)
            assert {block.ffn_chunk for block in model.single_blocks} == {fits}
        monkeypatch.setattr("hunyuan_video.models.transformer.auto_budget", lambda device: 2**40)
        model.set_ffn_chunk("auto")
        assert torch.equal(model(**inputs), whole)  # everything fits: no chunking
        assert {block.ffn_chunk for block in model.single_blocks} == {None}
    for bad in ("half", 1.5, True):
        with pytest.raises(ValueError, match="positive number of tokens"):
            model.set_ffn_chunk(bad)
