"""Model weights on disk: the official and diffusers layouts, safetensors, loading onto the meta device.

Generic helpers (`read_state_dict`, `build_on_meta`, `check_state_dict`, `load_state_dict_into`,
`save_state_dict`) work for any model; the transformer's loader and the official <-> diffusers key map follow.
The official key names live in the model classes; the diffusers names live only here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hunyuan_video.config import TransformerConfig, VAEConfig, config_from_dict, config_to_dict
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.models.vae import CausalVAE
from hunyuan_video.quant import (
    FP8_DTYPE,
    add_fp8_scales,
    fp8_linear_names,
    fp8_map_path,
    has_fp8_linears,
    has_fp8_tensors,
    quantize_state_dict,
    read_fp8_map,
    split_fp8_scales,
    to_fp8_linears,
)

M = TypeVar("M", bound=nn.Module)

# Keys under which training frameworks wrap a state dict in a `.pt` file (the official transformer uses `module`).
_WRAPPER_KEYS = ("module", "state_dict")


# ---------------------------------------------------------------------------------------------------------------
# Generic helpers


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a `.pt`/`.pth`/`.bin`/`.ckpt` file (unwrapping `module`/`state_dict`), of a `.safetensors`
    file, or of every `*.safetensors` shard in a folder. Files are memory-mapped, not read whole. A file that cannot
    be read (truncated, corrupt) is a ValueError naming it."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            raise ValueError(f"{path} holds no *.safetensors files")
        state_dict: dict[str, Tensor] = {}
        for shard in shards:
            part = _load_safetensors(shard)
            if duplicates := state_dict.keys() & part.keys():
                raise ValueError(f"{shard} repeats keys of another shard, e.g. {sorted(duplicates)[0]}")
            state_dict.update(part)
        return state_dict
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        try:
            obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{path} could not be read ({reason}): the file is incomplete, corrupt or not a "
                             "PyTorch checkpoint") from None
        for key in _WRAPPER_KEYS:
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        return obj
    raise ValueError(f"unsupported checkpoint {path}: expected .safetensors, .pt/.pth/.bin/.ckpt or a folder")


def _corrupt(path: Path, error: Exception) -> str:
    return f"{path} is incomplete or corrupt ({error}): download or write it again"


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(path)
    except SafetensorError as error:
        raise ValueError(_corrupt(path, error)) from None


@contextmanager
def open_safetensors(path: str | Path) -> Iterator[safe_open]:
    """`safe_open` a safetensors file (its header is checked against the file's size); a truncated or corrupt file
    is a ValueError naming it."""
    try:
        handle = safe_open(str(path), framework="pt")
    except SafetensorError as error:
        raise ValueError(_corrupt(Path(path), error)) from None
    with handle:
        yield handle


def check_safetensors(path: str | Path) -> None:
    """Raise a ValueError naming the first truncated or corrupt `.safetensors` file at `path` (a file or a folder's
    own files); reads only the headers."""
    path = Path(path)
    for file in [path] if path.is_file() else sorted(path.glob("*.safetensors")):
        with open_safetensors(file):
            pass


def build_on_meta(factory: Callable[[], M]) -> M:
    """Build a model on the meta device: no memory, no random init; fill it with `load_state_dict_into`."""
    with torch.device("meta"):
        return factory()


def _listing(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(model: nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Raise a ValueError naming every missing or unexpected key and every shape mismatch."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    problems = []
    if missing := expected.keys() - state_dict.keys():
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected := state_dict.keys() - expected.keys():
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    mismatched = [f"{key} {tuple(state_dict[key].shape)} vs model {shape}" for key, shape in expected.items()
                  if key in state_dict and tuple(state_dict[key].shape) != shape]
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise ValueError(f"checkpoint does not fit {type(model).__name__}: " + "; ".join(problems))


def load_state_dict_into(model: M, state_dict: dict[str, Tensor], dtype: torch.dtype | None = None,
                         device: torch.device | str | None = None) -> M:
    """Strictly load `state_dict` into `model` (typically on meta) by assignment, casting floating tensors to
    `dtype` (those the model holds in float8 to float8) and moving them to `device` one at a time; `state_dict` is
    emptied as it goes."""
    check_state_dict(model, state_dict)
    kept = {key for key, value in model.state_dict().items() if value.dtype == FP8_DTYPE}
    tensors = {}
    for key in list(state_dict):
        tensor = state_dict.pop(key)
        target = FP8_DTYPE if key in kept else dtype if tensor.is_floating_point() else None
        tensors[key] = tensor.to(device=device, dtype=target)
    model.load_state_dict(tensors, strict=True, assign=True)
    return model


def save_state_dict(state_dict: dict[str, Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors as one safetensors file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.detach().cpu().contiguous() for key, value in state_dict.items()}, str(path), metadata)


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header."""
    with open_safetensors(path) as file:
        return file.metadata() or {}


# ---------------------------------------------------------------------------------------------------------------
# The transformer: official <-> diffusers layouts

# Official module -> diffusers module, outside the repeated blocks.
_DIFFUSERS_MODULES = {
    "img_in.proj": "x_embedder.proj",
    "txt_in.input_embedder": "context_embedder.proj_in",
    "txt_in.t_embedder.mlp.0": "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "txt_in.t_embedder.mlp.2": "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "txt_in.c_embedder.linear_1": "context_embedder.time_text_embed.text_embedder.linear_1",
    "txt_in.c_embedder.linear_2": "context_embedder.time_text_embed.text_embedder.linear_2",
    "time_in.mlp.0": "time_text_embed.timestep_embedder.linear_1",
    "time_in.mlp.2": "time_text_embed.timestep_embedder.linear_2",
    "guidance_in.mlp.0": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.mlp.2": "time_text_embed.guidance_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "final_layer.linear": "proj_out",
    "final_layer.adaLN_modulation.1": "norm_out.linear",
}
# diffusers' AdaLayerNormContinuous chunks (scale, shift); the official final layer chunks (shift, scale).
_SWAPPED_HALVES = "final_layer.adaLN_modulation.1"

# Official block list -> (diffusers block list, {official module in a block: diffusers modules}). Several diffusers
# modules are concatenated along dim 0 into the official one (fused QKV, and QKV + MLP input in single blocks).
_DIFFUSERS_BLOCKS = {
    "double_blocks": ("transformer_blocks", {
        "img_mod.linear": ["norm1.linear"],
        "img_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
        "img_attn_q_norm": ["attn.norm_q"],
        "img_attn_k_norm": ["attn.norm_k"],
        "img_attn_proj": ["attn.to_out.0"],
        "img_mlp.fc1": ["ff.net.0.proj"],
        "img_mlp.fc2": ["ff.net.2"],
        "txt_mod.linear": ["norm1_context.linear"],
        "txt_attn_qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
        "txt_attn_q_norm": ["attn.norm_added_q"],
        "txt_attn_k_norm": ["attn.norm_added_k"],
        "txt_attn_proj": ["attn.to_add_out"],
        "txt_mlp.fc1": ["ff_context.net.0.proj"],
        "txt_mlp.fc2": ["ff_context.net.2"],
    }),
    "single_blocks": ("single_transformer_blocks", {
        "linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
        "linear2": ["proj_out"],
        "q_norm": ["attn.norm_q"],
        "k_norm": ["attn.norm_k"],
        "modulation.linear": ["norm.linear"],
    }),
    "txt_in.individual_token_refiner.blocks": ("context_embedder.token_refiner.refiner_blocks", {
        "norm1": ["norm1"],
        "self_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
        "self_attn_proj": ["attn.to_out.0"],
        "norm2": ["norm2"],
        "mlp.fc1": ["ff.net.0.proj"],
        "mlp.fc2": ["ff.net.2"],
        "adaLN_modulation.1": ["norm_out.linear"],
    }),
}
_BLOCK_KEY = re.compile(r"^(" + "|".join(map(re.escape, _DIFFUSERS_BLOCKS)) + r")\.(\d+)\.(.+)$")


def diffusers_names(key: str) -> list[str]:
    """The diffusers keys whose concatenation along dim 0 is the official transformer key `key`."""
    module, param = key.rsplit(".", 1)
    if module in _DIFFUSERS_MODULES:
        return [f"{_DIFFUSERS_MODULES[module]}.{param}"]
    match = _BLOCK_KEY.match(module)
    if match and match[3] in _DIFFUSERS_BLOCKS[match[1]][1]:
        prefix, names = _DIFFUSERS_BLOCKS[match[1]]
        return [f"{prefix}.{match[2]}.{name}.{param}" for name in names[match[3]]]
    raise ValueError(f"no diffusers name for the transformer key {key}")


def _swap_halves(tensor: Tensor) -> Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def transformer_from_diffusers(state_dict: dict[str, Tensor], official_keys: Iterable[str]) -> dict[str, Tensor]:
    """A diffusers `HunyuanVideoTransformer3DModel` state dict in the official layout (`state_dict` is emptied)."""
    out = {}
    for key in official_keys:
        names = diffusers_names(key)
        if missing := [name for name in names if name not in state_dict]:
            raise ValueError(f"diffusers checkpoint lacks {', '.join(missing)} (for the official key {key})")
        parts = [state_dict.pop(name) for name in names]
        tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        out[key] = _swap_halves(tensor) if key.startswith(_SWAPPED_HALVES + ".") else tensor
    if state_dict:
        raise ValueError(f"unexpected keys in the diffusers checkpoint: {_listing(state_dict)}")
    return out


def transformer_to_diffusers(state_dict: dict[str, Tensor], config: TransformerConfig) -> dict[str, Tensor]:
    """An official-layout state dict in diffusers' layout (fused tensors split, final scale/shift swapped)."""
    out = {}
    for key, tensor in state_dict.items():
        names = diffusers_names(key)
        if key.startswith(_SWAPPED_HALVES + "."):
            tensor = _swap_halves(tensor)
        if len(names) == 1:
            out[names[0]] = tensor
            continue
        # Q, K, V are hidden_size rows each; a fourth part (single blocks' MLP input) takes the rest.
        sizes = [config.hidden_size] * 3 + [tensor.shape[0] - 3 * config.hidden_size] * (len(names) - 3)
        out.update(zip(names, tensor.split(sizes, dim=0)))
    return out


def transformer_config_from_diffusers(cfg: dict) -> TransformerConfig:
    """The `TransformerConfig` of a diffusers `HunyuanVideoTransformer3DModel` config.json."""
    if cfg.get("qk_norm", "rms_norm") != "rms_norm":
        raise ValueError(f"qk_norm={cfg['qk_norm']!r} is not supported; HunyuanVideo uses 'rms_norm'")
    heads = cfg.get("num_attention_heads", 24)
    patch = cfg.get("patch_size", 2)
    return TransformerConfig(
        patch_size=(cfg.get("patch_size_t", 1), patch, patch),
        in_channels=cfg.get("in_channels", 16),
        out_channels=cfg.get("out_channels", 16),
        hidden_size=heads * cfg.get("attention_head_dim", 128),
        heads_num=heads,
        mlp_width_ratio=cfg.get("mlp_ratio", 4.0),
        mm_double_blocks_depth=cfg.get("num_layers", 20),
        mm_single_blocks_depth=cfg.get("num_single_layers", 40),
        rope_dim_list=tuple(cfg.get("rope_axes_dim", (16, 56, 56))),
        rope_theta=cfg.get("rope_theta", 256.0),
        guidance_embed=cfg.get("guidance_embeds", True),
        text_states_dim=cfg.get("text_embed_dim", 4096),
        text_states_dim_2=cfg.get("pooled_projection_dim", 768),
        refiner_depth=cfg.get("num_refiner_layers", 2),
        i2v_condition_type=cfg.get("image_condition_type"),
    )


def transformer_config_to_diffusers(config: TransformerConfig) -> dict:
    """The diffusers `HunyuanVideoTransformer3DModel` constructor arguments of `config`."""
    pt, ph, pw = config.patch_size
    if ph != pw or not (config.qkv_bias and config.qk_norm) or config.mlp_act_type != "gelu_tanh":
        raise ValueError("diffusers supports square patches, qkv_bias=True, qk_norm=True and gelu_tanh only")
    return dict(
        in_channels=config.in_channels, out_channels=config.out_channels, num_attention_heads=config.heads_num,
        attention_head_dim=config.hidden_size // config.heads_num, num_layers=config.mm_double_blocks_depth,
        num_single_layers=config.mm_single_blocks_depth, num_refiner_layers=config.refiner_depth,
        mlp_ratio=config.mlp_width_ratio, patch_size=ph, patch_size_t=pt, qk_norm="rms_norm",
        guidance_embeds=config.guidance_embed, text_embed_dim=config.text_states_dim,
        pooled_projection_dim=config.text_states_dim_2, rope_theta=config.rope_theta,
        rope_axes_dim=tuple(config.rope_dim_list), image_condition_type=config.i2v_condition_type,
    )


def infer_transformer_config(state_dict: dict[str, Tensor]) -> TransformerConfig:
    """The config of an official-layout state dict, read from its shapes; the head dim is taken to be 128 with
    rope_dim_list (16, 56, 56), as in every released HunyuanVideo model (pass a config otherwise)."""
    if "img_in.proj.weight" not in state_dict:
        raise ValueError("not an official HunyuanVideo transformer state dict: no img_in.proj.weight")

    def depth(prefix: str) -> int:
        return len({key[len(prefix):].split(".")[0] for key in state_dict if key.startswith(prefix)})

    hidden, in_channels, *patch = state_dict["img_in.proj.weight"].shape
    return TransformerConfig(
        patch_size=tuple(patch),
        in_channels=in_channels,
        out_channels=state_dict["final_layer.linear.weight"].shape[0] // math.prod(patch),
        hidden_size=hidden,
        heads_num=hidden // 128,
        mlp_width_ratio=state_dict["double_blocks.0.img_mlp.fc1.weight"].shape[0] / hidden,
        mm_double_blocks_depth=depth("double_blocks."),
        mm_single_blocks_depth=depth("single_blocks."),
        qkv_bias="double_blocks.0.img_attn_qkv.bias" in state_dict,
        qk_norm="double_blocks.0.img_attn_q_norm.weight" in state_dict,
        guidance_embed="guidance_in.mlp.0.weight" in state_dict,
        text_states_dim=state_dict["txt_in.input_embedder.weight"].shape[1],
        text_states_dim_2=state_dict["vector_in.in_layer.weight"].shape[1],
        refiner_depth=depth("txt_in.individual_token_refiner.blocks."),
    )


def transformer_config_file(path: str | Path) -> Path | None:
    """The config.json describing the transformer weights at `path`: diffusers' inside a folder, or one of
    `TransformerConfig` fields (it names `hidden_size`) beside a file, as in the official layout; else None."""
    path = Path(path)
    config_file = path / "config.json" if path.is_dir() else path.parent / "config.json"
    if not config_file.is_file():
        return None
    return config_file if path.is_dir() or "hidden_size" in json.loads(config_file.read_text()) else None


def transformer_config_for(path: str | Path, state_dict: dict[str, Tensor] | None = None) -> TransformerConfig:
    """The config of the transformer weights at `path`, from the first of: diffusers' config.json in a folder; a
    safetensors file's metadata (`save_transformer`); a config.json of `TransformerConfig` fields beside the file;
    the official checkpoint's shapes (`state_dict`, read from `path` when not given)."""
    path = Path(path)
    config_file = transformer_config_file(path)
    if path.is_dir():
        if config_file is None:
            raise ValueError(f"{path} is a folder without config.json: not a diffusers transformer folder")
        return transformer_config_from_diffusers(json.loads(config_file.read_text()))
    if path.suffix == ".safetensors" and "config" in (metadata := safetensors_metadata(path)):
        return config_from_dict(TransformerConfig, json.loads(metadata["config"]))
    if config_file is not None:
        return config_from_dict(TransformerConfig, json.loads(config_file.read_text()))
    return infer_transformer_config(read_state_dict(path) if state_dict is None else state_dict)


def load_transformer(path: str | Path, config: TransformerConfig | None = None, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None, quantize: str | None = None) -> HunyuanVideoTransformer:
    """Load a transformer (eval mode) from the official `.pt` (with or without `module`), a `.safetensors` file in the
    official layout, or a diffusers folder (config.json + safetensors shards). Without `config`, it comes from
    `transformer_config_for`.

    A weights file with an fp8 map beside it (`<name>_map.pt`, as the official `mp_rank_00_model_states_fp8.pt`
    has) loads with the blocks' linears in float8 (see `hunyuan_video.quant`); an fp8 file without its map is a
    ValueError. `quantize="fp8"` quantises a full-precision checkpoint the same way as it loads.
    """
    if quantize not in (None, "fp8"):
        raise ValueError(f"quantize must be None or 'fp8', got {quantize!r}")
    path = Path(path)
    if path.is_dir():
        config = config or transformer_config_for(path)
        model = build_on_meta(lambda: HunyuanVideoTransformer(config))
        state_dict = transformer_from_diffusers(read_state_dict(path), model.state_dict().keys())
        scales = None
    else:
        state_dict = read_state_dict(path)
        config = config or transformer_config_for(path, state_dict)
        model = build_on_meta(lambda: HunyuanVideoTransformer(config))
        scales = read_fp8_map(path)
        if scales is None and (has_fp8_tensors(state_dict) or path.stem.endswith("_fp8")):
            raise ValueError(f"{path} holds fp8 weights but its map of scales, {fp8_map_path(path).name}, is not "
                             "beside it: without the scales the weights give noise (download the map too)")
    if scales is not None or quantize == "fp8":
        check_state_dict(model, state_dict)
        names = fp8_linear_names(model)
        scales = quantize_state_dict(state_dict, names) if scales is None else scales
        add_fp8_scales(state_dict, scales, names, fp8_map_path(path))
        to_fp8_linears(model)
    return load_state_dict_into(model, state_dict, dtype, device).eval()


def save_transformer(model: HunyuanVideoTransformer, path: str | Path, fp8: bool = False) -> None:
    """Write the transformer in the official layout: safetensors with its config in the file's metadata, or, for a
    `.pt` path, the official `{"module": state_dict}`. With `fp8` the blocks' linears are written in float8
    (quantised first unless the model holds them so) and their scales as the fp8 map beside the file
    (`<name>_map.pt`), the pair `load_transformer` reads; a model holding fp8 weights is saved only that way."""
    path = Path(path)
    state_dict = model.state_dict()
    if has_fp8_linears(model) and not fp8:
        raise ValueError("this transformer holds fp8 weights: save it with fp8=True (weights and their map)")
    if fp8:
        if has_fp8_linears(model):
            state_dict, scales = split_fp8_scales(state_dict)
        else:
            state_dict = dict(state_dict)
            scales = quantize_state_dict(state_dict, fp8_linear_names(model))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(scales, fp8_map_path(path))
    if path.suffix == ".pt":
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"module": {key: value.detach().cpu() for key, value in state_dict.items()}}, path)
    else:
        save_state_dict(state_dict, path, metadata={"config": json.dumps(config_to_dict(model.config))})


