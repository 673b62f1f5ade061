"""Loading and saving the transformer: official .pt / safetensors / diffusers folders, strict key checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel
from test_transformer import TINY, make_inputs, randomize_

from hunyuan_video import HunyuanVideoTransformer, TransformerConfig, load_transformer, save_transformer
from hunyuan_video.checkpoint import (
    infer_transformer_config,
    read_state_dict,
    transformer_config_from_diffusers,
    transformer_config_to_diffusers,
    transformer_from_diffusers,
    transformer_to_diffusers,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> HunyuanVideoTransformer:
    return randomize_(HunyuanVideoTransformer(TINY), seed=5).eval()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_safetensors_round_trip_keeps_weights_config_and_outputs(tmp_path, model):
    save_transformer(model, tmp_path / "model.safetensors")
    loaded = load_transformer(tmp_path / "model.safetensors")
    assert loaded.config == TINY
    assert_same_weights(loaded, model)
    assert not any(p.is_meta for p in loaded.parameters())
    inputs = make_inputs(TINY)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs), model(**inputs))
    half = load_transformer(tmp_path / "model.safetensors", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())


@pytest.mark.parametrize("wrapped", [True, False])
def test_official_pt_with_or_without_module(tmp_path, model, wrapped):
    state_dict = model.state_dict()
    torch.save({"module": state_dict} if wrapped else state_dict, tmp_path / "mp_rank_00_model_states.pt")
    loaded = load_transformer(tmp_path / "mp_rank_00_model_states.pt", config=TINY)
    assert_same_weights(loaded, model)


def test_config_is_inferred_from_an_official_checkpoint(tmp_path):
    config = TransformerConfig(hidden_size=256, heads_num=2, mm_double_blocks_depth=2, mm_single_blocks_depth=3,
                               text_states_dim=40, text_states_dim_2=24, refiner_depth=1, guidance_embed=False)
    torch.save({"module": HunyuanVideoTransformer(config).state_dict()}, tmp_path / "model.pt")
    assert infer_transformer_config(read_state_dict(tmp_path / "model.pt")) == config
    assert load_transformer(tmp_path / "model.pt").config == config


def test_diffusers_layout_round_trip_and_sharded_folder(tmp_path, model):
    converted = transformer_to_diffusers(model.state_dict(), TINY)
    reference = HunyuanVideoTransformer3DModel(**transformer_config_to_diffusers(TINY))
    reference.load_state_dict(converted, strict=True)
    back = transformer_from_diffusers(dict(converted), model.state_dict().keys())
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    reference.save_pretrained(tmp_path, max_shard_size="200KB")
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    assert_same_weights(load_transformer(tmp_path), model)


def test_key_and_shape_problems_name_the_key(tmp_path, model):
    state_dict = dict(model.state_dict())
    del state_dict["final_layer.linear.bias"]
    state_dict["double_blocks.0.img_attn_extra.weight"] = torch.zeros(1)
    state_dict["time_in.mlp.0.weight"] = torch.zeros(3, 3)
    torch.save(state_dict, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as error:
        load_transformer(tmp_path / "bad.pt", config=TINY)
    for key in ("final_layer.linear.bias", "double_blocks.0.img_attn_extra.weight", "time_in.mlp.0.weight"):
        assert key in str(error.value)
    converted = transformer_to_diffusers(model.state_dict(), TINY)
    del converted["transformer_blocks.0.attn.add_k_proj.weight"]
    with pytest.raises(ValueError, match="attn.add_k_proj.weight .*double_blocks.0.txt_attn_qkv.weight"):
        transformer_from_diffusers(converted, model.state_dict().keys())


def test_bad_paths_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="without config.json"):
        load_transformer(tmp_path)
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported checkpoint"):
        load_transformer(tmp_path / "weights.npz")
    with pytest.raises(FileNotFoundError):
        load_transformer(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="unknown i2v_condition_type 'bogus'"):
        transformer_config_from_diffusers({"image_condition_type": "bogus"})


def test_guidance_preset_mismatch_is_reported(tmp_path, model):
    save_transformer(model, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="unexpected keys: guidance_in"):
        load_transformer(tmp_path / "model.safetensors", config=dataclasses.replace(TINY, guidance_embed=False))


def test_loading_builds_the_model_on_meta_without_random_weights(tmp_path, model, monkeypatch):
    save_transformer(model, tmp_path / "model.safetensors")
    built_on = []
    build = HunyuanVideoTransformer.__init__

    def spy(self, config):
        build(self, config)
        built_on.append(self.img_in.proj.weight.device.type)

    monkeypatch.setattr(HunyuanVideoTransformer, "__init__", spy)
    loaded = load_transformer(tmp_path / "model.safetensors")
    assert built_on == ["meta"]
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}
