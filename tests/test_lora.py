"""LoRA: every file layout against the same update merged by hand, diffusers' own loader, fuse/unfuse, stacking,
bad files, conversion."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import diffusers_tiny_transformer, tiny_transformer

from hunyuan_video import load_lora
from hunyuan_video.checkpoint import transformer_from_diffusers, transformer_to_diffusers
from hunyuan_video.lora import (
    AdapterState,
    LoraWeight,
    bake_lora,
    fuse_lora,
    remove_lora,
    set_lora_scale,
    unfuse_lora,
)
from hunyuan_video.lora_formats import convert_lora, lora_to_state_dict, parse_lora, save_lora

# Official modules the test LoRAs touch: fused QKV and linear1, the swapped final modulation, refiner QKV, plain ones.
MODULES = ("double_blocks.0.img_attn_qkv", "double_blocks.1.txt_attn_qkv", "double_blocks.0.img_mlp.fc1",
           "double_blocks.1.txt_mod.linear", "single_blocks.0.linear1", "single_blocks.1.linear2",
           "final_layer.adaLN_modulation.1", "txt_in.individual_token_refiner.blocks.0.self_attn_qkv",
           "final_layer.linear")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    return tiny_transformer()


def inputs(config, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(1, config.in_channels, 3, 4, 4, generator=gen), t=torch.tensor([500.0]),
                text_states=torch.randn(1, 5, config.text_states_dim, generator=gen),
                text_mask=torch.ones(1, 5, dtype=torch.long),
                text_states_2=torch.randn(1, config.text_states_dim_2, generator=gen),
                guidance=torch.tensor([4000.0]))


def run(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs(model.config))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def random_pairs(model, rank: int = 3, alpha: float = 6.0, seed: int = 0, modules=MODULES) -> dict[str, LoraWeight]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {name: m.weight.shape for name, m in model.named_modules() if name in modules}
    return {name: LoraWeight(torch.randn(rank, shape[1], generator=gen) * 0.3,
                             torch.randn(shape[0], rank, generator=gen) * 0.3, alpha) for name, shape in shapes.items()}


def merged(model, weights: dict[str, LoraWeight], scale: float = 1.0):
    """A copy of `model` with `scale (alpha / r) B A` added to each weight by hand."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, pair in weights.items():
            out.get_submodule(name).weight += scale * pair.alpha / pair.rank * pair.up @ pair.down
    return out


def official_layout(weights: dict[str, LoraWeight], layout: str, with_alpha: bool = True) -> dict:
    """The keys written by hand, as each tool names them."""
    out = {}
    for module, pair in weights.items():
        if layout == "kohya":
            base = "lora_unet_" + module.replace(".", "_")
            out |= {f"{base}.lora_down.weight": pair.down, f"{base}.lora_up.weight": pair.up}
        else:
            base = f"{layout}.{module}"
            out |= {f"{base}.lora_A.weight": pair.down, f"{base}.lora_B.weight": pair.up}
        if with_alpha:
            out[f"{base}.alpha"] = torch.tensor(pair.alpha)
    return out


@pytest.mark.parametrize("layout", ["diffusion_model", "transformer", "transformer.diffusion_model", "kohya"])
@pytest.mark.parametrize("with_alpha", [True, False])
def test_whole_layer_layouts_match_the_update_merged_by_hand(tmp_path, base, layout, with_alpha):
    weights = random_pairs(base)
    if not with_alpha:
        weights = {k: LoraWeight(p.down, p.up, p.rank) for k, p in weights.items()}
    save_file(official_layout(weights, layout, with_alpha), tmp_path / "lora.safetensors")
    model = copy.deepcopy(base)
    name = load_lora(model, tmp_path / "lora.safetensors", scale=0.7)
    assert name == "lora"
    assert rel_err(run(model), run(merged(base, weights, 0.7))) < 1e-5


def diffusers_pairs(base, ranks=(2, 3, 4, 1), seed: int = 5) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random (A, B) per diffusers module, with a different rank per q/k/v part; some parts left out."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {k.removesuffix(".weight"): v.shape for k, v in
              transformer_to_diffusers(base.state_dict(), base.config).items() if k.endswith(".weight")}
    names = ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v",
             "transformer_blocks.1.attn.add_q_proj", "transformer_blocks.1.attn.add_v_proj",
             "single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k",
             "single_transformer_blocks.0.attn.to_v", "single_transformer_blocks.0.proj_mlp",
             "single_transformer_blocks.1.proj_out", "norm_out.linear", "transformer_blocks.0.ff.net.0.proj",
             "context_embedder.token_refiner.refiner_blocks.0.attn.to_k"]
    return {name: (torch.randn(ranks[i % 4], shapes[name][1], generator=gen) * 0.3,
                   torch.randn(shapes[name][0], ranks[i % 4], generator=gen) * 0.3) for i, name in enumerate(names)}


