"""Text-to-video training of the HunyuanVideo transformer with flow matching, reading a latent cache.

One step: pick a bucket of the current stage, draw a batch of cached latents and text states, drop some
captions (classifier-free guidance), sample t, mix `x_t = (1 - t) x0 + t noise`, predict `noise - x0`, MSE. With
`distill`, the target is instead a frozen teacher's guided velocity at a scale drawn per sample (see `train.distill`).
An image-to-video transformer learns with the first latent frame as its condition in an `i2v_prob` share of the
batches (see `image_condition`).
Every random draw of step `s` comes from a generator seeded with `(seed, s)`, so a resumed run replays
exactly the batches, noise and times an uninterrupted run would have seen.

With `ulysses_degree` U > 1 (sequence parallelism, under `torch.distributed`), each group of U consecutive ranks runs
one forward with every sample's video tokens split U ways (`hunyuan_video.parallel`, differentiable), and the rows of
a batch are split over the world / U groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from hunyuan_video.checkpoint import load_transformer, save_transformer
from hunyuan_video.config import TransformerConfig, config_from_dict
from hunyuan_video.files import atomic_path
from hunyuan_video.lora import (
    DEFAULT_BLOCKS,
    DEFAULT_TARGETS,
    AdapterState,
    LoraWeight,
    adapter_names,
    adapter_off,
    new_adapter,
    target_modules,
)
from hunyuan_video.lora_formats import save_lora
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.parallel import ParallelConfig, ParallelGroups, ParallelTransformer
from hunyuan_video.scheduler import TIME_SAMPLERS, add_noise, sample_time, velocity_target
from hunyuan_video.train.cache import LatentCache, bucket_name, llava_folders, read_sources
from hunyuan_video.train.common import (
    EMA,
    LR_SCHEDULES,
    autocast_context,
    config_from_fields,
    resolve_device,
    stage_at,
)
from hunyuan_video.train.distill import (
    Distill,
    check_student,
    distillation_loss,
    draw_scales,
    load_teacher,
    student_from_teacher,
)
from hunyuan_video.train.distributed import check_divisible, is_main, micro_batches, rank_and_world, shard_model
from hunyuan_video.train.loop import Periodic, adamw, apply_gradients, lr_schedule, run_loop
from hunyuan_video.train.run_dir import check_run_dir


@dataclass
class Stage:
    """One step of the curriculum: the buckets `(frames, height, width)` it trains, for how long, in what batch."""

    name: str
    steps: int
    batch_size: int
    buckets: tuple[tuple[int, int, int], ...]
    bucket_weights: tuple[float, ...] | None = None  # how often each bucket is drawn; equal when None

    def __post_init__(self) -> None:
        self.buckets = tuple(tuple(int(v) for v in b) for b in self.buckets)
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError(f"stage {self.name!r}: steps and batch_size must be positive")
        if not self.buckets or any(len(b) != 3 for b in self.buckets):
            raise ValueError(f"stage {self.name!r}: buckets must be a non-empty list of [frames, height, width]")
        if self.bucket_weights is not None:
            self.bucket_weights = tuple(float(w) for w in self.bucket_weights)
            if len(self.bucket_weights) != len(self.buckets) or min(self.bucket_weights) < 0:
                raise ValueError(f"stage {self.name!r}: give one non-negative weight per bucket")


@dataclass
class ExtraData:
    """A further dataset trained beside the config's `data`, cached in its own `cache_dir` with the same encoders;
    each of its clips is drawn `repeats` times as often as one of `data`'s (e.g. to oversample a kind of clip).

    `preserve` (LoRA runs): the target of its clips is the frozen base model's velocity (the adapter off) instead of
    the clip's own, so that the adapter learns to leave what the base does on such clips as it is (prior
    preservation by self-distillation), rather than to fit them anew."""

    data: str
    cache_dir: str
    repeats: float = 1.0
    preserve: bool = False

    def __post_init__(self) -> None:
        self.repeats = float(self.repeats)
        if self.repeats <= 0:
            raise ValueError(f"extra_data {self.data}: repeats must be positive, got {self.repeats}")


@dataclass
class LoraTrain:
    """Train a LoRA adapter instead of the whole transformer: rank `rank` and `alpha` (default: the rank) on the
    linears `targets` (names inside a block) of `blocks` ("double_blocks", "single_blocks", or one by index,
    "double_blocks.3"); the base weights stay frozen. `fp8_base`: the frozen base (`init_from`) holds its blocks'
    linears in float8, quantised at load as `--fp8` does (about half the bytes of bf16; the adapters stay float32)."""

    rank: int = 16
    alpha: float | None = None
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    blocks: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKS))
    fp8_base: bool = False

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"lora.rank must be at least 1, got {self.rank}")
        self.alpha = float(self.rank if self.alpha is None else self.alpha)


EXPORT_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class DiTTrainConfig:
    """Everything `hunyuan-video cache` and `hunyuan-video train` read; paths are relative to the working directory."""

    # What `--resume` lets differ from the run's config.json: bookkeeping, samples and the export, which leave the
    # training numbers as they are. Any other field is the run's own and must stay.
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = (
        "note", "out_dir", "device", "gradient_checkpointing", "log_every", "checkpoint_every", "sample_every",
        "sample_prompts", "sample_steps", "sample_guidance", "sample_size", "sample_shift", "export", "export_dtype",
        "fsdp", "grad_accum_steps")

    data: str  # dataset folder (its metadata.jsonl lists clips and captions)
    vae: str  # the frozen parts: a VAE checkpoint or folder, and the two text encoder folders
    text_encoder: str
    text_encoder_2: str
    cache_dir: str
    out_dir: str
    stages: list[Stage]
    extra_data: list[ExtraData] = field(default_factory=list)  # more datasets, each with its own cache
    note: str = ""  # free text kept with the run (what it trains, why the recipe is what it is)
    transformer: dict[str, Any] = field(default_factory=dict)  # TransformerConfig fields of a fresh model
    init_from: str | None = None  # a transformer checkpoint to fine-tune instead of a fresh model
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # after warm-up: "constant", or "cosine" down to 10% at the last step
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    time_sampling: str = "logit_normal"
    time_shift: float = 1.0  # for "shifted": t' = s t / (1 + (s - 1) t)
    logit_mean: float = 0.0
    logit_std: float = 1.0
    caption_dropout: float = 0.1
    # CLIP's pooled vector alone replaced by the empty caption's, so that the model must read the LLM's tokens
    pooled_dropout: float = 0.0
    gradient_checkpointing: bool = False
    # under torchrun: shard the transformer, its gradients, optimiser state and EMA over the ranks with FSDP2 (one
    # unit per block); False keeps a whole copy on every rank. No effect on one process
    fsdp: bool = False
    grad_accum_steps: int = 1  # micro-batches per step on each rank: a stage's batch_size is the global batch
    # ranks that split each sample's video tokens (Ulysses sequence parallelism; divides the heads and the world
    # size; the rest of the world is data parallel)
    ulysses_degree: int = 1
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when torch sees a GPU, else the CPU
    log_every: int = 10
    checkpoint_every: int = 500
    sample_every: int = 0  # 0: only at the end
    sample_prompts: list[str] = field(default_factory=list)
    sample_steps: int = 20
    sample_guidance: float = 5.0
    sample_size: tuple[int, int, int] = (17, 64, 64)  # frames, height, width
    sample_shift: float = 7.0
    embedded_guidance: float = 6.0  # fed to models with a guidance embedding (fine-tuning the released model)
    text_max_length: int = 256  # LLM tokens after the template (the official 256)
    export: str | None = None  # also write the final EMA transformer here (a .safetensors path)
    export_dtype: str = "float32"  # ... in this dtype ("float16" halves the file; loading casts it back)
    lora: LoraTrain | None = None  # train a LoRA adapter on a frozen transformer (export then writes the adapter)
    distill: Distill | None = None  # distil a teacher's true CFG into the guidance embedding (see `train.distill`)
    # The share of batches that take their first latent frame as the image condition, for an image-to-video
    # transformer (None: 1 for one, 0 for text-to-video; see `image_condition`).
    i2v_prob: float | None = None

    def __post_init__(self) -> None:
        if self.lora is not None and not isinstance(self.lora, LoraTrain):
            self.lora = config_from_fields(LoraTrain, self.lora, "lora")
        if self.distill is not None and not isinstance(self.distill, Distill):
            self.distill = config_from_fields(Distill, self.distill, "distill")
        self.stages = [s if isinstance(s, Stage) else config_from_fields(Stage, s, f"stages[{i}]")
                       for i, s in enumerate(self.stages)]
        self.extra_data = [e if isinstance(e, ExtraData) else config_from_fields(ExtraData, e, "extra_data")
                           for e in self.extra_data]
        cache_dirs = [str(Path(c).resolve()) for _, c, _ in self.sources]
        if len(set(cache_dirs)) != len(cache_dirs):
            raise ValueError(f"each dataset needs its own cache_dir, got {[c for _, c, _ in self.sources]}")
        self.betas = tuple(self.betas)
        self.sample_size = tuple(self.sample_size)
        if not self.stages:
            raise ValueError("the config needs at least one stage")
        if self.time_sampling not in TIME_SAMPLERS:
            raise ValueError(f"time_sampling {self.time_sampling!r} is not one of {TIME_SAMPLERS}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if not 0.0 <= self.pooled_dropout <= 1.0:
            raise ValueError(f"pooled_dropout must be in [0, 1], got {self.pooled_dropout}")
        if self.export_dtype not in EXPORT_DTYPES:
            raise ValueError(f"export_dtype {self.export_dtype!r} is not one of {EXPORT_DTYPES}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {self.lr_schedule!r} is not one of {LR_SCHEDULES}")
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.lora is not None and self.lora.fp8_base and (self.init_from is None or self.distill is not None):
            raise ValueError("lora.fp8_base quantises the frozen base of init_from: it needs init_from and no distill")
        if self.lora is None and any(e.preserve for e in self.extra_data):
            raise ValueError("extra_data preserve keeps the frozen base's predictions: it needs a LoRA run (set lora)")
        if self.fsdp and self.lora is not None:
            raise ValueError("fsdp shards a transformer that trains whole; a LoRA run keeps its frozen base on every "
                             "rank: set fsdp to false")
        if self.i2v_prob is not None and not 0.0 <= self.i2v_prob <= 1.0:
            raise ValueError(f"i2v_prob must be in [0, 1], got {self.i2v_prob}")
        if self.ulysses_degree < 1:
            raise ValueError(f"ulysses_degree must be at least 1, got {self.ulysses_degree}")
        if self.distill is not None:
            self._check_distill()
        elif (self.init_from is None) == (not self.transformer):
            raise ValueError("give one of `transformer` (the config of a fresh model) or `init_from` (weights), "
                             "not both: a fine-tune's architecture is that of its weights")

    def _check_distill(self) -> None:
        if self.teacher is None:
            raise ValueError("distill needs a teacher: set distill.teacher or init_from (the teacher's weights)")
        if self.transformer:
            raise ValueError("distill: the student's architecture is the teacher's; leave out `transformer`")
        if self.lora is not None:
            raise ValueError("distill trains the whole student (its new guidance embedding included); leave out lora")
        if self.ulysses_degree > 1:
            raise ValueError("distill runs the student and teacher whole on each rank: set ulysses_degree to 1")

    @property
    def teacher(self) -> str | None:
        """The distillation teacher's weights: `distill.teacher`, else `init_from`; None when not distilling."""
        return None if self.distill is None else self.distill.teacher or self.init_from

    @property
    def sources(self) -> list[tuple[str, str, float]]:
        """(dataset, cache folder, repeats) of `data` (repeats 1) and of each of `extra_data`."""
        return [(self.data, self.cache_dir, 1.0)] + [(e.data, e.cache_dir, e.repeats) for e in self.extra_data]

    @property
    def total_steps(self) -> int:
        """The length of the whole curriculum."""
        return sum(s.steps for s in self.stages)

    @property
    def buckets(self) -> list[tuple[int, int, int]]:
        """Every bucket some stage trains, sorted (what the cache must hold)."""
        return sorted({b for s in self.stages for b in s.buckets})

    def stage_at(self, step: int) -> Stage:
        """The stage that trains global step `step` (0-based); a ValueError past the last step (see `stage_at`)."""
        return stage_at(self.stages, step)