# ---------------------------------------------------------------------------------------------------------------
# The VAE: the official `vae/pytorch_model.pt` + config.json, safetensors, or a diffusers folder (same key names)


def vae_config_from_json(cfg: dict) -> VAEConfig:
    """The `VAEConfig` of an official `AutoencoderKLCausal3D` or a diffusers `AutoencoderKLHunyuanVideo` config.json
    (diffusers says `temporal_compression_ratio` and has no tile sizes: the official 256 / 64 are kept)."""
    cfg = dict(cfg)
    if "temporal_compression_ratio" in cfg:
        cfg["time_compression_ratio"] = cfg.pop("temporal_compression_ratio")
    if isinstance(cfg.get("sample_size"), list):  # the official code allows (h, w); tiles are square
        cfg["sample_size"] = cfg["sample_size"][0]
    config = config_from_dict(VAEConfig, cfg)
    n = len(config.block_out_channels)
    # One name per block type: the official ones (diffusers' HunyuanVideo*Block3D are the same blocks).
    return dataclasses.replace(config, down_block_types=("DownEncoderBlockCausal3D",) * n,
                               up_block_types=("UpDecoderBlockCausal3D",) * n)


def _vae_config_beside(path: Path) -> VAEConfig:
    config_file = path / "config.json" if path.is_dir() else path.parent / "config.json"
    if not config_file.exists():
        raise ValueError(f"no VAE config for {path}: expected {config_file} (or pass config=VAEConfig(...))")
    return vae_config_from_json(json.loads(config_file.read_text()))


