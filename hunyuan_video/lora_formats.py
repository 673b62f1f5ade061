"""LoRA files in the layouts the community shares, read into and written from official module names.

Read, detected from the keys:
- diffusers / PEFT: `transformer.transformer_blocks.0.attn.to_q.lora_A.weight` (split q/k/v and single blocks'
  to_q/to_k/to_v/proj_mlp, mapped onto the fused official layer exactly);
- original-key PEFT: `diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight` (or a `transformer.` prefix);
  PEFT's own `base_model.model.` prefix is taken off as well;
- kohya / musubi-tuner: `lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`, `.lora_up.weight`, `.alpha`.
An `.alpha` key (any layout) or the file's `lora_alpha` metadata sets alpha; without either, alpha is the rank.

A fused layer's pair from split parts: `A = cat(A_i)` and `B` block-diagonal with `B_i (alpha_i / r_i)` (rows of parts
the file leaves out stay zero), so `B A x` is exactly the split layers' updates; when every part shares one `A` and
one scale, `B = cat(B_i)` over that `A` instead (same rank, so fused -> diffusers -> fused keeps the pair).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import Tensor

from hunyuan_video.checkpoint import (
    _DIFFUSERS_BLOCKS,
    _DIFFUSERS_MODULES,
    _listing,
    diffusers_names,
    read_state_dict,
    safetensors_metadata,
    save_state_dict,
)
from hunyuan_video.lora import LoraWeight

FORMATS = ("original", "diffusers", "kohya")
_KEY = re.compile(r"^(.+)\.(lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha)$")
_PREFIXES = ("base_model.model.", "transformer.", "diffusion_model.")  # PEFT, diffusers, ComfyUI
_KOHYA_PREFIXES = ("lora_unet_", "lora_transformer_")
# diffusers' AdaLayerNormContinuous chunks (scale, shift); the official final layer chunks (shift, scale).
_SWAPPED_HALVES = "final_layer.adaLN_modulation.1"
_MLP_RATIO = 4.0  # HunyuanVideo's: the rows of single blocks' MLP input when a file gives no model to read them from


def split_rows(module: str, out_features: int, in_features: int) -> list[int]:
    """The rows of each diffusers part of an official linear (one part unless it is fused): QKV are `in_features`
    (the hidden size) rows each, a fourth part (single blocks' MLP input) the rest."""
    parts = len(diffusers_names(module + ".weight"))
    return [out_features] if parts == 1 else [in_features] * 3 + [out_features - 3 * in_features] * (parts - 3)


def _swap(up: Tensor) -> Tensor:
    first, second = up.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _names(shapes: dict[str, tuple[int, int]]) -> dict[str, tuple[str, int]]:
    """Every name a layout may give a targetable module -> (official module, diffusers part index or -1 for whole)."""
    names: dict[str, tuple[str, int]] = {}
    for module in shapes:
        parts = [name.rsplit(".", 1)[0] for name in diffusers_names(module + ".weight")]
        for alias, target in [(module, (module, -1)), *((part, (module, i)) for i, part in enumerate(parts))]:
            names[alias] = target
            names[alias.replace(".", "_")] = target
    return names


def _module_name(module: str) -> str:
    for prefix in _KOHYA_PREFIXES:
        if module.startswith(prefix):
            return module[len(prefix):]
    for prefix in _PREFIXES:
        if module.startswith(prefix):
            module = module[len(prefix):]
    return module


def parse_lora(state_dict: dict[str, Tensor], shapes: dict[str, tuple[int, int]],
               metadata: dict[str, str] | None = None, ignore_unknown: bool = False,
               source: str = "the LoRA file") -> dict[str, LoraWeight]:
    """The pairs of a LoRA state dict in any layout above, by official module name, for a model whose linears have
    `shapes` (`lora.linear_shapes`). Unknown keys are an error listing a few (a warning with their count when
    `ignore_unknown`); a file with no LoRA keys, a pair with mismatched ranks or a shape that does not fit its layer is
    an error."""
    groups: dict[str, dict[str, Tensor]] = {}
    others = []
    for key, tensor in state_dict.items():
        if match := _KEY.match(key):
            kind = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}.get(match[2], match[2])
            groups.setdefault(match[1], {})[kind] = tensor
        else:
            others.append(key)
    if not groups:
        raise ValueError(f"{source} is not a LoRA file: no lora_A/lora_B or lora_down/lora_up keys "
                         f"(it holds e.g. {_listing(state_dict, 3)})")
    names = _names(shapes)
    default_alpha = float(metadata["lora_alpha"]) if metadata and "lora_alpha" in metadata else None
    parts: dict[str, dict[int, LoraWeight]] = {}
    for group, tensors in groups.items():
        target = names.get(_module_name(group))
        if target is None:
            others.extend(f"{group}.{kind}" for kind in tensors)
            continue
        if "lora_A.weight" not in tensors or "lora_B.weight" not in tensors:
            raise ValueError(f"{source}: {group} has {' and '.join(sorted(tensors))} but not both lora_A (down) and "
                             "lora_B (up)")
        down, up = tensors["lora_A.weight"].float(), tensors["lora_B.weight"].float()
        if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
            raise ValueError(f"{source}: {group} has A {tuple(down.shape)} and B {tuple(up.shape)}: the ranks "
                             "(A's rows, B's columns) must match")
        alpha = float(tensors["alpha"]) if "alpha" in tensors else default_alpha
        module, index = target
        given = parts.setdefault(module, {})
        if index in given or (given and (-1 in given or index == -1)):
            raise ValueError(f"{source} gives {module} twice (whole and as its diffusers parts, or a part repeated)")
        given[index] = LoraWeight(down, up, down.shape[0] if alpha is None else alpha)
    if others:
        message = f"{source} has {len(others)} keys that match no layer of the transformer: {_listing(others, 5)}"
        if not ignore_unknown:
            raise ValueError(message + " (ignore them with ignore_unknown=True / --lora-ignore-unknown)")
        warnings.warn(message + "; they are ignored", stacklevel=2)
    return {module: _fuse_parts(module, pieces, shapes[module], source) for module, pieces in parts.items()}