def draw_batch(cache: LatentCache, stage: Stage, caption_dropout: float, generator: torch.Generator,
               pooled_dropout: float = 0.0, preserve: torch.Tensor | None = None) -> dict:
    """A batch of one bucket of `stage`: `x0` sampled from the cached posterior and the clips' text states, and with
    `preserve` (a flag per source of the cache, see `LatentCache.source`) the `preserve` flag of each row.

    A caption is replaced by the empty caption with probability `caption_dropout` (for classifier-free guidance; in
    a LLaVA cache, the empty caption with the row's image);
    of the others, CLIP's pooled vector alone is with probability `pooled_dropout` (the LLM's states stay), so
    that the caption reaches the model through its tokens, not only through the pooled bag of words.
    """
    weights = torch.tensor(stage.bucket_weights or [1.0] * len(stage.buckets))
    bucket = stage.buckets[int(torch.multinomial(weights, 1, generator=generator))]
    latents = cache.buckets[bucket]
    if cache.weights is None:
        idx = torch.randint(len(latents), (stage.batch_size,), generator=generator)
    else:
        idx = torch.multinomial(cache.weights[bucket], stage.batch_size, replacement=True, generator=generator)
    mean, std = latents.mean[idx].float(), latents.std[idx].float()
    x0 = mean + std * torch.randn(mean.shape, generator=generator)
    text, clip = cache.text, latents.clip[idx]
    null = text.null_rows(clip)
    drop = torch.rand(stage.batch_size, generator=generator) < caption_dropout
    drop_pooled = drop
    if pooled_dropout > 0:  # drawn only when asked for, so that other runs keep their exact batches
        drop_pooled = drop | (torch.rand(stage.batch_size, generator=generator) < pooled_dropout)
    batch = {
        "x0": x0,
        "text_states": torch.where(drop[:, None, None], text.null_states[null], text.states[clip]).float(),
        "text_mask": torch.where(drop[:, None], text.null_mask[null], text.mask[clip]),
        "text_states_2": torch.where(drop_pooled[:, None], text.null_pooled, text.pooled[clip]).float(),
    }
    if preserve is not None:
        batch["preserve"] = preserve[cache.source[clip]] if cache.source is not None else preserve[0].expand(len(clip))
    return batch


