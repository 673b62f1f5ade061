"""Growing a trained model into a bigger one that starts where it left off.

`grow_depth` appends transformer blocks that start as the identity: the same function exactly. `grow_width` widens
the transformer's hidden size (more heads of the same size): the old channels keep their weights, the new ones start
random but neither read nor write the old ones, so the only change is in the LayerNorms, whose mean and variance
now run over zeros too; the modulation's scales absorb the variance's part of that (exact when a token's mean is
zero). `grow_vae_width` widens every block of the VAE by one factor, and its GroupNorms' group count with it: a
GroupNorm's groups then keep their old members, so the wider VAE computes the same function exactly; `part`
widens the encoder or the decoder alone. `narrow_vae_encoder` undoes a widening of an encoder that was not trained
after it (its new channels feed nothing), exactly.

`grow_transformer_file`, `grow_vae_folder` and `narrow_vae_encoder_folder` do the same from weights on disk to weights
on disk (`hunyuan-video tiny grow-transformer | grow-vae | narrow-vae-encoder`); a training config then starts from
the result with `init_from`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import torch
from torch import Tensor, nn

from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.models.vae import CausalVAE


def _zero_gates(modulation: nn.Module, gates: tuple[int, ...]) -> None:
    """Zero the rows of `modulation.linear` that produce the chunks `gates` (so those gates are 0 for any input)."""
    rows = modulation.linear.out_features // modulation.factor
    with torch.no_grad():
        for g in gates:
            modulation.linear.weight[g * rows : (g + 1) * rows] = 0.0
            modulation.linear.bias[g * rows : (g + 1) * rows] = 0.0


def grow_depth(model: HunyuanVideoTransformer, double: int, single: int) -> HunyuanVideoTransformer:
    """A deeper copy of `model` that computes the same function: `double` dual-stream and `single` single-stream blocks.

    Each new block, appended after the old ones of its kind, copies the weights of an old block (block i of the new
    ones copies old block i mod n) with the gates of its residual branches zeroed, so it starts as the identity; the
    gates' gradients are not zero, so training opens them (the adaLN-Zero start of DiT, on trained weights).
    """
    old_double, old_single = len(model.double_blocks), len(model.single_blocks)
    if double < old_double or single < old_single:
        raise ValueError(f"grow_depth can only add blocks: the model has {old_double} double and {old_single} single "
                         f"blocks, asked for {double} and {single}")
    if (double > old_double and old_double == 0) or (single > old_single and old_single == 0):
        raise ValueError("grow_depth copies existing blocks: a stack with no blocks cannot grow")
    config = replace(model.config, mm_double_blocks_depth=double, mm_single_blocks_depth=single)
    grown = HunyuanVideoTransformer(config)
    state = model.state_dict()
    for i in range(old_double, double):
        state.update({f"double_blocks.{i}.{k}": v for k, v in model.double_blocks[i % old_double].state_dict().items()})
    for i in range(old_single, single):
        state.update({f"single_blocks.{i}.{k}": v for k, v in model.single_blocks[i % old_single].state_dict().items()})
    grown.load_state_dict(state, strict=True)
    for block in grown.double_blocks[old_double:]:
        _zero_gates(block.img_mod, (2, 5))
        _zero_gates(block.txt_mod, (2, 5))
    for block in grown.single_blocks[old_single:]:
        _zero_gates(block.modulation, (2,))
    return grown.to(next(model.parameters()).dtype)


# How each weight's rows and columns index the hidden size: (pattern, rows, columns, writes a residual stream).
# Kinds: "hidden"; "mlp" (the MLP's inner width); "chunksK" (K modulation vectors); "qkv"; "linear1" (q, k, v, then
# the MLP input of a single-stream block); "linear2" (attention, then MLP, into it); None: not sized by the hidden
# size. A stream writer's rows for the new channels start at zero, so the new channels of the video, text and joint
# streams hold zeros until training moves them.
_AXES: tuple[tuple[str, str | None, str | None, bool], ...] = (
    (r"img_in\.proj", "hidden", None, True),
    (r"txt_in\.input_embedder", "hidden", None, True),
    (r"\.mlp\.0", "hidden", None, False),  # timestep / guidance embedders
    (r"\.mlp\.2", "hidden", "hidden", False),
    (r"c_embedder\.linear_1|vector_in\.in_layer", "hidden", None, False),
    (r"c_embedder\.linear_2|vector_in\.out_layer", "hidden", "hidden", False),
    (r"refiner\.blocks\.\d+\.norm[12]", "hidden", None, False),
    (r"attn_qkv", "qkv", "hidden", False),
    (r"attn_proj", "hidden", "hidden", True),
    (r"mlp\.fc1", "mlp", "hidden", False),
    (r"mlp\.fc2", "hidden", "mlp", True),
    (r"(refiner\.blocks\.\d+|final_layer)\.adaLN_modulation\.1", "chunks2", "hidden", False),
    (r"_mod\.linear", "chunks6", "hidden", False),
    (r"\.modulation\.linear", "chunks3", "hidden", False),
    (r"linear1", "linear1", "hidden", False),
    (r"linear2", "hidden", "linear2", True),
    (r"final_layer\.linear", None, "hidden", False),
    (r"q_norm|k_norm", None, None, False),
)
# The modulation chunks that scale a LayerNorm's output (the shifts and gates do not see its statistics).
_NORM_SCALES = ((r"_mod\.linear", (1, 4)), (r"\.modulation\.linear", (1,)), (r"final_layer\.adaLN", (1,)))


def _axes(name: str) -> tuple[str | None, str | None, bool]:
    for pattern, rows, cols, writes in _AXES:
        if re.search(pattern, name):
            return rows, cols, writes
    raise KeyError(f"grow_width does not know how {name!r} is laid out")


def _old_positions(kind: str, old: int, new: int, ratio: float) -> Tensor:
    """Where the old model's indices of an axis of `kind` sit in the wider model's axis."""
    mlp_old = int(old * ratio)
    hidden = torch.arange(old)
    if kind == "hidden":
        return hidden
    if kind == "mlp":
        return torch.arange(mlp_old)
    if kind.startswith("chunks") or kind == "qkv":
        return torch.cat([c * new + hidden for c in range(3 if kind == "qkv" else int(kind[6:]))])
    if kind == "linear1":
        return torch.cat([*(c * new + hidden for c in range(3)), 3 * new + torch.arange(mlp_old)])
    if kind == "linear2":
        return torch.cat([hidden, new + torch.arange(mlp_old)])
    raise KeyError(kind)


def grow_width(model: HunyuanVideoTransformer, hidden_size: int, heads_num: int, seed: int = 0
               ) -> HunyuanVideoTransformer:
    """A wider copy of `model`: `hidden_size` channels in `heads_num` heads of the same head size (seeded init).

    The old weights keep their places; the new rows are a fresh model's initialisation (seed `seed`), except that
    nothing new feeds an old channel and the streams' new channels start at zero. Every LayerNorm then sees
    `hidden_size - old` extra zeros: for a token of mean 0 that divides its standard deviation by
    sqrt(hidden_size / old), which the modulation's scales (and the refiner's LayerNorm weights) undo; a token's
    non-zero mean leaves a small difference, which training removes.
    """
    old = model.config
    head_dim = old.hidden_size // old.heads_num
    if hidden_size < old.hidden_size or hidden_size != heads_num * head_dim:
        raise ValueError(f"grow_width keeps the head size ({head_dim}) and can only add heads: hidden_size must be "
                         f"heads_num * {head_dim} >= {old.hidden_size}, got {hidden_size} with {heads_num} heads")
    config = replace(old, hidden_size=hidden_size, heads_num=heads_num)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = HunyuanVideoTransformer(config)
    state = grown.state_dict()
    keep = math.sqrt(old.hidden_size / hidden_size)  # the LayerNorms' outputs grow by 1 / keep
    ratio = old.mlp_width_ratio
    with torch.no_grad():
        for name, value in model.state_dict().items():
            rows_kind, cols_kind, writes = _axes(name)
            new = state[name]
            rows = (torch.arange(value.shape[0]) if rows_kind is None
                    else _old_positions(rows_kind, old.hidden_size, hidden_size, ratio))
            if writes:
                new.zero_()
            if value.ndim == 1:
                new[rows] = value.to(new.dtype)
            else:
                cols = (torch.arange(value.shape[1]) if cols_kind is None
                        else _old_positions(cols_kind, old.hidden_size, hidden_size, ratio))
                new[rows] = 0.0  # nothing new feeds an old output
                new[rows[:, None], cols[None, :]] = value.to(new.dtype)
            if re.search(r"refiner\.blocks\.\d+\.norm[12]\.weight", name):
                new[rows] *= keep
            for pattern, chunks in _NORM_SCALES:
                if re.search(pattern, name):
                    for c in chunks:
                        scale_rows = c * hidden_size + torch.arange(old.hidden_size)
                        new[scale_rows] = new[scale_rows] * keep + ((keep - 1.0) if value.ndim == 1 else 0.0)
    grown.load_state_dict(state, strict=True)
    return grown.to(next(model.parameters()).dtype)


def _one_factor(block_out_channels: Sequence[int], old_widths: Sequence[int], old_groups: int, wider: bool
                ) -> tuple[tuple[int, ...], int]:
    """`block_out_channels` as a tuple and the GroupNorm group count that keeps every group's size, when the widths
    are `old_widths` times one factor (>= 1 when `wider`, <= 1 otherwise) that leaves whole groups; else a
    ValueError."""
    widths = tuple(int(c) for c in block_out_channels)
    factors = {Fraction(n, o) for n, o in zip(widths, old_widths)}
    factor = factors.pop() if len(factors) == 1 and len(widths) == len(old_widths) else None
    if factor is None or (factor < 1 if wider else factor > 1) or (old_groups * factor).denominator != 1:
        verb, kind = ("grow_vae_width multiplies", "widening") if wider else ("narrow_vae_encoder divides", "narrowing")
        raise ValueError(f"{verb} every block's channels and the norm_num_groups ({old_groups}) by one factor"
                         f"{' >= 1' if wider else ''}: {list(widths)} is not such a {kind} of {list(old_widths)}")
    return widths, int(old_groups * factor)


VAE_GROW_PARTS = ("both", "encoder", "decoder")  # what `grow_vae_width` widens


def grow_vae_width(vae: CausalVAE, block_out_channels: Sequence[int], seed: int = 0, part: str = "both"
                   ) -> CausalVAE:
    """A wider copy of `vae` with `block_out_channels` (every block widened by the same factor) that computes the
    same encode and decode. `part` is "both", or "encoder" / "decoder" to widen that side alone (the other is
    copied as it is; a decoder then keeps widths of its own, `decoder_block_out_channels`).

    `norm_num_groups` grows by the factor too, so each GroupNorm group keeps its size and its old channels. Every
    weight keeps its old entries in its leading rows and columns; the new rows are a fresh VAE's initialisation
    (seed `seed`) and the new columns of old rows are zero, so nothing new feeds an old channel. In the mid-block's
    single-head attention the new query channels start at zero and the old ones are scaled by sqrt(new / old),
    which undoes the wider head's 1 / sqrt(channels). The latent channels do not change, nor does the latent space.
    """
    if part not in VAE_GROW_PARTS:
        raise ValueError(f"part must be one of {VAE_GROW_PARTS}, got {part!r}")
    old = vae.config
    if old.decoder_block_out_channels is not None and part == "both":
        raise ValueError("this VAE's decoder has widths of its own (decoder_block_out_channels): widen one side at "
                         "a time, part='encoder' or part='decoder'")
    old_widths, old_groups = (old.decoder_widths, old.decoder_groups) if part == "decoder" else (
        old.block_out_channels, old.norm_num_groups)
    widths, groups = _one_factor(block_out_channels, old_widths, old_groups, wider=True)
    if part == "decoder":
        config = replace(old, decoder_block_out_channels=widths, decoder_norm_num_groups=groups)
    elif part == "encoder":
        config = replace(old, block_out_channels=widths, norm_num_groups=groups,
                         decoder_block_out_channels=old.decoder_widths, decoder_norm_num_groups=old.decoder_groups)
    else:
        config = replace(old, block_out_channels=widths, norm_num_groups=groups)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = CausalVAE(config)
    state = grown.state_dict()
    with torch.no_grad():
        for name, value in vae.state_dict().items():
            new = state[name]
            rows = value.shape[0]
            if value.ndim > 1:
                new[:rows] = 0.0  # nothing new feeds an old output
            new[tuple(slice(0, n) for n in value.shape)] = value.to(new.dtype)
            if re.search(r"attentions\.\d+\.to_q\.", name):
                new[rows:] = 0.0
                new[:rows] *= math.sqrt(new.shape[0] / rows)
    grown.load_state_dict(state, strict=True)
    return grown.to(next(vae.parameters()).dtype)


def narrow_vae_encoder(vae: CausalVAE, block_out_channels: Sequence[int]) -> CausalVAE:
    """A copy of `vae` whose encoder keeps only the leading `block_out_channels` of each block (its GroupNorms' group
    count shrunk by the same factor), the decoder as it is: the undoing of `grow_vae_width` for an encoder that was
    not trained after it, whose new channels feed nothing.

    Exact, and checked: a dropped channel must feed no kept one (zero columns in every kept row, zero query rows in
    the mid-block's attention, whose kept query rows are scaled back by sqrt(new / old)); otherwise a ValueError.
    """
    old = vae.config
    widths, groups = _one_factor(block_out_channels, old.block_out_channels, old.norm_num_groups, wider=False)
    config = replace(old, block_out_channels=widths, norm_num_groups=groups,
                     decoder_block_out_channels=old.decoder_widths, decoder_norm_num_groups=old.decoder_groups)
    narrow = CausalVAE(config)
    state = narrow.state_dict()
    with torch.no_grad():
        for name, value in vae.state_dict().items():
            new = state[name]
            kept = value[tuple(slice(0, n) for n in new.shape)]
            if value.ndim > 1 and value[: new.shape[0], new.shape[1] :].any():
                raise ValueError(f"narrow_vae_encoder would change the encoder: dropped channels feed {name}")
            if re.search(r"attentions\.\d+\.to_q\.", name):
                if value[new.shape[0] :].any():
                    raise ValueError(f"narrow_vae_encoder would change the encoder's attention: {name} has non-zero "
                                     "dropped rows")
                kept = kept * math.sqrt(new.shape[0] / value.shape[0])
            new.copy_(kept)
    narrow.load_state_dict(state, strict=True)
    return narrow.to(next(vae.parameters()).dtype)


def grow_transformer_file(src: str | Path, dst: str | Path, depth: tuple[int, int] | None = None,
                          width: tuple[int, int] | None = None, seed: int = 0) -> HunyuanVideoTransformer:
    """Load the transformer at `src` in float32, deepen it to `depth` = (double, single) blocks (`grow_depth`), then
    widen it to `width` = (hidden_size, heads_num) (`grow_width`, seeded by `seed`), and save it to `dst`
    (a .safetensors file). Returns the grown model."""
    from hunyuan_video.checkpoint import load_transformer, save_transformer

    if depth is None and width is None:
        raise ValueError("nothing to grow: give a depth (double, single) and/or a width (hidden_size, heads_num)")
    model = load_transformer(src, dtype=torch.float32)
    if depth is not None:
        model = grow_depth(model, *depth)
    if width is not None:
        model = grow_width(model, *width, seed=seed)
    save_transformer(model, dst)
    return model


def grow_vae_folder(src: str | Path, dst: str | Path, block_out_channels: Sequence[int], part: str = "both",
                    seed: int = 0) -> CausalVAE:
    """Load the VAE at `src`, widen it (`grow_vae_width`, seeded by `seed`) and write it to the model folder `dst`
    (model.safetensors + config.json). Returns the grown model."""
    from hunyuan_video.checkpoint import load_vae
    from hunyuan_video.train.vae import export_vae

    grown = grow_vae_width(load_vae(src), block_out_channels, seed=seed, part=part)
    export_vae(grown, dst)
    return grown


def narrow_vae_encoder_folder(src: str | Path, dst: str | Path, block_out_channels: Sequence[int]) -> CausalVAE:
    """Load the VAE at `src`, narrow its encoder (`narrow_vae_encoder`) and write it to the model folder `dst`.
    Returns the narrowed model."""
    from hunyuan_video.checkpoint import load_vae
    from hunyuan_video.train.vae import export_vae

    narrow = narrow_vae_encoder(load_vae(src), block_out_channels)
    export_vae(narrow, dst)
    return narrow