def test_split_diffusers_parts_map_exactly_onto_fused_layers(tmp_path, base):
    pairs = diffusers_pairs(base)
    # Merged by hand in diffusers' layout (alpha = rank: scale 1), then brought back to the official one.
    split = transformer_to_diffusers(base.state_dict(), base.config)
    for name, (down, up) in pairs.items():
        split[f"{name}.weight"] = split[f"{name}.weight"] + up @ down
    expected = copy.deepcopy(base)
    expected.load_state_dict(transformer_from_diffusers(split, base.state_dict().keys()))
    files = {f"transformer.{name}.lora_{ab}.weight": t for name, pair in pairs.items() for ab, t in zip("AB", pair)}
    save_file(files, tmp_path / "d.safetensors")
    model = copy.deepcopy(base)
    load_lora(model, tmp_path / "d.safetensors")
    assert rel_err(run(model), run(expected)) < 1e-5


@pytest.mark.filterwarnings("ignore:While injecting the PEFT adapters")  # peft matches norm_out.linear by suffix
def test_diffusers_layout_matches_diffusers_own_loader(tmp_path):
    from diffusers.loaders import HunyuanVideoLoraLoaderMixin

    class Loader(HunyuanVideoLoraLoaderMixin):  # what diffusers' pipeline runs, without text encoders or VAE
        hf_device_map = None
        components: dict = {}

        def __init__(self, transformer):
            self.transformer = transformer

    reference = diffusers_tiny_transformer()
    ours = copy.deepcopy(tiny_transformer())
    ours.load_state_dict(transformer_from_diffusers(dict(reference.state_dict()), ours.state_dict().keys()))
    pairs = diffusers_pairs(ours, ranks=(4, 4, 4, 4))
    files = {f"transformer.{name}.lora_{ab}.weight": t for name, pair in pairs.items() for ab, t in zip("AB", pair)}
    save_file(files, tmp_path / "d.safetensors")
    Loader(reference).load_lora_weights(str(tmp_path / "d.safetensors"), adapter_name="x")
    load_lora(ours, tmp_path / "d.safetensors")
    args = inputs(ours.config)
    with torch.no_grad():
        theirs = reference(args["x"], args["t"], args["text_states"], args["text_mask"], args["text_states_2"],
                           args["guidance"], return_dict=False)[0]
        without = run(tiny_transformer())
    assert rel_err(run(ours), theirs) < 1e-5
    assert rel_err(without, theirs) > 1e-3  # the adapter does change the output


