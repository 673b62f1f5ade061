"""Text-to-video sampling: prompt -> text states -> Euler steps of the transformer -> tiled VAE decode -> frames.

This is the only module that knows the order of the parts; each part knows only its own job.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import nn
from tqdm import tqdm

from hunyuan_video.checkpoint import (
    infer_transformer_config,
    load_transformer,
    load_vae,
    read_state_dict,
    safetensors_metadata,
    transformer_config_from_diffusers,
)
from hunyuan_video.config import TransformerConfig, config_from_dict, config_to_dict
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.models.vae import CausalVAE
from hunyuan_video.scheduler import euler_step, sampling_sigmas
from hunyuan_video.text_encoder import CLIPTextEncoder, LLMTextEncoder
from hunyuan_video.video_io import to_uint8

OFFICIAL_T2V = "hunyuan-video-t2v-720p"
OFFICIAL_TRANSFORMER_FILES = ("mp_rank_00_model_states.pt", "mp_rank_00_model_states.safetensors")
# The official default negative prompt, used with true classifier-free guidance when none is given.
NEGATIVE_PROMPT = ("Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
                   "bad teeth, bad eyes, bad limbs, distortion")
EXPECTED_LAYOUTS = (
    "official (ckpts/): hunyuan-video-t2v-720p/transformers/mp_rank_00_model_states.pt (or .safetensors, "
    "optionally with a config.json of TransformerConfig fields), hunyuan-video-t2v-720p/vae/, text_encoder/, "
    "text_encoder_2/; "
    "diffusers: model_index.json, transformer/, vae/, text_encoder/, tokenizer/, text_encoder_2/, tokenizer_2/, "
    "scheduler/"
)


@dataclass(frozen=True)
class ModelFolder:
    """Where each part of a model folder lives, and which layout it follows ("official" or "diffusers")."""

    root: Path
    layout: str
    transformer: Path
    transformer_config: Path | None
    vae: Path
    text_encoder: Path
    tokenizer: Path
    text_encoder_2: Path
    tokenizer_2: Path


def find_model_folder(path: str | Path) -> ModelFolder:
    """Detect the layout of a model folder: the official `ckpts/` (or its parent, or its hunyuan-video-t2v-720p/),
    or diffusers'."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"model folder {root} does not exist (expected layouts: {EXPECTED_LAYOUTS})")
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
        config = official / "transformers" / "config.json"
        return ModelFolder(root, "official", found[0], config if config.is_file() else None, parts["vae"],
                           parts["text_encoder"], parts["text_encoder"], parts["text_encoder_2"],
                           parts["text_encoder_2"])
    names = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
    if (root / "model_index.json").is_file() or all((root / n).is_dir() for n in names[:3]):
        missing = [n + "/" for n in names if not (root / n).is_dir()]
        if missing:
            raise ValueError(f"{root} looks like the diffusers layout but lacks {', '.join(missing)}")
        return ModelFolder(root, "diffusers", root / "transformer", None, root / "vae", root / "text_encoder",
                           root / "tokenizer", root / "text_encoder_2", root / "tokenizer_2")
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
            with safe_open(file, "pt") as handle:
                shapes = [(handle.get_slice(k).get_shape(), handle.get_slice(k).get_dtype()) for k in handle.keys()]
            sizes = [(math.prod(shape), _SAFETENSORS_DTYPES.get(dtype, dtype.lower())) for shape, dtype in shapes]
        else:
            sizes = [(t.numel(), str(t.dtype).removeprefix("torch.")) for t in read_state_dict(file).values()]
        for numel, dtype in sizes:
            counts[dtype] = counts.get(dtype, 0) + numel
    return counts