def _fuse_parts(module: str, pieces: dict[int, LoraWeight], shape: tuple[int, int], source: str) -> LoraWeight:
    out_features, in_features = shape
    rows = split_rows(module, out_features, in_features)
    for index, pair in pieces.items():
        want = (out_features if index == -1 else rows[index], in_features)
        if (pair.up.shape[0], pair.down.shape[1]) != want:
            part = module if index == -1 else diffusers_names(module + ".weight")[index].rsplit(".", 1)[0]
            raise ValueError(f"{source}: the pair for {part} maps {pair.down.shape[1]} -> {pair.up.shape[0]} features; "
                             f"the layer maps {want[1]} -> {want[0]}")
    pair = pieces[-1] if -1 in pieces else _stack(pieces, rows)
    swap = module == _SWAPPED_HALVES and -1 not in pieces
    return LoraWeight(pair.down, _swap(pair.up) if swap else pair.up, pair.alpha)


def _stack(pieces: dict[int, LoraWeight], rows: list[int]) -> LoraWeight:
    first = next(iter(pieces.values()))
    shared = len(pieces) == len(rows) and all(
        torch.equal(p.down, first.down) and p.alpha / p.rank == first.alpha / first.rank for p in pieces.values())
    if shared:
        return LoraWeight(first.down, torch.cat([pieces[i].up for i in range(len(rows))]), first.alpha)
    order = sorted(pieces)
    rank = sum(pieces[i].rank for i in order)
    up = torch.zeros(sum(rows), rank)
    column = 0
    for i in order:
        start = sum(rows[:i])
        up[start:start + rows[i], column:column + pieces[i].rank] = pieces[i].up * (pieces[i].alpha / pieces[i].rank)
        column += pieces[i].rank
    return LoraWeight(torch.cat([pieces[i].down for i in order]), up, float(rank))


def read_lora(path: str | Path, shapes: dict[str, tuple[int, int]], ignore_unknown: bool = False
              ) -> dict[str, LoraWeight]:
    """The pairs of the LoRA file at `path` (safetensors or .pt) by official module name (see `parse_lora`)."""
    path = Path(path)
    metadata = safetensors_metadata(path) if path.suffix == ".safetensors" and path.is_file() else {}
    return parse_lora(read_state_dict(path), shapes, metadata, ignore_unknown, source=str(path))


