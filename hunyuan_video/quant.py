"""fp8 weights for the transformer's blocks, as the official fp8 checkpoint holds them.

Every `nn.Linear` of the double and single blocks keeps its weight in float8_e4m3fn with one scale per tensor
(`weight ~= weight_fp8 * scale`); the rest of the model keeps its dtype. The official release ships the float8
weights in `mp_rank_00_model_states_fp8.pt` and the scales, a dict from module name to scale, in
`mp_rank_00_model_states_fp8_map.pt` beside it. `quantize_state_dict` makes the same pair from a full-precision
state dict (scale = max|W| / 448). `to_fp8_linears` swaps the linears of a model (typically still on the meta
device) for `FP8Linear`s, which de-quantise their weight to the input's dtype as they run, as the official code does
(`weight.to(dtype) * scale.to(dtype)`); the model classes themselves do not change.

`enable_fp8_matmul` switches the `FP8Linear`s to an fp8 matmul on GPUs with fp8 tensor cores (CUDA compute
capability 8.9 and up): each call quantises its input per tensor on the fly (scale max|x| / 448) and multiplies the
two float8 operands with `torch._scaled_mm`, both scales applied to the float32 accumulator. Not exact: the input's
rounding to float8 comes on top of the weights'.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448
FP8_BLOCKS = ("double_blocks", "single_blocks")
SCALE = "fp8_scale"  # the FP8Linear buffer holding the scale (the official attribute's name)


class FP8Linear(nn.Module):
    """A linear layer with a float8_e4m3fn `weight` and a per-tensor `fp8_scale`, de-quantised per call.

    The state dict keys are `weight`, `bias` (as `nn.Linear`'s) and `fp8_scale`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, device: torch.device | str | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.fp8_matmul_device: torch.device | None = None  # inputs on this device take `fp8_matmul` (None: none)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, device=device)) if bias else None
        self.register_buffer(SCALE, torch.empty((), device=device))

    def dequantized_weight(self, dtype: torch.dtype) -> Tensor:
        """The weight this layer computes with for inputs of `dtype` (`dequantize`)."""
        return dequantize(self.weight, self.fp8_scale, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return fp8_linear(x, self.weight, self.fp8_scale, self.bias, self.fp8_matmul_device)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def dequantize(weight: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    """`weight.to(dtype) * scale.to(dtype)`: a float8 weight in `dtype`, as the official code de-quantises it."""
    return weight.to(dtype) * scale.to(dtype)


def fp8_linear(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None,
               fp8_matmul_device: torch.device | None) -> Tensor:
    """`x` through a linear with float8 `weight` and its `scale`: `fp8_matmul` for inputs on `fp8_matmul_device`,
    else the weight de-quantised to `x`'s dtype."""
    if x.device == fp8_matmul_device:
        return fp8_matmul(x, weight, scale, bias)
    return F.linear(x, dequantize(weight, scale, x.dtype), bias)


def fp8_matmul(x: Tensor, weight: Tensor, weight_scale: Tensor, bias: Tensor | None) -> Tensor:
    """`x @ (weight * weight_scale).T + bias` for a float8 `weight` with an fp8 matmul: `x` quantised to float8 with
    one scale max|x| / 448, then `torch._scaled_mm` with both scales; the result in `x`'s dtype."""
    rows = x.reshape(-1, x.shape[-1])
    scale = rows.abs().amax().float() / FP8_MAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = (rows.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    pad = -rows.shape[0] % 16  # the fp8 GEMMs take rows in multiples of 16
    quantized = F.pad(quantized.view(torch.uint8), (0, 0, 0, pad)).view(FP8_DTYPE) if pad else quantized
    out = torch._scaled_mm(quantized, weight.t(), scale_a=scale, scale_b=weight_scale.float(), out_dtype=x.dtype)
    out = out[:rows.shape[0]].reshape(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias.to(x.dtype)


def has_fp8_tensor_cores(device: torch.device | str) -> bool:
    """Whether `device` is a CUDA GPU with fp8 tensor cores (compute capability 8.9 or more: Ada, Hopper, ...)."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def check_fp8_matmul(device: torch.device | str) -> torch.device:
    """`device` (with its CUDA index) when it has fp8 tensor cores; a ValueError saying so when not."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    if not has_fp8_tensor_cores(device):
        raise ValueError(f"fp8_matmul needs a CUDA GPU with fp8 tensor cores (compute capability 8.9 or more: "
                         f"L4, RTX 4090, H100...); {device} has none: drop it and keep the de-quantised fp8 weights")
    return device


def enable_fp8_matmul(model: nn.Module, device: torch.device | str) -> int:
    """Run the `FP8Linear`s of `model` as fp8 matmuls (`fp8_matmul`) for inputs on `device`, where the shapes allow
    (`torch._scaled_mm` needs both weight dimensions divisible by 16; the others keep de-quantising); returns how
    many switched. A ValueError when `device` has no fp8 tensor cores (`check_fp8_matmul`) or `model` no float8
    weights."""
    device = check_fp8_matmul(device)
    linears = [m for m in model.modules() if is_fp8_linear(m)]
    if not linears:
        raise ValueError("fp8_matmul needs float8 weights: quantise the transformer (--fp8, quantize='fp8') "
                         "or load an fp8 checkpoint")
    switched = [m for m in linears if m.in_features % 16 == 0 and m.out_features % 16 == 0]
    for linear in switched:
        linear.fp8_matmul_device = device
    return len(switched)


def fp8_linear_names(model: nn.Module) -> list[str]:
    """The names of the `nn.Linear` (or `FP8Linear`) modules of the double and single blocks."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear | FP8Linear) and name.split(".")[0] in FP8_BLOCKS]


def to_fp8_linears(model: nn.Module) -> nn.Module:
    """Replace the blocks' `nn.Linear`s by `FP8Linear`s on the same device (meta stays meta); returns `model`.
    Fill them by loading a state dict holding their float8 weights and `fp8_scale`s."""
    for name in fp8_linear_names(model):
        linear = model.get_submodule(name)
        if isinstance(linear, FP8Linear):
            continue
        parent, _, child = name.rpartition(".")
        fp8 = FP8Linear(linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device)
        setattr(model.get_submodule(parent), child, fp8)
    return model


def is_fp8_linear(module: nn.Module) -> bool:
    """Whether `module` computes with a float8 `weight` and its `fp8_scale`: an `FP8Linear`, or a LoRA layer on one."""
    weight = getattr(module, "weight", None)
    return hasattr(module, SCALE) and isinstance(weight, Tensor) and weight.dtype == FP8_DTYPE


def has_fp8_linears(model: nn.Module) -> bool:
    """Whether any module of `model` computes with float8 weights (`is_fp8_linear`)."""
    return any(is_fp8_linear(module) for module in model.modules())


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """A per-tensor float8_e4m3fn copy of `weight` and its float32 scale max|W| / 448 (1 for an all-zero weight)."""
    w = weight.detach().float()
    scale = w.abs().max() / FP8_MAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def quantize_state_dict(state_dict: dict[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    """Quantise the weights of the linears `names` in `state_dict` in place (see `quantize_weight`); returns the
    map {module name: scale} that goes beside them. Weights already in float8 are an error (they need their map)."""
    scales = {}
    for name in names:
        weight = state_dict[f"{name}.weight"]
        if weight.dtype == FP8_DTYPE:
            raise ValueError(f"{name}.weight is float8 already: load it with its fp8 map instead of quantising it")
        state_dict[f"{name}.weight"], scales[name] = quantize_weight(weight)
    return scales


def fp8_map_path(weights: str | Path) -> Path:
    """Where the fp8 map of a weights file sits: `<name>_map.pt` beside `<name>.pt` (or `.safetensors`)."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}_map.pt")


def read_fp8_map(weights: str | Path) -> dict[str, Tensor] | None:
    """The {module name: scale} map beside the weights file `weights`, or None when there is none."""
    path = fp8_map_path(weights)
    if not path.is_file():
        return None
    scales = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(scales, dict) or not all(isinstance(v, Tensor) and v.numel() == 1 for v in scales.values()):
        raise ValueError(f"{path} is not an fp8 map (a dict from module name to a scale tensor)")
    return scales


def add_fp8_scales(state_dict: dict[str, Tensor], scales: dict[str, Tensor], names: list[str],
                   source: str | Path) -> None:
    """Put the scale of every linear of `names` into `state_dict` under `<name>.fp8_scale`; a ValueError naming
    `source` (the map's file) when one is missing."""
    if missing := [name for name in names if name not in scales]:
        raise ValueError(f"{source} has no scale for {len(missing)} fp8 linear(s), e.g. {missing[0]}")
    for name in names:
        state_dict[f"{name}.{SCALE}"] = scales[name].reshape(()).float()


def split_fp8_scales(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """An fp8 model's state dict as the official pair: the tensors without the scales, and the {module: scale}
    map."""
    suffix = "." + SCALE
    weights = {key: value for key, value in state_dict.items() if not key.endswith(suffix)}
    scales = {key.removesuffix(suffix): value.float() for key, value in state_dict.items() if key.endswith(suffix)}
    return weights, scales


def has_fp8_tensors(state_dict: dict[str, Tensor]) -> bool:
    """Whether any tensor of `state_dict` is float8."""
    return any(value.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) for value in state_dict.values())