def test_fuse_unfuse_is_bit_exact_and_fused_output_matches(tmp_path, base):
    save_lora(random_pairs(base), tmp_path / "a.safetensors")
    model = copy.deepcopy(base)
    load_lora(model, tmp_path / "a.safetensors", scale=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    unfused = run(model)
    fuse_lora(model)
    assert rel_err(run(model), unfused) < 1e-5
    assert not torch.equal(model.single_blocks[0].linear1.weight, before["single_blocks.0.linear1.weight"])
    set_lora_scale(model, "a", 0.25)  # re-fused at the new scale
    assert rel_err(run(model), run(merged(base, random_pairs(base), 0.25))) < 1e-5
    unfuse_lora(model)
    set_lora_scale(model, "a", 0.5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(run(model), unfused)


def test_two_adapters_stack_with_their_own_scales(tmp_path, base):
    a, b = random_pairs(base, seed=1), random_pairs(base, rank=2, alpha=1.0, seed=2, modules=MODULES[:4])
    save_lora(a, tmp_path / "a.safetensors")
    save_lora(b, tmp_path / "b.safetensors", layout="kohya")
    model = copy.deepcopy(base)
    load_lora(model, tmp_path / "a.safetensors", scale=0.5)
    load_lora(model, tmp_path / "b.safetensors", scale=2.0, name="style")
    assert rel_err(run(model), run(merged(merged(base, a, 0.5), b, 2.0))) < 1e-5
    set_lora_scale(model, "style", 0.0)
    assert rel_err(run(model), run(merged(base, a, 0.5))) < 1e-5
    with pytest.raises(ValueError, match="already has a LoRA adapter named 'a'"):
        load_lora(model, tmp_path / "a.safetensors")
    remove_lora(model, "a")
    assert torch.equal(run(model), run(base))  # "style" at scale 0 remains
    remove_lora(model)
    assert model.state_dict().keys() == base.state_dict().keys()


def test_bake_keeps_merged_weights_in_a_plain_model(tmp_path, base):
    weights = random_pairs(base)
    save_lora(weights, tmp_path / "a.safetensors")
    model = copy.deepcopy(base)
    load_lora(model, tmp_path / "a.safetensors")
    bake_lora(model)
    assert model.state_dict().keys() == base.state_dict().keys()
    assert rel_err(run(model), run(merged(base, weights))) < 1e-5


def test_bad_files_give_clear_errors(tmp_path, base):
    shapes = {name: (m.out_features, m.in_features) for name, m in base.named_modules()
              if isinstance(m, torch.nn.Linear)}
    pair = random_pairs(base, modules=("double_blocks.0.img_attn_proj",))["double_blocks.0.img_attn_proj"]
    key = "diffusion_model.double_blocks.0.img_attn_proj"
    with pytest.raises(ValueError, match="not a LoRA file"):
        parse_lora(base.state_dict(), shapes)
    with pytest.raises(ValueError, match="ranks"):
        parse_lora({f"{key}.lora_A.weight": pair.down, f"{key}.lora_B.weight": pair.up[:, :2]}, shapes)
    with pytest.raises(ValueError, match="maps 64 -> 32 features; the layer maps 64 -> 64"):
        parse_lora({f"{key}.lora_A.weight": pair.down, f"{key}.lora_B.weight": pair.up[:32]}, shapes)
    with pytest.raises(ValueError, match="not both"):
        parse_lora({f"{key}.lora_A.weight": pair.down}, shapes)
    unknown = {f"{key}.lora_A.weight": pair.down, f"{key}.lora_B.weight": pair.up,
               "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": pair.down,
               "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": pair.up}
    with pytest.raises(ValueError, match=r"2 keys that match no layer.*lora_te_text_model_encoder_layers_0_mlp_fc1"):
        parse_lora(unknown, shapes)
    with pytest.warns(UserWarning, match="2 keys that match no layer"):
        assert list(parse_lora(unknown, shapes, ignore_unknown=True)) == ["double_blocks.0.img_attn_proj"]
    save_file({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="plain.safetensors is not a LoRA file"):
        load_lora(copy.deepcopy(base), tmp_path / "plain.safetensors")


@pytest.mark.parametrize("layout", ["kohya", "diffusers", "original"])
def test_convert_round_trips(tmp_path, base, layout):
    weights = random_pairs(base)
    save_lora(weights, tmp_path / "a.safetensors")
    convert_lora(tmp_path / "a.safetensors", tmp_path / f"b.{layout}.safetensors", layout)
    convert_lora(tmp_path / f"b.{layout}.safetensors", tmp_path / "c.safetensors", "original")
    shapes = {name: (m.out_features, m.in_features) for name, m in base.named_modules()
              if isinstance(m, torch.nn.Linear)}
    from hunyuan_video.lora_formats import read_lora

    back = read_lora(tmp_path / "c.safetensors", shapes)
    assert back.keys() == weights.keys()
    for module, pair in weights.items():
        assert back[module].rank == pair.rank
        if layout == "diffusers":  # alpha folded into B: the same update
            assert torch.allclose(back[module].delta(), pair.delta(), rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(back[module].down, pair.down) and torch.equal(back[module].up, pair.up)
            assert back[module].alpha == pair.alpha
    model = copy.deepcopy(base)
    load_lora(model, tmp_path / f"b.{layout}.safetensors")
    assert rel_err(run(model), run(merged(base, weights))) < 1e-5
    assert AdapterState(model, f"b_{layout}").weights().keys() == weights.keys()


def test_written_original_layout_keeps_alpha_and_rank_in_metadata(base):
    tensors, metadata = lora_to_state_dict(random_pairs(base), "original")
    assert metadata["lora_alpha"] == "6.0" and metadata["rank"] == "3"
    assert "diffusion_model.single_blocks.0.linear1.lora_A.weight" in tensors
    assert not any(key.endswith(".alpha") for key in tensors)