def file_shapes(state_dict: dict[str, Tensor]) -> dict[str, tuple[int, int]]:
    """(out, in) of every official linear a LoRA state dict names, read from the file alone (to convert it without a
    model): `in` from the layer's A, `out` from its B, or for a fused layer 3 x the hidden size (its `in`) plus, in
    single blocks, the MLP rows at HunyuanVideo's MLP ratio of 4."""
    groups = {match[1]: match for key in state_dict if (match := _KEY.match(key))}
    indices = {int(number) for group in groups for number in re.findall(r"(?<=[._])\d+(?=[._])", group)}
    candidates = list(_DIFFUSERS_MODULES)
    for block, (_, modules) in _DIFFUSERS_BLOCKS.items():
        candidates += [f"{block}.{i}.{module}" for i in sorted(indices) for module in modules]
    names = _names(dict.fromkeys(candidates, (0, 0)))
    shapes: dict[str, tuple[int, int]] = {}
    for group in groups:
        down = state_dict.get(f"{group}.lora_A.weight", state_dict.get(f"{group}.lora_down.weight"))
        up = state_dict.get(f"{group}.lora_B.weight", state_dict.get(f"{group}.lora_up.weight"))
        if (target := names.get(_module_name(group))) is None or down is None or up is None or down.ndim != 2:
            continue  # parse_lora reports it
        module, index = target
        parts = len(diffusers_names(module + ".weight"))
        hidden = down.shape[1]
        rows = up.shape[0] if index == -1 or parts == 1 else 3 * hidden + int(_MLP_RATIO * hidden) * (parts - 3)
        shapes[module] = (rows, hidden)
    return shapes


def lora_to_state_dict(weights: dict[str, LoraWeight], layout: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and safetensors metadata of `weights` in `layout`: "original" (original-key PEFT with
    `lora_alpha` and `rank` in the metadata, or `.alpha` keys when they differ between layers), "kohya"
    (`lora_unet_*` with `.alpha` keys) or "diffusers" (PEFT keys over split q/k/v; each alpha folded into B, as
    diffusers reads no alpha)."""
    if layout not in FORMATS:
        raise ValueError(f"unknown LoRA layout {layout!r}: expected one of {', '.join(FORMATS)}")
    out: dict[str, Tensor] = {}
    alphas = {pair.alpha for pair in weights.values()}
    ranks = {pair.rank for pair in weights.values()}
    metadata = {"format": "pt", "lora_layout": layout}
    for module, pair in sorted(weights.items()):
        if layout == "kohya":
            base = "lora_unet_" + module.replace(".", "_")
            out |= {f"{base}.lora_down.weight": pair.down, f"{base}.lora_up.weight": pair.up,
                    f"{base}.alpha": torch.tensor(pair.alpha)}
        elif layout == "original":
            base = "diffusion_model." + module
            out |= {f"{base}.lora_A.weight": pair.down, f"{base}.lora_B.weight": pair.up}
            if len(alphas) > 1:
                out[f"{base}.alpha"] = torch.tensor(pair.alpha)
        else:
            names = [name.rsplit(".", 1)[0] for name in diffusers_names(module + ".weight")]
            up = pair.up * (pair.alpha / pair.rank)
            up = _swap(up) if module == _SWAPPED_HALVES else up
            rows = split_rows(module, pair.up.shape[0], pair.down.shape[1])
            for name, part in zip(names, up.split(rows)):
                out |= {f"transformer.{name}.lora_A.weight": pair.down.clone(),
                        f"transformer.{name}.lora_B.weight": part.clone()}
    if layout == "original" and len(alphas) == 1:
        metadata["lora_alpha"] = str(alphas.pop())
    if len(ranks) == 1:
        metadata["rank"] = str(ranks.pop())
    return out, metadata


def save_lora(weights: dict[str, LoraWeight], path: str | Path, layout: str = "original") -> None:
    """Write `weights` as a safetensors LoRA file in `layout` (see `lora_to_state_dict`)."""
    tensors, metadata = lora_to_state_dict(weights, layout)
    save_state_dict(tensors, path, metadata)


def convert_lora(src: str | Path, dst: str | Path, layout: str) -> None:
    """Rewrite the LoRA file `src` in `layout` at `dst` (shapes read from the file itself, see `file_shapes`)."""
    src = Path(src)
    state_dict = read_state_dict(src)
    metadata = safetensors_metadata(src) if src.suffix == ".safetensors" else {}
    weights = parse_lora(state_dict, file_shapes(state_dict), metadata, source=str(src))
    save_lora(weights, dst, layout)