def empty_captions(cache: LatentCache, batch: dict) -> dict:
    """The empty caption's text states (`null_states`, `null_mask`, `null_pooled`), one row per row of `batch`."""
    rows, text = len(batch["x0"]), cache.text
    return {"null_states": text.null_states.float().expand(rows, -1, -1),
            "null_mask": text.null_mask.expand(rows, -1), "null_pooled": text.null_pooled.float().expand(rows, -1)}


def build_transformer(config: DiTTrainConfig) -> HunyuanVideoTransformer:
    """A fresh transformer (seeded by `config.seed`) or the weights of `config.init_from`, in float32; when
    distilling, the student: `init_from` if it embeds guidance, else the teacher with a new guidance embedding (see
    `distill.student_from_teacher`)."""
    if config.distill is not None:
        teacher = load_teacher(config.teacher)
        start = teacher if config.init_from is None else load_transformer(config.init_from, dtype=torch.float32)
        if not start.config.guidance_embed:
            start = student_from_teacher(start, config.seed)
        check_student(start, teacher)
        return start
    if config.init_from:
        fp8 = config.lora is not None and config.lora.fp8_base
        return load_transformer(config.init_from, dtype=torch.float32, quantize="fp8" if fp8 else None)
    torch.manual_seed(config.seed)
    return HunyuanVideoTransformer(config_from_dict(TransformerConfig, config.transformer))


