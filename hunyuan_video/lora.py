"""LoRA adapters on the transformer's linears, attached from outside (the model classes do not change).

A targeted `nn.Linear` is swapped for a `LoraLinear` holding the same weight and bias parameters (so the model's own
keys stay as they are) and named adapters: `y = W x + b + sum_i s_i (alpha_i / r_i) B_i A_i x`. A fused layer (QKV,
single blocks' `linear1`) takes one low-rank pair over its whole output. `fuse_lora` writes the adapters into the
weights and keeps the original weight tensor, which `unfuse_lora` puts back: the round trip is bit-exact. On a float8
linear (`quant.FP8Linear`: `--fp8`, an fp8 checkpoint, an fp8 base for LoRA training) the `LoraLinear` keeps the
float8 weight and its `fp8_scale`, de-quantises it per call as the `FP8Linear` does, and runs its adapters beside it
in the compute dtype; such adapters stay unfused (fusing them would round the update to float8).
File formats (diffusers, original-key PEFT, kohya) live in `lora_formats.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hunyuan_video.quant import SCALE, FP8Linear, dequantize, fp8_linear


@dataclass
class LoraWeight:
    """One low-rank pair of a linear: `down` (A, rank x in) and `up` (B, out x rank); the update is
    `(alpha / rank) up @ down`."""

    down: Tensor
    up: Tensor
    alpha: float

    @property
    def rank(self) -> int:
        """The number of rows of `down`."""
        return self.down.shape[0]

    def delta(self) -> Tensor:
        """The float32 weight update `(alpha / rank) up @ down`."""
        return (self.alpha / self.rank) * (self.up.float() @ self.down.float())


class LoraAdapter(nn.Module):
    """The trainable pair of one adapter on one linear, with its user scale."""

    def __init__(self, down: Tensor, up: Tensor, alpha: float, scale: float = 1.0) -> None:
        super().__init__()
        self.down = nn.Parameter(down)
        self.up = nn.Parameter(up)
        self.alpha = float(alpha)
        self.scale = float(scale)

    @property
    def rank(self) -> int:
        """The adapter's rank."""
        return self.down.shape[0]

    def weight(self) -> LoraWeight:
        """The adapter's pair, detached."""
        return LoraWeight(self.down.detach(), self.up.detach(), self.alpha)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.linear(x, self.down), self.up) * (self.scale * self.alpha / self.rank)


FP8_UNFUSED = ("LoRA adapters on float8 weights stay unfused (fusing would round them to float8): load the transformer "
               "without fp8 to fuse, or merge the LoRA into the full-precision checkpoint (`hunyuan-video lora merge`)")


