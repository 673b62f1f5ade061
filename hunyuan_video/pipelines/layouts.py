"""Model folders on disk: the official `ckpts/` and the diffusers layouts, found, described and counted.

The transformer's config comes from `checkpoint.transformer_config_for`, the one lookup `load_transformer` uses too.
An image-to-video folder (official `hunyuan-video-i2v-720p/` with `text_encoder_i2v/`, or diffusers' with an
`image_processor/`) holds the kind its transformer config names (`i2v_condition_type`, diffusers'
`image_condition_type`); when none is named (the official checkpoint has no config), the kind its channels tell:
33 input channels are latent concat, 16 the token-replace release. Shapes alone cannot tell token replace from
text-to-video; the folder can: an I2V folder holds only image-to-video models.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from hunyuan_video.checkpoint import open_safetensors, read_state_dict, transformer_config_file, transformer_config_for
from hunyuan_video.config import TransformerConfig, config_to_dict

OFFICIAL_T2V = "hunyuan-video-t2v-720p"
OFFICIAL_I2V = "hunyuan-video-i2v-720p"
# In order of preference: the full-precision weights, then the official fp8 ones (read with their _map.pt).
OFFICIAL_TRANSFORMER_FILES = ("mp_rank_00_model_states.pt", "mp_rank_00_model_states.safetensors",
                              "mp_rank_00_model_states_fp8.pt")
EXPECTED_LAYOUTS = (
    "official (ckpts/): hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt (or .safetensors, or "
    "mp_rank_00_model_states_fp8.pt with mp_rank_00_model_states_fp8_map.pt, "
    "optionally with a config.json of TransformerConfig fields), hunyuan-video-t2v-720p/vae/, text_encoder/, "
    "text_encoder_2/ (image-to-video: hunyuan-video-i2v-720p/ and text_encoder_i2v/ in their place); "
    "diffusers: model_index.json, transformer/, vae/, text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/, "
    "scheduler/ (image-to-video: and image_processor/)"
)
PARTS = ("transformer", "vae", "text_encoder", "text_encoder_2")


@dataclass(frozen=True)
class ModelFolder:
    """Where each part of a model folder lives, and which layout it follows ("official" or "diffusers")."""

    root: Path
    layout: str
    transformer: Path
    transformer_config: Path | None  # the config.json describing the transformer, when there is one
    vae: Path
    text_encoder: Path
    tokenizer: Path
    text_encoder_2: Path
    tokenizer_2: Path
    image_processor: Path | None = None  # the LLaVA image processor's folder of an image-to-video model, else None
    lora: Path | None = None  # the official I2V release's lora/ folder, when there is one

    @property
    def image_to_video(self) -> bool:
        """Whether the folder holds an image-to-video model."""
        return self.image_processor is not None

    @property
    def settings_folders(self) -> tuple[Path, ...]:
        """The folders whose `generate.json` set this model's sampling defaults, a later one's values over an earlier
        one's: the root, then in the official layout the model's own folder (`hunyuan-video-*-720p/`), which holds
        what differs between the two models one `ckpts/` may hold."""
        return (self.root, self.vae.parent) if self.layout == "official" else (self.root,)  # official: model/vae/


def find_model_folder(path: str | Path, image: bool | None = None) -> ModelFolder:
    """Detect the layout of a model folder: the official `ckpts/` (or its parent, or its hunyuan-video-t2v-720p/ or
    hunyuan-video-i2v-720p/), or diffusers'. An official `ckpts/` holding both models gives the image-to-video one
    for `image=True`, the text-to-video one for `image=False`, and is a ValueError for `image=None`."""
    root, names = _official_models(path)
    if len(names) == 2:
        if image is None:
            raise ValueError(f"{root} holds both {OFFICIAL_T2V}/ and {OFFICIAL_I2V}/: name the one to use")
        names = [OFFICIAL_I2V if image else OFFICIAL_T2V]
    if names:
        return _official_folder(root, names[0])
    names = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
    if (root / "model_index.json").is_file() or all((root / n).is_dir() for n in names[:3]):
        index = json.loads((root / "model_index.json").read_text()) if (root / "model_index.json").is_file() else {}
        i2v = "image_processor" in index or (root / "image_processor").is_dir()
        names += ("image_processor",) if i2v else ()
        missing = [n + "/" for n in names if not (root / n).is_dir()]
        if missing:
            raise ValueError(f"{root} looks like the diffusers layout but lacks {', '.join(missing)}")
        return ModelFolder(root, "diffusers", root / "transformer", transformer_config_file(root / "transformer"),
                           root / "vae", root / "text_encoder", root / "tokenizer", root / "text_encoder_2",
                           root / "tokenizer_2", root / "image_processor" if i2v else None)
    raise ValueError(f"{root} is not a HunyuanVideo model folder; expected one of these layouts: {EXPECTED_LAYOUTS}")


def model_choices(path: str | Path) -> list[bool | None]:
    """The `image` values of `find_model_folder` that pick each model a folder holds: `[False, True]` for an
    official `ckpts/` holding both models (text-to-video first), else `[None]` (its one model)."""
    return [False, True] if len(_official_models(path)[1]) == 2 else [None]


def _official_models(path: str | Path) -> tuple[Path, list[str]]:
    """The `ckpts/` folder that `path` names (itself, its parent holding it, or the one holding the model folder it
    is) and the official model folders in it (OFFICIAL_T2V and/or OFFICIAL_I2V; none for another layout)."""
    root = Path(path)
    if not root.exists():
        raise ValueError(f"model folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is a file, not a model folder (expected layouts: {EXPECTED_LAYOUTS})")
    if root.name in (OFFICIAL_T2V, OFFICIAL_I2V):  # the model folder inside ckpts/: its text encoders sit beside it
        return root.parent, [root.name]
    root = root / "ckpts" if any((root / "ckpts" / n).is_dir() for n in (OFFICIAL_T2V, OFFICIAL_I2V)) else root
    return root, [n for n in (OFFICIAL_T2V, OFFICIAL_I2V) if (root / n).is_dir()]


def _official_folder(root: Path, name: str) -> ModelFolder:
    """The official layout of model `name` (OFFICIAL_T2V or OFFICIAL_I2V) in `ckpts/` folder `root`."""
    official, i2v = root / name, name == OFFICIAL_I2V
    found = [official / "transformers" / file for file in OFFICIAL_TRANSFORMER_FILES]
    found = [f for f in found if f.is_file()]
    text_encoder = root / ("text_encoder_i2v" if i2v else "text_encoder")
    parts = {"vae": official / "vae", "text_encoder": text_encoder, "text_encoder_2": root / "text_encoder_2"}
    missing = [str(p.relative_to(root)) for p in parts.values() if not p.is_dir()]
    if not found:
        missing.insert(0, f"{name}/transformers/{OFFICIAL_TRANSFORMER_FILES[0]}")
    if missing:
        raise ValueError(f"{root} looks like the official layout but lacks {', '.join(missing)}")
    lora = official / "lora"
    return ModelFolder(root, "official", found[0], transformer_config_file(found[0]), parts["vae"], text_encoder,
                       text_encoder, parts["text_encoder_2"], parts["text_encoder_2"], text_encoder if i2v else None,
                       lora if i2v and lora.is_dir() else None)


def folder_transformer_config(folder: ModelFolder) -> TransformerConfig:
    """The transformer config of a model folder, its image-to-video kind included (see the module docstring)."""
    config = transformer_config_for(folder.transformer)
    if folder.image_to_video and config.i2v_condition_type is None:
        concat = config.in_channels == 2 * config.out_channels + 1
        config = replace(config, i2v_condition_type="latent_concat" if concat else "token_replace")
    if not folder.image_to_video and config.i2v_condition_type is not None:
        raise ValueError(f"{folder.root}: its transformer is an image-to-video model ({config.i2v_condition_type}), "
                         "but the folder has no LLaVA image processor (image_processor/ or text_encoder_i2v/)")
    return config


def model_kind(config: TransformerConfig) -> str:
    """The task a transformer config is for, in words: "text-to-video" or "image-to-video (<condition type>)"."""
    return "text-to-video" if config.i2v_condition_type is None else f"image-to-video ({config.i2v_condition_type})"


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U8": "uint8"}


def weight_summary(path: Path) -> dict[str, int]:
    """Parameter counts per dtype of a weights file or folder, read from safetensors headers or memory maps."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(path.glob("*.safetensors")) or sorted(f for ext in ("*.pt", "*.bin") for f in path.glob(ext))
    counts: dict[str, int] = {}
    for file in files:
        if file.suffix == ".safetensors":
            with open_safetensors(file) as handle:
                shapes = [(handle.get_slice(k).get_shape(), handle.get_slice(k).get_dtype()) for k in handle.keys()]
            sizes = [(math.prod(shape), _SAFETENSORS_DTYPES.get(dtype, dtype.lower())) for shape, dtype in shapes]
        else:
            sizes = [(t.numel(), str(t.dtype).removeprefix("torch.")) for t in read_state_dict(file).values()]
        for numel, dtype in sizes:
            counts[dtype] = counts.get(dtype, 0) + numel
    return counts


def describe_model_folder(path: str | Path, image: bool | None = None) -> dict:
    """What a model folder holds: its layout, its kind (`model_kind`), and per part the path, the config and the
    parameters per dtype. `image` picks the model of an official `ckpts/` holding both (see `find_model_folder`)."""
    folder = find_model_folder(path, image)
    transformer_config = folder_transformer_config(folder)
    parts = {}
    for name in PARTS:
        part: Path = getattr(folder, name)
        if name == "transformer":
            config = config_to_dict(transformer_config)
        else:
            config = json.loads((part / "config.json").read_text()) if (part / "config.json").is_file() else None
        parts[name] = {"path": str(part), "config": config, "parameters": weight_summary(part)}
    return {"root": str(folder.root), "layout": folder.layout, "kind": model_kind(transformer_config),
            "parts": parts}