def i2v_share(config: DiTTrainConfig, model_config: TransformerConfig) -> float:
    """The share of batches conditioned on their first latent frame for a transformer of `model_config`; a ValueError
    for what cannot train: an image share for a text-to-video model, a token-replace model without images in every
    batch or with one-frame buckets (it reads its first latent frame as the image always), distillation or samples
    of an image-to-video model."""
    kind = model_config.i2v_condition_type
    share = config.i2v_prob if config.i2v_prob is not None else float(kind is not None)
    if llava_folders(config.text_encoder) is not None and (share != 1 or any(b[0] == 1 for b in config.buckets)):
        raise ValueError(f"the text encoder {config.text_encoder} is LLaVA: its cached states hold each clip's first "
                         "frame, so every batch must train image-to-video (an image-to-video transformer, i2v_prob 1, "
                         "no one-frame buckets)")
    if kind is None:
        if share > 0:
            raise ValueError("i2v_prob needs an image-to-video transformer: set transformer.i2v_condition_type "
                             "('token_replace' or 'latent_concat') or fine-tune image-to-video weights")
        return share
    if config.distill is not None:
        raise ValueError(f"distill trains text-to-video students; this transformer is {kind} image-to-video")
    if config.sample_prompts:
        raise ValueError(f"samples of an image-to-video ({kind}) transformer need images: leave sample_prompts empty")
    if kind == "token_replace":
        if share != 1:
            raise ValueError(f"a token_replace transformer always reads its first latent frame as the image: "
                             f"i2v_prob must be 1, got {share}")
        if one_frame := [b for b in config.buckets if b[0] == 1]:
            raise ValueError(f"a token_replace transformer trains on videos (the first latent frame is the image): "
                             f"drop the one-frame buckets {one_frame}")
    return share