class LoraLinear(nn.Linear):
    """An `nn.Linear` (or `FP8Linear`) sharing another's weight and bias parameters (and `fp8_scale`), plus named
    adapters (unfused by default)."""

    def __init__(self, base: nn.Linear | FP8Linear) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.quantized = isinstance(base, FP8Linear)
        if self.quantized:
            self.register_buffer(SCALE, base.fp8_scale)
        self.fp8_matmul_device = getattr(base, "fp8_matmul_device", None)  # see `quant.enable_fp8_matmul`
        self.adapters = nn.ModuleDict()
        self.fused: Tensor | None = None  # the original weight tensor while the adapters are fused in

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the adapters: the weight's, or for a float8 weight that of the bias (else of the scale)."""
        if not self.quantized:
            return self.weight.dtype
        return (self.bias if self.bias is not None else self.fp8_scale).dtype

    def base_weight(self, dtype: torch.dtype) -> Tensor:
        """The layer's own weight for inputs of `dtype`: a float8 weight de-quantised, else the weight as it is."""
        return dequantize(self.weight, self.fp8_scale, dtype) if self.quantized else self.weight

    def forward(self, x: Tensor) -> Tensor:
        if self.quantized:
            out = fp8_linear(x, self.weight, self.fp8_scale, self.bias, self.fp8_matmul_device)
        else:
            out = F.linear(x, self.weight, self.bias)
        if self.fused is None:
            for adapter in self.adapters.values():
                if adapter.scale != 0:
                    out = out + adapter(x)
        return out

    def dequantized_weight(self, dtype: torch.dtype) -> Tensor:
        """The weight this layer computes with: its own, plus its unfused adapters at their scales (for a caller
        that multiplies by the weight itself, as the chunked MLP of `set_ffn_chunk` does)."""
        weight = self.base_weight(dtype)
        if self.fused is None:
            for a in self.adapters.values():
                if a.scale != 0:
                    weight = weight + ((a.scale * a.alpha / a.rank) * (a.up @ a.down)).to(weight.dtype)
        return weight

    def fuse(self) -> None:
        """Write the scaled adapters into the weight, keeping the original tensor (on the CPU)."""
        if self.fused is not None:
            return
        if self.quantized:
            raise ValueError(FP8_UNFUSED)
        delta = sum((a.scale * a.weight().delta() for a in self.adapters.values()), torch.zeros(()))
        original = self.weight.data
        self.fused = original.to("cpu")
        self.weight.data = (original.float() + delta.to(original.device)).to(original.dtype)

    def unfuse(self) -> None:
        """Put the original weight tensor back, bit for bit."""
        if self.fused is not None:
            self.weight.data = self.fused.to(self.weight.device, self.weight.dtype)
            self.fused = None

    def plain(self) -> nn.Linear | FP8Linear:
        """An `nn.Linear` (an `FP8Linear` for a float8 weight) with this layer's current weight and bias (fused
        adapters stay in it)."""
        if self.quantized:
            linear = FP8Linear(self.in_features, self.out_features, self.bias is not None, device="meta")
            linear.register_buffer(SCALE, self.fp8_scale)
            linear.fp8_matmul_device = self.fp8_matmul_device
        else:
            linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight, linear.bias = self.weight, self.bias
        return linear


def lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    """The model's `LoraLinear`s by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLinear)}


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of every linear (float8 ones included) of the model, by module name: the layers
    LoRA can target."""
    return {name: (m.out_features, m.in_features) for name, m in model.named_modules()
            if isinstance(m, nn.Linear | FP8Linear)}


def _wrap(model: nn.Module, name: str) -> LoraLinear:
    module = model.get_submodule(name)
    if isinstance(module, LoraLinear):
        return module
    if not isinstance(module, nn.Linear | FP8Linear):
        raise ValueError(f"{name} is a {type(module).__name__}, not a linear layer: LoRA cannot target it")
    parent_name, _, child = name.rpartition(".")
    wrapped = LoraLinear(module)
    setattr(model.get_submodule(parent_name) if parent_name else model, child, wrapped)
    return wrapped


def adapter_names(model: nn.Module) -> list[str]:
    """The adapters on the model, in the order they were added."""
    names: dict[str, None] = {}
    for layer in lora_layers(model).values():
        names.update(dict.fromkeys(layer.adapters))
    return list(names)


def add_adapter(model: nn.Module, weights: dict[str, LoraWeight], name: str, scale: float = 1.0,
                trainable: bool = False) -> str:
    """Attach the pairs of `weights` (official module name -> pair) as adapter `name`, cast to each layer's device and
    dtype; shapes are checked against the layers before anything changes."""
    if name in adapter_names(model):
        raise ValueError(f"the model already has a LoRA adapter named {name!r}")
    if "." in name or not name:
        raise ValueError(f"adapter name {name!r}: must be non-empty and hold no '.'")
    shapes = linear_shapes(model)
    for module, pair in weights.items():
        if module not in shapes:
            raise ValueError(f"LoRA targets {module}, which is not a linear layer of the model")
        out_features, in_features = shapes[module]
        if pair.down.shape[1] != in_features or pair.up.shape[0] != out_features or pair.up.shape[1] != pair.rank:
            raise ValueError(f"LoRA pair for {module}: A {tuple(pair.down.shape)}, B {tuple(pair.up.shape)} do not fit "
                             f"a {in_features} -> {out_features} layer")
    for module, pair in weights.items():
        layer = _wrap(model, module)
        if layer.fused is not None:
            raise ValueError(f"{module} has fused adapters: unfuse before adding {name!r}")
        like = dict(device=layer.weight.device, dtype=layer.compute_dtype)
        adapter = LoraAdapter(pair.down.to(**like), pair.up.to(**like), pair.alpha, scale)
        layer.adapters[name] = adapter.requires_grad_(trainable)
    return name


