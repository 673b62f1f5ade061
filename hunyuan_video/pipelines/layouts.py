"""Model folders on disk: the official `ckpts/` and the diffusers layouts, found, described and counted.

The transformer's config comes from `checkpoint.transformer_config_for`, the one lookup `load_transformer` uses too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from hunyuan_video.checkpoint import open_safetensors, read_state_dict, transformer_config_file, transformer_config_for
from hunyuan_video.config import config_to_dict

OFFICIAL_T2V = "hunyuan-video-t2v-720p"
# In order of preference: the full-precision weights, then the official fp8 ones (read with their _map.pt).
OFFICIAL_TRANSFORMER_FILES = ("mp_rank_00_model_states.pt", "mp_rank_00_model_states.safetensors",
                              "mp_rank_00_model_states_fp8.pt")
EXPECTED_LAYOUTS = (
    "official (ckpts/): hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt (or .safetensors, or "
    "mp_rank_00_model_states_fp8.pt with mp_rank_00_model_states_fp8_map.pt, "
    "optionally with a config.json of TransformerConfig fields), hunyuan-video-t2v-720p/vae/, text_encoder/, "
    "text_encoder_2/; "
    "diffusers: model_index.json, transformer/, vae/, text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/, "
    "scheduler/"
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


def find_model_folder(path: str | Path) -> ModelFolder:
    """Detect the layout of a model folder: the official `ckpts/` (or its parent, or its hunyuan-video-t2v-720p/),
    or diffusers'."""
    root = Path(path)
    if not root.exists():
        raise ValueError(f"model folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is a file, not a model folder (expected layouts: {EXPECTED_LAYOUTS})")
    if (root / "ckpts" / OFFICIAL_T2V).is_dir():
        root = root / "ckpts"
    elif root.name == OFFICIAL_T2V:  # the model folder inside ckpts/: its text encoders sit beside it
        root = root.parent
    official = root / OFFICIAL_T2V
    if official.is_dir():
        found = [official / "transformers" / name for name in OFFICIAL_TRANSFORMER_FILES]
        found = [f for f in found if f.is_file()]
        parts = {"vae": official / "vae", "text_encoder": root / "text_encoder",
                 "text_encoder_2": root / "text_encoder_2"}
        missing = [str(p.relative_to(root)) for p in parts.values() if not p.is_dir()]
        if not found:
            missing.insert(0, f"{OFFICIAL_T2V}/transformers/{OFFICIAL_TRANSFORMER_FILES[0]}")
        if missing:
            raise ValueError(f"{root} looks like the official layout but lacks {', '.join(missing)}")
        return ModelFolder(root, "official", found[0], transformer_config_file(found[0]), parts["vae"],
                           parts["text_encoder"], parts["text_encoder"], parts["text_encoder_2"],
                           parts["text_encoder_2"])
    names = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
    if (root / "model_index.json").is_file() or all((root / n).is_dir() for n in names[:3]):
        missing = [n + "/" for n in names if not (root / n).is_dir()]
        if missing:
            raise ValueError(f"{root} looks like the diffusers layout but lacks {', '.join(missing)}")
        return ModelFolder(root, "diffusers", root / "transformer", transformer_config_file(root / "transformer"),
                           root / "vae", root / "text_encoder", root / "tokenizer", root / "text_encoder_2",
                           root / "tokenizer_2")
    raise ValueError(f"{root} is not a HunyuanVideo model folder; expected one of these layouts: {EXPECTED_LAYOUTS}")


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


def describe_model_folder(path: str | Path) -> dict:
    """What a model folder holds: its layout, and per part the path, the config and the parameters per dtype."""
    folder = find_model_folder(path)
    parts = {}
    for name in PARTS:
        part: Path = getattr(folder, name)
        if name == "transformer":
            config = config_to_dict(transformer_config_for(part))
        else:
            config = json.loads((part / "config.json").read_text()) if (part / "config.json").is_file() else None
        parts[name] = {"path": str(part), "config": config, "parameters": weight_summary(part)}
    return {"root": str(folder.root), "layout": folder.layout, "parts": parts}