def image_condition(model_config: TransformerConfig, x0: torch.Tensor, x_t: torch.Tensor, image: bool
                    ) -> tuple[torch.Tensor, slice]:
    """The transformer input for noisy latents `x_t` of clean latents `x0`, and the latent frames the loss covers.

    Text-to-video: `x_t`, every frame. Token replace: the clean first frame in place of the noisy one (the
    transformer modulates it from t = 0 by itself), the loss on frames 1.. only. Latent concat: `x_t`, then for an
    `image` batch the clean first frame (zeros after) and a mask of 1 in frame 0, else zeros and a zero mask; the
    loss on every frame."""
    kind = model_config.i2v_condition_type
    if kind == "token_replace":
        return torch.cat([x0[:, :, :1], x_t[:, :, 1:]], dim=2), slice(1, None)
    if kind == "latent_concat":
        condition, mask = torch.zeros_like(x0), torch.zeros_like(x0[:, :1])
        if image:
            condition[:, :, :1], mask[:, :, :1] = x0[:, :, :1], 1
        return torch.cat([x_t, condition, mask], dim=1), slice(None)
    return x_t, slice(None)


def draw_image(share: float, frames: int, generator: torch.Generator) -> bool:
    """Whether a batch of `frames` latent frames takes its first frame as the image, with probability `share` (drawn
    only for a share strictly between 0 and 1, so that other runs keep their exact batches); a one-frame batch never
    does."""
    image = share >= 1 or (share > 0 and bool(torch.rand(1, generator=generator) < share))
    return image and frames > 1


def draw_noise(shape: torch.Size, config: DiTTrainConfig, generator: torch.Generator) -> dict:
    """The times `t` (one per row) and the noise of a batch of latents of `shape`, drawn on the CPU: the same numbers
    on every device."""
    t = sample_time(shape[0], config.time_sampling, config.time_shift, config.logit_mean, config.logit_std,
                    generator=generator)
    return {"t": t, "noise": torch.randn(shape, generator=generator)}


