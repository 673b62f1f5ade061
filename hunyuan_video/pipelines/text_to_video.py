"""Text-to-video sampling: prompt -> text states -> Euler steps of the transformer -> tiled VAE decode -> frames.

The pipeline is the only place that knows the order of the parts; each part knows only its own job. `__call__` is a
sequence of named steps (`check_inputs`, `prepare_latents`, `encode_prompt`, `denoise` with its `step` and
`predict_velocity`, `decode`), so a pipeline for another task overrides the step it changes.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from hunyuan_video.checkpoint import check_safetensors, load_transformer, load_vae
from hunyuan_video.config import TransformerConfig
from hunyuan_video.lora import fuse_lora, load_lora, set_lora_scale, unfuse_lora
from hunyuan_video.models.attention import check_attention_backend
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.models.vae import CausalVAE
from hunyuan_video.parallel import ParallelConfig, ParallelGroups, ParallelTransformer
from hunyuan_video.parallel.vae import decode_shared
from hunyuan_video.pipelines.defaults import GenerationDefaults
from hunyuan_video.pipelines.layouts import ModelFolder, find_model_folder, folder_transformer_config, model_kind
from hunyuan_video.pipelines.offload import ModelOffload
from hunyuan_video.quant import check_fp8_matmul, enable_fp8_matmul
from hunyuan_video.scheduler import euler_step, sampling_sigmas
from hunyuan_video.sparse_attention import SlidingTile, SlidingTilePlan, read_sliding_tile_plan
from hunyuan_video.step_cache import (
    HUNYUAN_VIDEO_TEACACHE,
    StepCache,
    TeaCache,
    check_coefficients,
    make_step_cache,
    read_teacache_coefficients,
)
from hunyuan_video.text_encoder import CLIPTextEncoder, LLMTextEncoder
from hunyuan_video.video_io import to_uint8

OUTPUT_TYPES = ("np", "pt", "latent")


@dataclass
class VideoOutput:
    """What a pipeline call returns: the frames (see `output_type`), the seed they came from, seconds per stage and,
    with a step cache, how many steps ran the blocks and how many reused them."""

    frames: np.ndarray | torch.Tensor
    seed: int | None  # None when the starting latents were passed in
    timings: dict[str, float]
    cache_steps: dict[str, int] | None = None  # {"full": ..., "skipped": ...}; None without a step cache


@dataclass
class PromptEmbeds:
    """The text conditions of a batch, in the transformer's dtype: LLM states `(B, 256, D)` on the device, their
    mask `(B, 256)` on the CPU (the transformer drops padding with it without a device sync) and the CLIP pooled
    states `(B, D2)` on the device. With true CFG the negatives come first, as the official code batches them."""

    states: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


def _nearest_valid(value: int, step: int, offset: int = 0) -> str:
    low = (value - offset) // step * step + offset
    return f"{low} or {low + step}" if low >= max(offset, 1) else str(low + step)


def check_device(device: torch.device | str) -> torch.device:
    """`device` as a `torch.device`; a ValueError for a name torch does not know or a CUDA device it cannot see."""
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {str(device)!r}: use cuda, cuda:N or cpu") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but torch sees no CUDA GPU: use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {device} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return device


class HunyuanVideoPipeline:
    """HunyuanVideo text-to-video: `pipe(prompt) -> VideoOutput` with frames `(B, T, H, W, 3)` uint8.

    Arguments a call is not given come from `defaults` (a model folder's `generate.json` over the official ones).
    `teacache_coefficients`: the TeaCache polynomial of this transformer (a model folder's `teacache.json`; default:
    the published HunyuanVideo one), used by `enable_step_cache("teacache")`. `sliding_tile_plan`: the searched
    sliding tile windows of this transformer (a model folder's `sliding_tile.json`), used by
    `enable_sliding_tile_attention()` without a window.
    Under torchrun, `enable_parallel(ParallelConfig(...))` shares the work of each call among the ranks.
    """

    image_to_video = False  # whether the pipeline takes an image (and which model folders it loads)

    def __init__(
        self,
        transformer: HunyuanVideoTransformer,
        vae: CausalVAE,
        text_encoder: LLMTextEncoder,
        text_encoder_2: CLIPTextEncoder,
        defaults: GenerationDefaults | None = None,
        teacache_coefficients: tuple[float, ...] | None = None,
        sliding_tile_plan: SlidingTilePlan | None = None,
    ) -> None:
        self.transformer = transformer.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.text_encoder = text_encoder
        self.text_encoder_2 = text_encoder_2
        self.defaults = defaults or GenerationDefaults()
        self.device = next(transformer.parameters()).device
        self.offload: ModelOffload | None = None
        self.parallel: ParallelTransformer | None = None
        self.progress = True
        self.teacache_coefficients = check_coefficients(teacache_coefficients or HUNYUAN_VIDEO_TEACACHE,
                                                        "teacache_coefficients")
        self.step_cache: StepCache | None = None
        self.sliding_tile_plan = sliding_tile_plan
        self.sliding_tile: SlidingTile | None = None
        self.release_text_encoders = False  # True: drop both text encoders once a prompt is encoded (one-shot use)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        attention_backend: str = "auto",
        quantize: str | None = None,
        offload: bool | str = False,
        vae_dtype: torch.dtype | None = None,
        fp8_matmul: bool = False,
    ) -> HunyuanVideoPipeline:
        """Load a model folder in the official `ckpts/` or the diffusers layout (detected) with its `generate.json`
        files as the defaults (`ModelFolder.settings_folders`; its `teacache.json` as the TeaCache polynomial, its
        `sliding_tile.json` as the sliding tile plan), in `dtype` (default: the folder's, else bfloat16) onto `device`
        (default: CUDA when present). `attention_backend` names the attention kernel (see `set_attention_backend`;
        checked before anything loads). `quantize="fp8"` keeps the transformer's block linears in float8 (an official
        fp8 checkpoint loads so by itself; see `hunyuan_video.quant`). `offload` loads onto the CPU and brings each part
        to `device` only while it works (`enable_model_cpu_offload`), to run a big model on a small GPU: "model" (each
        part whole), "blocks" (the transformer's blocks streamed; True means "blocks") or "auto" (whole when it fits the
        free memory). `vae_dtype` loads the VAE in another dtype than `dtype` (e.g. float32 for the decode).
        `fp8_matmul=True` runs the float8 linears as fp8 matmuls (`quant.enable_fp8_matmul`; GPUs of compute capability
        8.9 and up, checked before anything loads)."""
        folder = find_model_folder(path, image=cls.image_to_video)
        config = folder_transformer_config(folder)
        cls.check_model_kind(config)
        defaults = GenerationDefaults.read(*folder.settings_folders)
        dtype = dtype or getattr(torch, defaults.dtype)
        device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        check_attention_backend(attention_backend, device, dtype)
        if fp8_matmul:
            device = check_fp8_matmul(device)
        load_device = torch.device("cpu") if offload else device
        transformer = load_transformer(folder.transformer, config, dtype=dtype, device=load_device, quantize=quantize)
        vae = load_vae(folder.vae, dtype=vae_dtype or dtype, device=load_device)
        for text_encoder in (folder.text_encoder, folder.text_encoder_2):
            check_safetensors(text_encoder)
        text_encoder = cls.load_text_encoder(folder, config, dtype, load_device)
        text_encoder_2 = CLIPTextEncoder.from_pretrained(folder.text_encoder_2, folder.tokenizer_2, dtype, load_device)
        pipe = cls(transformer, vae, text_encoder, text_encoder_2, defaults, read_teacache_coefficients(folder.root),
                   read_sliding_tile_plan(folder.root))
        if fp8_matmul:
            enable_fp8_matmul(transformer, device)
        if offload:
            pipe.enable_model_cpu_offload(device, "blocks" if offload is True else offload)
        pipe.set_attention_backend(attention_backend)
        return pipe

    @classmethod
    def check_model_kind(cls, config: TransformerConfig) -> None:
        """A ValueError when the transformer of `config` is not a text-to-video model."""
        if config.i2v_condition_type is not None:
            raise ValueError(f"this folder holds an {model_kind(config)} model: it needs an image (generate --image "
                             "PATH, or HunyuanVideoImageToVideoPipeline)")

    @classmethod
    def load_text_encoder(cls, folder: ModelFolder, config: TransformerConfig, dtype: torch.dtype,
                          device: torch.device) -> LLMTextEncoder:
        """The LLM text encoder of `folder` (for a transformer of `config`)."""
        return LLMTextEncoder.from_pretrained(folder.text_encoder, folder.tokenizer, dtype, device)

    def set_attention_backend(self, name: str) -> None:
        """Run the transformer's attention on kernel `name` ("auto", "sdpa", "flash", "flash3", "sage", "flex"; see
        `models/attention.py`); an `AttentionBackendError` (a ValueError) naming what is missing when it cannot run
        on the pipeline's device and dtype."""
        check_attention_backend(name, self.device, self.dtype)
        self.transformer.attention_backend = name

    def to(self, device: torch.device | str) -> HunyuanVideoPipeline:
        """Move every part to `device` (and turn CPU offload off)."""
        self.device, self.offload = check_device(device), None
        for module in (self.transformer, self.vae, self.text_encoder, self.text_encoder_2):
            if module is not None:
                module.to(self.device)
        return self

    def enable_model_cpu_offload(self, device: torch.device | str = "cuda", level: str = "blocks"
                                 ) -> HunyuanVideoPipeline:
        """Keep the parts on the CPU and bring each to `device` only while it works: the text encoders and the VAE
        whole; the transformer at `level` "blocks" with its small parts whole and its blocks one at a time (so only
        one block's weights, the next one's in flight, and the activations sit on the GPU), at "model" whole, at
        "auto" whole when its weights fit `memory_budget.auto_budget` of the device and block by block when not
        (see `pipelines/offload.py`)."""
        offload = ModelOffload(check_device(device), level)
        self.to("cpu")
        self.device, self.offload = offload.device, offload
        return self

    def load_lora_weights(self, path: str | Path, scale: float = 1.0, adapter_name: str | None = None,
                          ignore_unknown: bool = False) -> str:
        """Attach a LoRA file (diffusers, original-key PEFT or kohya layout) to the transformer as adapter
        `adapter_name` (default: the file's stem) at `scale`, unfused; returns the adapter's name."""
        return load_lora(self.transformer, path, scale, adapter_name, ignore_unknown)

    def set_lora_scale(self, adapter_name: str, scale: float) -> None:
        """Change a loaded adapter's scale without reading its file again."""
        set_lora_scale(self.transformer, adapter_name, scale)

    def fuse_lora(self) -> None:
        """Write the loaded adapters, at their scales, into the transformer's weights (`unfuse_lora` undoes it)."""
        fuse_lora(self.transformer)

    def unfuse_lora(self) -> None:
        """Put back the transformer's own weights, bit for bit."""
        unfuse_lora(self.transformer)

    def enable_step_cache(self, method: str, threshold: float | None = None) -> HunyuanVideoPipeline:
        """Skip the transformer's blocks on steps that change little from now on (see `hunyuan_video.step_cache`):
        `method` "teacache" (with `self.teacache_coefficients`) or "fbcache", at `threshold` (None: the method's
        default; 0: never skip). Trades a little quality for speed; `disable_step_cache()` turns it off."""
        self.step_cache = make_step_cache(method, threshold, self.teacache_coefficients)
        return self

    def disable_step_cache(self) -> HunyuanVideoPipeline:
        """Run every step in full again (the default)."""
        self.step_cache = None
        return self

    def enable_sliding_tile_attention(self, window: tuple[int, int, int] | None = None,
                                      tile: tuple[int, int, int] | None = None,
                                      full_steps: int | None = None) -> HunyuanVideoPipeline:
        """Run the transformer's attention as sliding tile attention from now on (see
        `hunyuan_video.sparse_attention`): each video query tile sees the `window` (tiles per axis, T H W) of tiles
        around it plus all text, after the first `full_steps` steps of full attention (None: 0). `tile`: tokens per
        tile (None: the largest divisor of the grid up to STA's 6 x 8 x 8). Without `window`, the windows per block
        and head, the tile and the full steps of `sliding_tile_plan` (`full_steps` overrides the plan's). Trades a
        little quality for speed; `disable_sliding_tile_attention()` turns it off."""
        if window is not None:
            sliding_tile = SlidingTile(window, tile, full_steps or 0)
        elif self.sliding_tile_plan is None:
            raise ValueError("no sliding tile window given and no searched plan (sliding_tile.json, written by "
                             "`hunyuan-video calibrate-sta`) in the model folder")
        elif tile is not None:
            raise ValueError("a searched sliding tile plan has its own tile: give a tile only with a window")
        else:
            sliding_tile = SlidingTile.from_plan(self.sliding_tile_plan, full_steps)
        sliding_tile.check_model(self.transformer.config)
        self.sliding_tile = sliding_tile
        return self

    def disable_sliding_tile_attention(self) -> HunyuanVideoPipeline:
        """Run full attention on every step again (the default)."""
        self.sliding_tile = None
        return self

    def enable_parallel(self, config: ParallelConfig) -> HunyuanVideoPipeline:
        """Share each transformer forward among the ranks of the initialised `torch.distributed` world as `config`
        says (Ulysses x ring sequence parallelism, CFG parallelism; the VAE's tiles shared out among all ranks);
        every rank calls this and then the pipeline
        with the same arguments, and gets the same video. Only rank 0 shows progress. A ValueError when the world
        size or the transformer's heads do not fit `config`."""
        config.check_heads(self.transformer.config.heads_num)
        self.parallel = ParallelTransformer(self.transformer, ParallelGroups.build(config))
        self.progress = dist.get_rank() == 0
        return self

    def _on_device(self, module: nn.Module, stream_blocks: bool = False) -> AbstractContextManager:
        """`module` on the device for the time of a `with` block (it is there already unless offload is on)."""
        return nullcontext() if self.offload is None else self.offload.on_device(module, stream_blocks)

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's dtype, in which it takes its inputs."""
        return next(self.transformer.parameters()).dtype

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

    def negative_prompts(self, prompts: list[str], negative_prompt: str | list[str] | None) -> list[str]:
        """The negative prompt of each prompt for true CFG: `negative_prompt` (one for all, or one each), else the
        defaults' (the official NEGATIVE_PROMPT unless the model folder says otherwise; "" is the empty caption)."""
        negative = self.defaults.negative_prompt if negative_prompt is None else negative_prompt
        return [negative] * len(prompts) if isinstance(negative, str) else list(negative)

    def check_inputs(
        self,
        prompts: list[str],
        negative_prompt: str | list[str] | None,
        height: int,
        width: int,
        num_frames: int,
        guidance_scale: float | None,
        cfg_scale: float,
        flow_shift: float,
        seed: int | None,
        output_type: str,
    ) -> None:
        """Raise a ValueError, saying what to use instead, for any input a call cannot honour, before any work.
        `guidance_scale` and `negative_prompt` are as the caller gave them (None: not given)."""
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("no prompt given: pass a string or a non-empty list of strings")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be 'np', 'pt' or 'latent', got {output_type!r}")
        self.check_size(height, width, num_frames)
        if guidance_scale is not None and not self.transformer.config.guidance_embed:
            raise ValueError("guidance_scale sets the embedded guidance of a guidance-distilled model, and this "
                             "transformer has no guidance embedding: use cfg_scale > 1 (true classifier-free "
                             "guidance) instead")
        for name, value in (("guidance_scale", guidance_scale), ("cfg_scale", cfg_scale), ("flow_shift", flow_shift)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if cfg_scale < 1:
            raise ValueError(f"cfg_scale must be at least 1 (1: no true classifier-free guidance; > 1: guidance "
                             f"against the negative prompt), got {cfg_scale}")
        if seed is not None and not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        if self.parallel is not None:
            if self.step_cache is not None:
                raise ValueError("a step cache does not run with parallel inference: disable_step_cache() (drop "
                                 "--cache) or run on one rank")
            if self.sliding_tile is not None:
                raise ValueError("sliding tile attention does not run with parallel inference: "
                                 "disable_sliding_tile_attention() (drop --sparse-attention) or run on one rank")
            config = self.parallel.groups.config
            if config.cfg_parallel and cfg_scale <= 1:
                raise ValueError(f"cfg parallel runs the two halves of true classifier-free guidance: use cfg_scale "
                                 f"> 1, got {cfg_scale}")
            latent = self.latent_shape(1, height, width, num_frames)[2:]
            config.check_grid(tuple(n // p for n, p in zip(latent, self.transformer.config.patch_size)))
        if self.sliding_tile is not None:
            latent = self.latent_shape(1, height, width, num_frames)[2:]
            self.sliding_tile.plan(tuple(n // p for n, p in zip(latent, self.transformer.config.patch_size)))
        if cfg_scale > 1 and len(negatives := self.negative_prompts(prompts, negative_prompt)) != len(prompts):
            raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
        if isinstance(self.step_cache, TeaCache) and self.offload is not None:
            raise ValueError("the TeaCache step cache reads the first block outside its forward, which CPU offload "
                             "does not bring to the device: use the fbcache step cache with offload")
        if cfg_scale == 1 and negative_prompt is not None:
            warnings.warn("negative_prompt is used only with cfg_scale > 1 (true classifier-free guidance): ignored",
                          stacklevel=4)  # the caller of __call__ (under no_grad)

    def prepare_latents(
        self,
        batch: int,
        height: int,
        width: int,
        num_frames: int,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int | None]:
        """The starting latents in float32 on the device and the seed of their noise (None for given `latents`).
        The noise comes from `generator` (a CPU generator), else from `seed` (random when None), drawn on the CPU in
        float32 so that a seed gives the same video on every device."""
        shape = self.latent_shape(batch, height, width, num_frames)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must be shaped {shape} for this size, got {tuple(latents.shape)}")
            return latents.to(self.device, torch.float32), None
        if generator is None:
            if seed is None:
                seed = random.randrange(2**31) if self.parallel is None else self.parallel.groups.common_seed()
            generator = torch.Generator("cpu").manual_seed(seed)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        return noise.to(self.device, torch.float32), generator.initial_seed()

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], negative_prompts: list[str] | None = None) -> PromptEmbeds:
        """Both text encoders over `prompts` and `negative_prompts` (one forward each), the negatives first; with
        `release_text_encoders` the encoders are dropped afterwards."""
        if self.text_encoder is None:
            raise ValueError("the text encoders were released after the first prompt (release_text_encoders=True): "
                             "load the pipeline again to encode another")
        texts = prompts + list(negative_prompts or [])
        with self._on_device(self.text_encoder):
            states, mask = self.encode_llm(texts, len(prompts))
        with self._on_device(self.text_encoder_2):
            pooled = self.text_encoder_2(texts)
        if self.release_text_encoders:  # their memory goes back before the denoising needs it
            self.text_encoder = self.text_encoder_2 = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        states, mask, pooled = states.to(self.device).to(self.dtype), mask.cpu(), pooled.to(self.device).to(self.dtype)
        if negative_prompts:
            n = len(prompts)
            states, mask, pooled = (torch.cat([x[n:], x[:n]]) for x in (states, mask, pooled))
        return PromptEmbeds(states, mask, pooled)

    def encode_llm(self, texts: list[str], prompts: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The LLM encoder's states and mask of `texts`: the first `prompts` of them prompts, the rest negatives."""
        return self.text_encoder(texts)

    @torch.no_grad()
    def denoise(
        self,
        latents: torch.Tensor,
        sigmas: list[float],
        embeds: PromptEmbeds,
        guidance_scale: float,
        cfg_scale: float,
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Walk `latents` from `sigmas[0]` (noise) to `sigmas[-1]` (data), one `step` per pair of sigmas, with the
        transformer on the device throughout (its blocks streamed under offload); `callback(i, latents)` after
        step i. `guidance_scale` feeds the guidance embedding of a model that has one. A step cache, when enabled,
        starts afresh."""
        if self.step_cache is not None:
            self.step_cache.start(len(sigmas) - 1)
        if self.sliding_tile is not None:
            self.sliding_tile.start()
        guidance = None
        if self.transformer.config.guidance_embed:
            guidance = torch.full((embeds.states.shape[0],), guidance_scale * 1000.0, device=self.device)
        with self._on_device(self.transformer, stream_blocks=True):
            for i in range(len(sigmas) - 1):
                latents = self.step(latents, sigmas[i], sigmas[i + 1], embeds, guidance, cfg_scale)
                if callback is not None:
                    callback(i, latents)
        return latents

    def step(self, latents: torch.Tensor, sigma: float, sigma_next: float, embeds: PromptEmbeds,
             guidance: torch.Tensor | None, cfg_scale: float) -> torch.Tensor:
        """One Euler step of the flow from `sigma` to `sigma_next` along `predict_velocity` (float32 latents)."""
        velocity = self.predict_velocity(latents, sigma, embeds, guidance, cfg_scale)
        return euler_step(latents, velocity, sigma, sigma_next)

    def predict_velocity(self, latents: torch.Tensor, sigma: float, embeds: PromptEmbeds,
                         guidance: torch.Tensor | None, cfg_scale: float) -> torch.Tensor:
        """The transformer's velocity at `sigma` in float32; with true CFG (`cfg_scale > 1`) the negative and the
        positive half of one batched forward, combined as `neg + cfg_scale * (pos - neg)`. With a step cache the
        forward runs as `embed`, the cache in place of `blocks`, `head`; with sliding tile attention the state from
        `embed` carries its attention layout."""
        do_cfg = cfg_scale > 1
        x = torch.cat([latents, latents]) if do_cfg else latents
        t = torch.full((x.shape[0],), sigma * 1000.0, device=self.device)
        inputs = (x.to(self.dtype), t, embeds.states, embeds.mask, embeds.pooled, guidance)
        if self.step_cache is not None or self.sliding_tile is not None:
            model = self.transformer
            state = model.embed(*inputs)
            if self.sliding_tile is not None:
                state = self.sliding_tile.apply(state)
            v = model.head(model.blocks(state) if self.step_cache is None else self.step_cache(model, state)).float()
        else:
            v = (self.transformer if self.parallel is None else self.parallel)(*inputs).float()
        if do_cfg:
            v_neg, v_pos = v.chunk(2)
            v = v_neg + cfg_scale * (v_pos - v_neg)
        return v

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The VAE's (tiled) decode of the final latents: `(B, T, H, W, 3)` float32 on the CPU, about [-1, 1]. With
        `enable_parallel` the tiles are shared out among all ranks."""
        with self._on_device(self.vae):
            vae_dtype = next(self.vae.parameters()).dtype
            latents = (latents / self.vae.config.scaling_factor).to(vae_dtype)
            video = self.vae.decode(latents) if self.parallel is None else decode_shared(self.vae, latents)
        return video.float().permute(0, 2, 3, 4, 1).cpu()

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        cfg_scale: float | None = None,
        flow_shift: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> VideoOutput:
        """Sample videos for `prompt`; every sampling argument left None takes `self.defaults`' value.

        `guidance_scale` is the embedded guidance of the CFG-distilled model (fed as `guidance * 1000`; an error
        for a model without a guidance embedding); `cfg_scale > 1` adds true classifier-free guidance against
        `negative_prompt` (default: the defaults', the official NEGATIVE_PROMPT unless the model folder says
        otherwise), batched into one forward per step. The starting noise comes from `latents`, else from
        `generator` (a CPU generator), else from `seed` (random when None), drawn on the CPU in float32 so that a
        seed gives the same video on every device. `output_type`: "np" uint8 `(B, T, H, W, 3)`; "pt" float32
        tensor `(B, T, H, W, 3)` in [0, 1]; "latent" the final latents. `callback(step, latents)` runs after every
        step. With a step cache enabled (`enable_step_cache`), `cache_steps` of the output counts full and skipped
        steps.
        """
        d = self.defaults
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        height, width = d.height if height is None else height, d.width if width is None else width
        num_frames = d.frames if num_frames is None else num_frames
        steps = d.steps if num_inference_steps is None else num_inference_steps
        cfg_scale = d.cfg_scale if cfg_scale is None else cfg_scale
        flow_shift = d.shift if flow_shift is None else flow_shift

        # 1. Check the inputs, before any work
        self.check_inputs(prompts, negative_prompt, height, width, num_frames, guidance_scale, cfg_scale, flow_shift,
                          seed, output_type)
        guidance_scale = d.guidance if guidance_scale is None else guidance_scale
        sigmas = sampling_sigmas(steps, flow_shift).tolist()
        # 2. The starting latents
        latents, seed = self.prepare_latents(len(prompts), height, width, num_frames, seed, generator, latents)

        timings = {}
        with tqdm(total=steps + (output_type != "latent"), desc="denoise", disable=not self.progress) as bar:
            # 3. The text conditions (with the negatives of true CFG)
            start = time.perf_counter()
            embeds = self.encode_prompt(prompts, self.negative_prompts(prompts, negative_prompt)
                                        if cfg_scale > 1 else None)
            timings["encode_s"] = self._lap(start)

            # 4. The denoising loop
            def after_step(i: int, x: torch.Tensor) -> None:
                if callback is not None:
                    callback(i, x)
                bar.update()

            start = time.perf_counter()
            latents = self.denoise(latents, sigmas, embeds, guidance_scale, cfg_scale, after_step)
            timings["denoise_s"] = self._lap(start)
            cache_steps = None if self.step_cache is None else self.step_cache.stats
            if output_type == "latent":
                return VideoOutput(latents, seed, timings, cache_steps)

            # 5. Decode to frames
            bar.set_description("decode")
            start = time.perf_counter()
            video = self.decode(latents)
            timings["decode_s"] = self._lap(start)
            bar.update()
        frames = (video / 2 + 0.5).clamp(0, 1) if output_type == "pt" else to_uint8(video.numpy())
        return VideoOutput(frames, seed, timings, cache_steps)

    def _lap(self, start: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start
