"""fp8 weights: the official fp8 checkpoint and its map, quantisation at load, and saving the same pair."""

from __future__ import annotations

import pytest
import torch
from test_transformer import TINY, make_inputs, randomize_

from hunyuan_video import HunyuanVideoTransformer, load_transformer, save_transformer
from hunyuan_video.pipelines import find_model_folder
from hunyuan_video.quant import FP8_DTYPE, FP8Linear, fp8_linear_names

pytestmark = pytest.mark.usefixtures("one_thread")

OFFICIAL_FP8 = "mp_rank_00_model_states_fp8.pt"


@pytest.fixture(scope="module")
def model() -> HunyuanVideoTransformer:
    return randomize_(HunyuanVideoTransformer(TINY), seed=3).eval()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def write_official_fp8(model: HunyuanVideoTransformer, folder) -> HunyuanVideoTransformer:
    """Write `model` as the official fp8 pair (float8 block linears under `module`, {module name: scale} beside);
    return the fp32 model holding the de-quantised weights."""
    state_dict, scales = dict(model.state_dict()), {}
    for name in fp8_linear_names(model):
        weight = state_dict[f"{name}.weight"]
        scales[name] = weight.abs().max() / 448.0
        state_dict[f"{name}.weight"] = (weight / scales[name]).to(torch.float8_e4m3fn)
    torch.save({"module": state_dict}, folder / OFFICIAL_FP8)
    torch.save(scales, folder / "mp_rank_00_model_states_fp8_map.pt")
    dequantized = {key: value.float() * scales[key.removesuffix(".weight")] if value.dtype == FP8_DTYPE else value
                   for key, value in state_dict.items()}
    reference = HunyuanVideoTransformer(TINY).eval()
    reference.load_state_dict(dequantized)
    return reference


def fp8_weight_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """Bytes and elements of the blocks' linear weights."""
    weights = [model.get_submodule(name).weight for name in fp8_linear_names(model)]
    return sum(w.nbytes for w in weights), sum(w.numel() for w in weights)


def test_the_official_fp8_pair_loads_as_published(tmp_path, model):
    reference = write_official_fp8(model, tmp_path)
    loaded = load_transformer(tmp_path / OFFICIAL_FP8, config=TINY, dtype=torch.float32)
    names = fp8_linear_names(loaded)
    assert names and all(isinstance(loaded.get_submodule(n), FP8Linear) for n in names)
    assert {n.split(".")[0] for n in names} == {"double_blocks", "single_blocks"}
    assert "double_blocks.0.img_mod.linear" in names and "single_blocks.1.linear1" in names
    nbytes, numel = fp8_weight_bytes(loaded)
    assert nbytes == numel  # one byte per weight, in memory
    assert all(loaded.get_submodule(n).weight.dtype == FP8_DTYPE for n in names)
    assert loaded.img_in.proj.weight.dtype == torch.float32 and loaded.final_layer.linear.weight.dtype == torch.float32
    inputs = make_inputs(TINY)
    with torch.no_grad():
        assert relative_error(loaded(**inputs), reference(**inputs)) < 1e-6


def test_an_fp8_file_without_its_map_is_a_clear_error(tmp_path, model):
    write_official_fp8(model, tmp_path)
    (tmp_path / "mp_rank_00_model_states_fp8_map.pt").unlink()
    with pytest.raises(ValueError, match="holds fp8 weights but its map of scales, "
                                         "mp_rank_00_model_states_fp8_map.pt, is not beside it"):
        load_transformer(tmp_path / OFFICIAL_FP8, config=TINY)
    torch.save({"double_blocks.0.img_attn_qkv": torch.tensor(1.0)}, tmp_path / "mp_rank_00_model_states_fp8_map.pt")
    with pytest.raises(ValueError, match="_fp8_map.pt has no scale for .* fp8 linear"):
        load_transformer(tmp_path / OFFICIAL_FP8, config=TINY)


def test_quantize_fp8_at_load_bounds_the_error(tmp_path, model):
    save_transformer(model, tmp_path / "model.safetensors")
    full = load_transformer(tmp_path / "model.safetensors", dtype=torch.float32)
    fp8 = load_transformer(tmp_path / "model.safetensors", dtype=torch.float32, quantize="fp8")
    nbytes, numel = fp8_weight_bytes(fp8)
    assert nbytes == numel and fp8_weight_bytes(full)[0] == 4 * numel
    for name in fp8_linear_names(full):  # e4m3 keeps 3 mantissa bits: a relative rounding error of at most 1/16
        weight, layer = full.get_submodule(name).weight, fp8.get_submodule(name)
        assert relative_error(layer.dequantized_weight(torch.float32), weight) < 1 / 16, name
        assert torch.allclose(layer.fp8_scale, weight.abs().max() / 448)
    inputs = make_inputs(TINY)
    with torch.no_grad():
        error = relative_error(fp8(**inputs), full(**inputs))
    print(f"fp8 quantisation: relative output error {error:.2e}")
    assert 0 < error < 0.05
    with pytest.raises(ValueError, match="quantize must be None or 'fp8', got 'int4'"):
        load_transformer(tmp_path / "model.safetensors", quantize="int4")


@pytest.mark.parametrize("name, map_name", [("model_fp8.safetensors", "model_fp8_map.pt"),
                                            (OFFICIAL_FP8, "mp_rank_00_model_states_fp8_map.pt")])
def test_save_fp8_writes_the_pair_load_reads(tmp_path, model, name, map_name):
    write_official_fp8(model, tmp_path)
    fp8 = load_transformer(tmp_path / OFFICIAL_FP8, config=TINY, dtype=torch.float32)
    save_transformer(fp8, tmp_path / "out" / name, fp8=True)
    assert (tmp_path / "out" / map_name).is_file()
    again = load_transformer(tmp_path / "out" / name, config=TINY, dtype=torch.float32)
    assert again.state_dict().keys() == fp8.state_dict().keys()
    for key, value in fp8.state_dict().items():
        assert again.state_dict()[key].dtype == value.dtype and torch.equal(again.state_dict()[key], value), key
    with pytest.raises(ValueError, match="holds fp8 weights: save it with fp8=True"):
        save_transformer(fp8, tmp_path / "plain.safetensors")


def test_quantizing_at_save_equals_quantizing_at_load(tmp_path, model):
    save_transformer(model, tmp_path / "quantized_fp8.safetensors", fp8=True)
    save_transformer(model, tmp_path / "full.safetensors")
    at_save = load_transformer(tmp_path / "quantized_fp8.safetensors", dtype=torch.float32)
    at_load = load_transformer(tmp_path / "full.safetensors", dtype=torch.float32, quantize="fp8")
    for key, value in at_load.state_dict().items():
        assert torch.equal(at_save.state_dict()[key].float(), value.float()), key


def test_the_official_layout_accepts_the_fp8_checkpoint(tmp_path, model):
    official = tmp_path / "ckpts" / "hunyuan-video-t2v-720p"
    (official / "transformers").mkdir(parents=True)
    for part in (official / "vae", tmp_path / "ckpts" / "text_encoder", tmp_path / "ckpts" / "text_encoder_2"):
        part.mkdir()
    write_official_fp8(model, official / "transformers")
    assert find_model_folder(tmp_path).transformer == official / "transformers" / OFFICIAL_FP8