def velocity_loss(model: HunyuanVideoTransformer, batch: dict, config: DiTTrainConfig,
                  groups: ParallelGroups | None = None) -> torch.Tensor:
    """MSE between the predicted and the true velocity `noise - x0` at `x_t = (1 - t) x0 + t noise`, for a batch
    that carries its `t` and `noise` (see `draw_noise`) and, for an image-to-video model, whether it is an `image`
    batch (see `image_condition`), on the model's device. The rows flagged in `batch["preserve"]` (if any) take the
    model's own prediction with its LoRA adapter off as their target instead. With `groups` (see
    `sequence_parallel_groups`), the forward is shared by the ranks of this rank's sequence group, each of which gets
    the whole loss."""
    device = next(model.parameters()).device
    x0, noise, t = batch["x0"].to(device), batch["noise"].to(device), batch["t"].to(device)
    x_t, target = add_noise(x0, noise, t), velocity_target(x0, noise)
    x_in, frames = image_condition(model.config, x0, x_t, batch.get("image", False))
    guidance = None
    if model.config.guidance_embed:
        guidance = torch.full((x0.shape[0],), config.embedded_guidance * 1000.0, device=device)
    forward = model if groups is None else ParallelTransformer(model, groups)

    def predict(rows: torch.Tensor | slice) -> torch.Tensor:
        with autocast_context(device):
            return forward(x_in[rows], t[rows] * 1000.0, batch["text_states"][rows].to(device),
                           batch["text_mask"][rows], batch["text_states_2"][rows].to(device),
                           None if guidance is None else guidance[rows]).float()

    pred = predict(slice(None))
    if "preserve" in batch and bool(batch["preserve"].any()):
        rows = batch["preserve"].to(device)
        with torch.no_grad(), adapter_off(model, LORA_NAME):
            target[rows] = predict(rows)
    return F.mse_loss(pred[:, :, frames], target[:, :, frames])