def new_adapter(model: nn.Module, modules: Iterable[str], rank: int, alpha: float, name: str = "default",
                seed: int = 0) -> str:
    """A trainable adapter on `modules`: A drawn as PEFT does (Kaiming uniform), B zero, so the model is unchanged."""
    shapes = linear_shapes(model)
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for module in modules:
        out_features, in_features = shapes[module]
        bound = 1 / math.sqrt(in_features)  # kaiming_uniform_(a=sqrt(5)) on a (rank, in) matrix
        down = (torch.rand(rank, in_features, generator=generator) * 2 - 1) * bound
        weights[module] = LoraWeight(down, torch.zeros(out_features, rank), alpha)
    return add_adapter(model, weights, name, trainable=True)


# The attention and MLP linears of both block types (musubi-tuner and diffusers' trainers train these by default).
DEFAULT_TARGETS = ("img_attn_qkv", "img_attn_proj", "img_mlp.fc1", "img_mlp.fc2", "txt_attn_qkv", "txt_attn_proj",
                   "txt_mlp.fc1", "txt_mlp.fc2", "linear1", "linear2")
DEFAULT_BLOCKS = ("double_blocks", "single_blocks")


def target_modules(model: nn.Module, targets: Iterable[str] = DEFAULT_TARGETS,
                   blocks: Iterable[str] = DEFAULT_BLOCKS) -> list[str]:
    """The linears named `target` (a module name inside a block, e.g. "img_attn_qkv", "linear1", "img_mod.linear")
    in each of `blocks` ("double_blocks" / "single_blocks" for all of them, "double_blocks.3" for one); a target or
    block that names nothing is a ValueError."""
    shapes = linear_shapes(model)
    prefixes = []
    for block in blocks:
        group, _, index = block.partition(".")
        if group not in DEFAULT_BLOCKS or (index and not index.isdigit()):
            raise ValueError(f"LoRA block {block!r}: expected double_blocks, single_blocks or one of them by index "
                             "(double_blocks.3)")
        count = len(model.get_submodule(group))
        if index and int(index) >= count:
            raise ValueError(f"LoRA block {block!r}: the model has {count} {group}")
        prefixes += [block] if index else [f"{group}.{i}" for i in range(count)]
    modules = [f"{prefix}.{target}" for prefix in prefixes for target in targets if f"{prefix}.{target}" in shapes]
    if unused := [t for t in targets if not any(m.endswith("." + t) for m in modules)]:
        raise ValueError(f"LoRA targets {', '.join(unused)} name no linear layer of the chosen blocks")
    return modules