def load_vae(path: str | Path, config: VAEConfig | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str | None = None) -> CausalVAE:
    """Load a `CausalVAE` (eval mode) from the official `pytorch_model.pt` (or its folder) with `config.json`
    beside it, a `.safetensors` file (config from `save_vae`'s metadata or a `config.json` beside it), or a
    diffusers `AutoencoderKLHunyuanVideo` folder. Keys and shapes are checked strictly."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no VAE checkpoint at {path}")
    if path.is_dir() and (path / "pytorch_model.pt").exists():
        path = path / "pytorch_model.pt"
    if config is None and path.suffix == ".safetensors" and "config" in safetensors_metadata(path):
        config = config_from_dict(VAEConfig, json.loads(safetensors_metadata(path)["config"]))
    config = config or _vae_config_beside(path)
    state_dict = read_state_dict(path)
    if any(key.startswith("vae.") for key in state_dict):  # a training checkpoint holding more than the VAE
        state_dict = {key[4:]: value for key, value in state_dict.items() if key.startswith("vae.")}
    model = build_on_meta(lambda: CausalVAE(config))
    return load_state_dict_into(model, state_dict, dtype, device).eval()


def save_vae(model: CausalVAE, path: str | Path) -> None:
    """Write the VAE as safetensors (official key names), with its config in the file's metadata."""
    save_state_dict(model.state_dict(), path, metadata={"config": json.dumps(config_to_dict(model.config))})