def transformer_config(folder: ModelFolder) -> TransformerConfig:
    """The transformer's config: its config.json (ours beside an official checkpoint, diffusers' in its folder),
    else the config in a safetensors checkpoint's metadata, else read from the official checkpoint's shapes."""
    if folder.layout == "diffusers":
        return transformer_config_from_diffusers(json.loads((folder.transformer / "config.json").read_text()))
    if folder.transformer_config is not None:
        return config_from_dict(TransformerConfig, json.loads(folder.transformer_config.read_text()))
    if folder.transformer.suffix == ".safetensors" and "config" in safetensors_metadata(folder.transformer):
        return config_from_dict(TransformerConfig, json.loads(safetensors_metadata(folder.transformer)["config"]))
    return infer_transformer_config(read_state_dict(folder.transformer))


def describe_model_folder(path: str | Path) -> dict:
    """What a model folder holds: its layout, and per part the path, the config and the parameters per dtype."""
    folder = find_model_folder(path)
    parts = {}
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        part: Path = getattr(folder, name)
        if name == "transformer":
            config = config_to_dict(transformer_config(folder))
        else:
            config = json.loads((part / "config.json").read_text()) if (part / "config.json").is_file() else None
        parts[name] = {"path": str(part), "config": config, "parameters": weight_summary(part)}
    return {"root": str(folder.root), "layout": folder.layout, "parts": parts}


@dataclass
class VideoOutput:
    """What a pipeline call returns: the frames (see `output_type`), the seed they came from, seconds per stage."""

    frames: np.ndarray | torch.Tensor
    seed: int | None  # None when the starting latents were passed in
    timings: dict[str, float]


def _nearest_valid(value: int, step: int, offset: int = 0) -> str:
    low = (value - offset) // step * step + offset
    return f"{low} or {low + step}" if low >= max(offset, 1) else str(low + step)


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def _give_back(tensors: list[torch.Tensor], originals: list[torch.Tensor]) -> None:
    for t, original in zip(tensors, originals):
        t.data = original


