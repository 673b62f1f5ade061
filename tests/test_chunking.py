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


def test_lora_on_a_float8_transformer_adds_to_the_dequantised_weights():
    """Adapters on float8 linears (fused QKV and linear1 among them) give what the same adapters give on the
    de-quantised weights in float32; the weights stay float8, the adapters float32; chunked MLPs keep them; fusing is
    refused before anything changes; removing them gives back the plain float8 model bit for bit."""
    from hunyuan_video.lora import LoraWeight, add_adapter, fuse_lora, lora_layers, remove_lora
    from hunyuan_video.quant import FP8_DTYPE, FP8Linear, has_fp8_linears

    fp8 = fp8_copy(randomize_(HunyuanVideoTransformer(TINY), seed=4))
    state = {k: v for k, v in fp8.state_dict().items() if not k.endswith("fp8_scale")}
    for name in fp8_linear_names(fp8):
        state[f"{name}.weight"] = fp8.get_submodule(name).dequantized_weight(torch.float32)
    dequantised = HunyuanVideoTransformer(TINY).eval()
    dequantised.load_state_dict(state)
    gen = torch.Generator().manual_seed(5)
    modules = ["double_blocks.0.img_attn_qkv", "double_blocks.0.txt_mlp.fc2", "single_blocks.0.linear1",
               "single_blocks.0.linear2"]
    shapes = {m: fp8.get_submodule(m).weight.shape for m in modules}
    pairs = {m: LoraWeight(torch.randn(3, shapes[m][1], generator=gen) * 0.3,
                           torch.randn(shapes[m][0], 3, generator=gen) * 0.3, 6.0) for m in modules}
    inputs = make_inputs(TINY)
    with torch.no_grad():
        plain = fp8(**inputs)
        for model in (fp8, dequantised):
            add_adapter(model, pairs, "a", scale=0.7)
        torch.testing.assert_close(fp8(**inputs), dequantised(**inputs), rtol=1e-5, atol=1e-5)
        layer = lora_layers(fp8)["single_blocks.0.linear1"]
        assert layer.weight.dtype == FP8_DTYPE and layer.adapters["a"].up.dtype == torch.float32
        assert has_fp8_linears(fp8)
        with_lora = fp8(**inputs)
        assert (with_lora - plain).abs().max() > 1e-3
        fp8.set_ffn_chunk(5)  # the adapters' products in chunks round apart by ~1e-6, as unfused ones above do
        torch.testing.assert_close(fp8(**inputs), with_lora, rtol=1e-5, atol=1e-5)
        fp8.set_ffn_chunk(None)
        with pytest.raises(ValueError, match="float8 weights stay unfused"):
            fuse_lora(fp8)
        assert all(layer.fused is None for layer in lora_layers(fp8).values())
        assert torch.equal(fp8(**inputs), with_lora)
        remove_lora(fp8)
        assert isinstance(fp8.get_submodule("single_blocks.0.linear1"), FP8Linear)
        assert torch.equal(fp8(**inputs), plain)


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