def flow_matching_loss(
    model: HunyuanVideoTransformer, batch: dict, config: DiTTrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """`velocity_loss` of `batch` at times and noise drawn from `generator`."""
    return velocity_loss(model, {**batch, **draw_noise(batch["x0"].shape, config, generator)}, config)


def sequence_parallel_groups(ulysses_degree: int) -> ParallelGroups | None:
    """The process groups of Ulysses sequence parallelism over `ulysses_degree` consecutive ranks, data parallel
    over the world / `ulysses_degree` groups (every rank must call it); None for degree 1. A ValueError when the
    degree does not divide the world size."""
    if ulysses_degree == 1:
        return None
    world = rank_and_world()[1]
    if world % ulysses_degree:
        raise ValueError(f"ulysses_degree {ulysses_degree} does not divide the {world} process(es) of this run: launch "
                         f"a multiple of {ulysses_degree} with torchrun --nproc-per-node")
    return ParallelGroups.build(ParallelConfig(ulysses_degree=ulysses_degree), replicas=world // ulysses_degree)


def check_sequence_split(groups: ParallelGroups, model: HunyuanVideoTransformer, cache: LatentCache) -> None:
    """A ValueError unless the model's heads and every bucket's video tokens split over the sequence group."""
    groups.config.check_heads(model.config.heads_num)
    for bucket, latents in cache.buckets.items():
        grid = tuple(size // p for size, p in zip(latents.mean.shape[2:], model.config.patch_size))
        try:
            groups.config.check_grid(grid)
        except ValueError as error:
            raise ValueError(f"bucket {bucket_name(bucket)}: {error}") from None


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def train(config: DiTTrainConfig, resume: bool = False, max_steps: int | None = None, progress: bool = True,
          overwrite: bool = False) -> Path:
    """Run (or with `resume`, continue) the curriculum; returns the output folder.

    Prints the number of trainable parameters once. Writes `checkpoint.pt` (model, EMA, optimizer, LR schedule, step,
    RNG), `log.jsonl` (the scalars and the memory peak, see `loop.peak_memory`), `loss.png`,
    `samples/step_N/*.mp4` and `transformer_ema.safetensors` (the averaged weights of the last step) to `out_dir`;
    with `config.lora`, the checkpoint and EMA hold the adapter only and `lora_ema.safetensors` is its LoRA file.
    `max_steps` stops early (after that many steps in total) so that a later `resume` can go on; such a run writes
    its weights and samples to `out_dir` only, `export` is written by a finished run. Under `torch.distributed` each
    rank trains its rows of every batch, `grad_accum_steps` micro-batches at a time (see `train.distributed`; with
    `ulysses_degree` > 1, each sequence group its rows, split along the video tokens), with `fsdp` on a sharded
    transformer (checkpointed in `checkpoint.dcp/`, see `train.sharded_checkpoint`), and rank 0 writes. `out_dir` is
    checked first (`train.run_dir`): a folder holding a run needs `resume` (and a config that fits it) or
    `overwrite`.
    """
    out = Path(config.out_dir)
    check_run_dir(out, config, resume=resume, overwrite=overwrite)
    device = resolve_device(config.device)
    groups = sequence_parallel_groups(config.ulysses_degree)
    for stage in config.stages:
        check_divisible(stage.batch_size, f"stage {stage.name!r}: batch_size", config.grad_accum_steps,
                        config.ulysses_degree)
    cache = read_sources(config)
    preserve = None  # a flag per source: its clips' targets are the frozen base's (`ExtraData.preserve`)
    if any(e.preserve for e in config.extra_data):
        preserve = torch.tensor([False] + [e.preserve for e in config.extra_data])
    model = build_transformer(config).to(device).train()
    share = i2v_share(config, model.config)
    if groups is not None:
        check_sequence_split(groups, model, cache)
    teacher = None if config.distill is None else load_teacher(config.teacher).to(device)
    model.gradient_checkpointing = config.gradient_checkpointing
    if config.fsdp and rank_and_world()[1] > 1:
        # sequence parallelism runs the stages one by one (`ParallelTransformer`): FSDP gathers around them too
        shard_model(model, [*model.double_blocks, *model.single_blocks],
                    methods=("embed", "head") if groups is not None else ())
    trained = trained_part(model, config)
    params = list(trained.parameters())
    optimizer = adamw(params, config.lr, config.betas, config.weight_decay)
    schedule = lr_schedule(optimizer, config.lr_schedule, config.warmup_steps, config.total_steps)
    ema = EMA(trained, config.ema_decay)
    if is_main():
        total = sum(p.numel() for p in model.parameters())
        print(f"trainable parameters: {sum(p.numel() for p in params):,} of {total:,}")

    def step(index: int) -> dict:
        # Every draw of the step, for the whole batch, comes from its own generator: the same on every rank and
        # after a resume; each rank then trains its rows, one micro-batch at a time.
        generator = _step_generator(config.seed, index)
        batch = draw_batch(cache, config.stage_at(index), config.caption_dropout, generator, config.pooled_dropout,
                           preserve)
        batch.update(draw_noise(batch["x0"].shape, config, generator))
        if share > 0:
            batch["image"] = draw_image(share, batch["x0"].shape[2], generator)
        if teacher is not None:
            batch.update(scale=draw_scales(len(batch["x0"]), config.distill, generator), **empty_captions(cache, batch))
        losses = []

        def micro_losses() -> Iterator[torch.Tensor]:
            for micro in micro_batches(batch, config.grad_accum_steps, config.ulysses_degree):
                loss = velocity_loss(model, micro, config, groups) if teacher is None else \
                    distillation_loss(model, teacher, micro)
                losses.append(loss.detach())
                yield loss

        grad_norm = apply_gradients(micro_losses(), optimizer, params, config.grad_clip, schedule)
        ema.update(trained)
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        return {"loss": loss, "grad_norm": grad_norm, "lr": schedule.get_last_lr()[0]}

    def sample(index: int) -> None:
        whole = ema.gathered()  # every rank: a sharded EMA is gathered together
        if is_main():
            write_samples(config, model, whole, index)

    periodic = [Periodic(config.sample_every, sample)] if config.sample_prompts else []
    done = run_loop(step, dict(model=trained, ema=ema, optimizer=optimizer, schedule=schedule), out, config,
                    total_steps=config.total_steps, log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every, max_steps=max_steps, resume=resume, overwrite=overwrite,
                    periodic=periodic, desc="train", progress=progress)
    whole = ema.gathered()
    if is_main():
        own = out / ("lora_ema.safetensors" if config.lora else "transformer_ema.safetensors")
        export_ema(model, whole, own)
        if config.export and done == config.total_steps:
            export_ema(model, whole, config.export, getattr(torch, config.export_dtype))
    return out


LORA_NAME = "lora"  # the trained adapter's name on the model


def trained_part(model: HunyuanVideoTransformer, config: DiTTrainConfig) -> HunyuanVideoTransformer | AdapterState:
    """What the optimiser, the EMA and the checkpoints hold: the whole model, or with `config.lora` a new adapter
    (seeded by `config.seed`) on the frozen model."""
    if config.lora is None:
        return model
    model.requires_grad_(False)
    lora = config.lora
    new_adapter(model, target_modules(model, lora.targets, lora.blocks), lora.rank, lora.alpha, LORA_NAME,
                seed=config.seed)
    return AdapterState(model, LORA_NAME)


def averaged(model: HunyuanVideoTransformer, ema: EMA) -> HunyuanVideoTransformer:
    """A copy of `model` (same device) holding the EMA weights (of the whole model, or of its LoRA adapter), in eval
    mode."""
    if LORA_NAME in adapter_names(model):
        copy = deepcopy(model)
        ema.copy_to(AdapterState(copy, LORA_NAME))
    else:
        copy = HunyuanVideoTransformer(model.config).to(next(model.parameters()).device)
        ema.copy_to(copy)
    return copy.eval()


def export_ema(model: HunyuanVideoTransformer, ema: EMA, path: str | Path, dtype: torch.dtype = torch.float32
               ) -> Path:
    """Write the EMA weights at `path`, in `dtype`, atomically (an earlier file there stays whole until the new one is
    complete): a transformer checkpoint (safetensors with its config), or for LoRA training the adapter as a LoRA
    file in the original-key layout (what `load_lora` reads). `ema` holds whole tensors (of a sharded run: its
    `gathered()` copy)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if LORA_NAME in adapter_names(model):
            weights = AdapterState(averaged(model, ema), LORA_NAME).weights()
            save_lora({m: LoraWeight(w.down.to(dtype), w.up.to(dtype), w.alpha) for m, w in weights.items()}, tmp)
        else:
            save_transformer(averaged(model, ema).to(dtype), tmp)
    return path


@torch.no_grad()
def write_samples(config: DiTTrainConfig, model: HunyuanVideoTransformer, ema: EMA, step: int) -> list[Path]:
    """Sample `config.sample_prompts` with the EMA weights (fixed seeds) into `out_dir/samples/step_N/i.mp4`: with
    true CFG at `sample_guidance`, or for a model that embeds guidance in one pass per step at `embedded_guidance`
    (a distilled student: at `sample_guidance`, the CFG scale it learnt to embed). `ema` holds whole tensors (of a
    sharded run: its `gathered()` copy)."""
    from hunyuan_video.checkpoint import load_vae
    from hunyuan_video.pipelines import HunyuanVideoPipeline
    from hunyuan_video.text_encoder import CLIPTextEncoder, LLMTextEncoder
    from hunyuan_video.video_io import write_video

    device = next(model.parameters()).device
    pipe = HunyuanVideoPipeline(
        averaged(model, ema), load_vae(config.vae, dtype=torch.float32, device=device),
        LLMTextEncoder.from_pretrained(config.text_encoder, device=device, max_length=config.text_max_length),
        CLIPTextEncoder.from_pretrained(config.text_encoder_2, device=device),
    )
    pipe.progress = False
    frames, height, width = config.sample_size
    embedded = model.config.guidance_embed
    embedded_scale = config.sample_guidance if config.distill is not None else config.embedded_guidance
    paths = []
    for i, prompt in enumerate(config.sample_prompts):
        video = pipe(prompt, height=height, width=width, num_frames=frames, num_inference_steps=config.sample_steps,
                     guidance_scale=embedded_scale if embedded else None, flow_shift=config.sample_shift,
                     seed=i,
                     # true CFG against the empty caption that caption dropout trained, unless guidance is embedded
                     cfg_scale=1.0 if embedded else config.sample_guidance, negative_prompt=None if embedded else "",
                     ).frames[0]
        paths.append(write_video(Path(config.out_dir) / "samples" / f"step_{step:06d}" / f"{i}.mp4", video, fps=8))
    return paths