class AdapterState:
    """Adapter `name` of a model seen as a state dict (`module.down`, `module.up`): what LoRA training optimises,
    averages (EMA) and checkpoints, leaving the base weights out."""

    def __init__(self, model: nn.Module, name: str) -> None:
        self.adapters = {module: layer.adapters[name] for module, layer in lora_layers(model).items()
                         if name in layer.adapters}
        if not self.adapters:
            raise ValueError(f"no LoRA adapter named {name!r} (the model has: "
                             f"{', '.join(adapter_names(model)) or 'none'})")

    def parameters(self) -> list[nn.Parameter]:
        """The adapter's parameters."""
        return [p for adapter in self.adapters.values() for p in (adapter.down, adapter.up)]

    def state_dict(self) -> dict[str, Tensor]:
        """`{module}.down` and `{module}.up` for every adapted module."""
        return {f"{module}.{part}": getattr(adapter, part) for module, adapter in self.adapters.items()
                for part in ("down", "up")}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy `state` (as `state_dict` returns it) into the adapter's parameters."""
        own = self.state_dict()
        if state.keys() != own.keys():
            raise ValueError("adapter state does not match the model's adapter: the module names differ")
        for key, tensor in own.items():
            tensor.copy_(state[key])

    def weights(self) -> dict[str, LoraWeight]:
        """The adapter's pairs by module name."""
        return {module: adapter.weight() for module, adapter in self.adapters.items()}


def set_lora_scale(model: nn.Module, name: str, scale: float) -> None:
    """Change adapter `name`'s scale (fused layers are re-fused with it)."""
    layers = [layer for layer in lora_layers(model).values() if name in layer.adapters]
    if not layers:
        raise ValueError(f"no LoRA adapter named {name!r} (the model has: {', '.join(adapter_names(model)) or 'none'})")
    for layer in layers:
        fused = layer.fused is not None
        layer.unfuse()
        layer.adapters[name].scale = float(scale)
        if fused:
            layer.fuse()


@contextmanager
def adapter_off(model: nn.Module, name: str) -> Iterator[None]:
    """Adapter `name` switched off (scale 0) inside the `with` block; its scale is put back after."""
    scale = next((layer.adapters[name].scale for layer in lora_layers(model).values() if name in layer.adapters), 0.0)
    set_lora_scale(model, name, 0.0)  # a ValueError for a name the model does not have
    try:
        yield
    finally:
        set_lora_scale(model, name, scale)


def fuse_lora(model: nn.Module) -> None:
    """Write every adapter, at its scale, into the weights (faster inference; `unfuse_lora` undoes it exactly); a
    ValueError, before anything changes, when a layer holds float8 weights."""
    layers = lora_layers(model).values()
    if any(layer.quantized for layer in layers):
        raise ValueError(FP8_UNFUSED)
    for layer in layers:
        layer.fuse()


def unfuse_lora(model: nn.Module) -> None:
    """Put back the weights `fuse_lora` changed, bit for bit."""
    for layer in lora_layers(model).values():
        layer.unfuse()


def remove_lora(model: nn.Module, name: str | None = None) -> None:
    """Remove adapter `name` (every adapter when None), unfusing first; layers left without adapters become plain
    `nn.Linear`s again."""
    _detach(model, name, keep_fused=False)


def bake_lora(model: nn.Module) -> None:
    """Fuse every adapter and drop the LoRA layers: the model is a plain one with the merged weights."""
    fuse_lora(model)
    _detach(model, None, keep_fused=True)


def _detach(model: nn.Module, name: str | None, keep_fused: bool) -> None:
    if name is not None and name not in adapter_names(model):
        raise ValueError(f"no LoRA adapter named {name!r} (the model has: {', '.join(adapter_names(model)) or 'none'})")
    for module, layer in lora_layers(model).items():
        if not keep_fused:
            layer.unfuse()
        for adapter in [name] if name in layer.adapters else [] if name is not None else list(layer.adapters):
            del layer.adapters[adapter]
        if not layer.adapters or keep_fused:
            parent_name, _, child = module.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.plain())


def load_lora(model: nn.Module, path: str | Path, scale: float = 1.0, name: str | None = None,
              ignore_unknown: bool = False) -> str:
    """Read a LoRA file in any layout `lora_formats.read_lora` knows and attach it as adapter `name` (default: the
    file's stem) at `scale`; returns the adapter's name."""
    from hunyuan_video.lora_formats import read_lora

    weights = read_lora(path, linear_shapes(model), ignore_unknown=ignore_unknown)
    return add_adapter(model, weights, name or Path(path).stem.replace(".", "_"), scale)