class HunyuanVideoPipeline:
    """HunyuanVideo text-to-video: `pipe(prompt) -> VideoOutput` with frames `(B, T, H, W, 3)` uint8."""

    def __init__(
        self,
        transformer: HunyuanVideoTransformer,
        vae: CausalVAE,
        text_encoder: LLMTextEncoder,
        text_encoder_2: CLIPTextEncoder,
    ) -> None:
        self.transformer = transformer.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.text_encoder_2 = text_encoder_2
        self.device = next(transformer.parameters()).device
        self.offload = False
        self.progress = True

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str | None = None,
    ) -> HunyuanVideoPipeline:
        """Load a model folder in the official `ckpts/` or the diffusers layout (detected) in `dtype` onto `device`
        (default: CUDA when present). To run a big model on a small GPU, load onto "cpu" and then call
        `enable_model_cpu_offload()`."""
        folder = find_model_folder(path)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        transformer = load_transformer(folder.transformer, transformer_config(folder), dtype=dtype, device=device)
        vae = load_vae(folder.vae, dtype=dtype, device=device)
        text_encoder = LLMTextEncoder.from_pretrained(folder.text_encoder, folder.tokenizer, dtype, device)
        text_encoder_2 = CLIPTextEncoder.from_pretrained(folder.text_encoder_2, folder.tokenizer_2, dtype, device)
        return cls(transformer, vae, text_encoder, text_encoder_2)

    def to(self, device: torch.device | str) -> HunyuanVideoPipeline:
        """Move every part to `device` (and turn CPU offload off)."""
        self.device, self.offload = torch.device(device), False
        for module in self._modules():
            module.to(self.device)
        return self

    def enable_model_cpu_offload(self, device: torch.device | str = "cuda") -> HunyuanVideoPipeline:
        """Keep the parts on the CPU and bring each to `device` only while it works: the text encoders and the VAE
        whole, the transformer's small parts whole and its blocks one at a time (so only one block's weights and
        the activations sit on the GPU)."""
        self.to("cpu")
        self.device, self.offload = torch.device(device), True
        return self

    def _modules(self) -> tuple[nn.Module, ...]:
        return self.transformer, self.vae, self.text_encoder, self.text_encoder_2

    def _borrow(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Point `tensors` at copies on the device; return their CPU data to point them back at afterwards."""
        originals = [t.data for t in tensors]
        for t in tensors:
            t.data = t.data.to(self.device, non_blocking=True)
        return originals

    @contextmanager
    def _working(self, module: nn.Module, stream_blocks: bool = False) -> Iterator[None]:
        """With offload on: `module`'s weights on the device inside the block, on the CPU again after it (the CPU
        copies are kept, so nothing is copied back). `stream_blocks` brings the entries of its ModuleLists in one at
        a time, each just for its own forward."""
        if not self.offload:
            yield
            return
        blocks = [b for child in module.children() if isinstance(child, nn.ModuleList) for b in child]
        blocks = blocks if stream_blocks else []
        on_loan: dict[nn.Module, list[torch.Tensor]] = {}

        def bring(block: nn.Module, args: tuple) -> None:
            on_loan[block] = self._borrow(_tensors(block))

        def send_back(block: nn.Module, args: tuple, out: object) -> None:
            _give_back(_tensors(block), on_loan.pop(block))

        streamed = {id(t) for block in blocks for t in _tensors(block)}
        resident = [t for t in _tensors(module) if id(t) not in streamed]
        hooks = [h for b in blocks for h in (b.register_forward_pre_hook(bring), b.register_forward_hook(send_back))]
        originals = self._borrow(resident)
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            _give_back(resident, originals)
            for block, block_originals in on_loan.items():  # left over when a forward failed
                _give_back(_tensors(block), block_originals)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LLM states `(B, 256, D)` on the device, their mask `(B, 256)` on the CPU (the transformer drops padding
        with it without a device sync), and the CLIP pooled states `(B, D2)` on the device."""
        with self._working(self.text_encoder):
            states, mask = self.text_encoder(prompts)
        with self._working(self.text_encoder_2):
            pooled = self.text_encoder_2(prompts)
        return states.to(self.device), mask.cpu(), pooled.to(self.device)

    def check_size(self, height: int, width: int, num_frames: int) -> None:
        """Frames must be `1 + 4k` and sizes multiples of 16 (VAE 8 x patch 2); the error names the nearest valid."""
        t_ratio = self.vae.config.time_compression_ratio
        multiple = self.vae.config.spatial_compression_ratio * self.transformer.config.patch_size[1]
        if num_frames < 1 or (num_frames - 1) % t_ratio:
            raise ValueError(f"num_frames must be {t_ratio}k + 1, got {num_frames}: use "
                             f"{_nearest_valid(num_frames, t_ratio, 1)}")
        for name, value in (("height", height), ("width", width)):
            if value < multiple or value % multiple:
                raise ValueError(f"{name} must be a multiple of {multiple}, got {value}: use "
                                 f"{_nearest_valid(value, multiple)}")

    def latent_shape(self, batch: int, height: int, width: int, num_frames: int) -> tuple[int, ...]:
        """`(B, 16, (T - 1) // 4 + 1, H // 8, W // 8)`."""
        c = self.vae.config
        return (batch, c.latent_channels, (num_frames - 1) // c.time_compression_ratio + 1,
                height // c.spatial_compression_ratio, width // c.spatial_compression_ratio)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int = 720,
        width: int = 1280,
        num_frames: int = 129,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        cfg_scale: float = 1.0,
        flow_shift: float = 7.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> VideoOutput:
        """Sample videos for `prompt`.

        `guidance_scale` is the embedded guidance of the CFG-distilled model (fed as `guidance * 1000`);
        `cfg_scale > 1` adds true classifier-free guidance against `negative_prompt` (default: the official
        NEGATIVE_PROMPT), batched into one
        forward per step. The starting noise comes from `latents`, else from `generator` (a CPU generator), else from
        `seed` (random when None), drawn on the CPU in float32 so that a seed gives the same video on every device.
        `output_type`: "np" uint8 `(B, T, H, W, 3)`; "pt" float32 tensor `(B, T, H, W, 3)` in [0, 1]; "latent" the
        final latents. `callback(step, latents)` runs after every step.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("no prompt given: pass a string or a non-empty list of strings")
        if output_type not in ("np", "pt", "latent"):
            raise ValueError(f"output_type must be 'np', 'pt' or 'latent', got {output_type!r}")
        self.check_size(height, width, num_frames)
        sigmas = sampling_sigmas(num_inference_steps, flow_shift).tolist()
        shape = self.latent_shape(len(prompts), height, width, num_frames)
        do_cfg, negatives = cfg_scale > 1, []
        if negative_prompt is not None and not do_cfg:
            warnings.warn("negative_prompt is used only with cfg_scale > 1 (true classifier-free guidance): ignored",
                          stacklevel=2)
        if do_cfg:
            negative = NEGATIVE_PROMPT if negative_prompt is None else negative_prompt  # "" is the empty caption
            negatives = [negative] * len(prompts) if isinstance(negative, str) else list(negative)
            if len(negatives) != len(prompts):
                raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must be shaped {shape} for this size, got {tuple(latents.shape)}")
            seed = None
        else:
            if generator is None:
                seed = random.randrange(2**31) if seed is None else seed
                generator = torch.Generator("cpu").manual_seed(seed)
            seed = generator.initial_seed()
            latents = torch.randn(shape, generator=generator, dtype=torch.float32)
        latents = latents.to(self.device, torch.float32)

        timings = {}
        start = time.perf_counter()
        states, mask, pooled = self.encode_prompt(prompts + negatives)
        dtype = next(self.transformer.parameters()).dtype
        states, pooled = states.to(dtype), pooled.to(dtype)
        if do_cfg:  # the negative first, as the official code batches it
            n = len(prompts)
            states, mask, pooled = (torch.cat([x[n:], x[:n]]) for x in (states, mask, pooled))
        timings["encode_s"] = self._lap(start)

        batch = states.shape[0]
        guidance = None
        if self.transformer.config.guidance_embed:
            guidance = torch.full((batch,), guidance_scale * 1000.0, device=self.device)
        bar = tqdm(total=num_inference_steps + (output_type != "latent"), desc="denoise", disable=not self.progress)
        start = time.perf_counter()
        with self._working(self.transformer, stream_blocks=True):
            for i in range(num_inference_steps):
                x = torch.cat([latents, latents]) if do_cfg else latents
                t = torch.full((batch,), sigmas[i] * 1000.0, device=self.device)
                v = self.transformer(x.to(dtype), t, states, mask, pooled, guidance).float()
                if do_cfg:
                    v_neg, v_pos = v.chunk(2)
                    v = v_neg + cfg_scale * (v_pos - v_neg)
                latents = euler_step(latents, v, sigmas[i], sigmas[i + 1])
                if callback is not None:
                    callback(i, latents)
                bar.update()
        timings["denoise_s"] = self._lap(start)
        if output_type == "latent":
            bar.close()
            return VideoOutput(latents, seed, timings)

        bar.set_description("decode")
        start = time.perf_counter()
        with self._working(self.vae):
            vae_dtype = next(self.vae.parameters()).dtype
            video = self.vae.decode((latents / self.vae.config.scaling_factor).to(vae_dtype))
        video = video.float().permute(0, 2, 3, 4, 1).cpu()  # (B, T, H, W, 3)
        timings["decode_s"] = self._lap(start)
        bar.update()
        bar.close()
        frames = (video / 2 + 0.5).clamp(0, 1) if output_type == "pt" else to_uint8(video.numpy())
        return VideoOutput(frames, seed, timings)

    def _lap(self, start: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start
