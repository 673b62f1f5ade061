"""Train the 3D causal VAE: `hunyuan-video train-vae CONFIG`.

The loss is the paper's: L1 reconstruction + `kl_weight` KL + `lpips_weight` LPIPS + a hinge GAN loss from a 3D
patch discriminator, switched on at `disc_start` and scaled by the adaptive weight. Training runs through `stages`
(low resolution and short clips first); each batch is a video batch or, one time in `1 + video_per_image`, an image
batch (single frames); clips are read with a random frame stride. A stage with `tiled_prob > 0` encodes and decodes
with the model's tiles at random (the tiling-aware fine-tune), so tiled inference sees what training saw.

Everything a run needs to continue bit-exactly (model, EMA, optimisers, discriminator, data position, RNG) is in
`OUT_DIR/checkpoint.pt`; `OUT_DIR/log.jsonl` and `loss.png` record the losses, `OUT_DIR/val/` the validation
reconstructions (original | reconstruction, side by side), `OUT_DIR/vae/` the final EMA weights.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from hunyuan_video.config import VAEConfig, config_from_dict, save_config
from hunyuan_video.data.dataset import frames_to_tensor, resize_crop
from hunyuan_video.files import atomic_path
from hunyuan_video.models.tiling import TileSpec
from hunyuan_video.models.vae import CausalVAE, DiagonalGaussian
from hunyuan_video.train.common import (
    EMA,
    LR_SCHEDULES,
    autocast_context,
    config_from_fields,
    resolve_device,
    seed_everything,
    stage_at,
)
from hunyuan_video.train.distributed import check_divisible, is_main, micro_batches, rank_and_world, shard_model
from hunyuan_video.train.loop import Periodic, adamw, apply_gradients, last_step, lr_schedule, run_loop
from hunyuan_video.train.losses import (
    REC_LOSSES,
    PatchDiscriminator3D,
    adaptive_weight,
    hinge_d_loss,
    load_lpips,
    psnr,
    reconstruction_loss,
    ssim,
)
from hunyuan_video.train.run_dir import check_run_dir


@dataclass
class VAEStage:
    """One stage of the progressive schedule: `steps` steps on `size`x`size` crops of `frames` frames."""

    steps: int
    size: int
    frames: int
    batch_size: int = 1
    image_batch_size: int = 4
    tiled_prob: float = 0.0  # chance per step to encode and decode with the model's tiles


@dataclass
class VAETrainConfig:
    """Everything a VAE training run needs; paths are relative to the working directory."""

    # What `--resume` lets differ from the run's config.json: bookkeeping and validation, which leave the training
    # numbers as they are. Any other field is the run's own and must stay.
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = (
        "note", "out_dir", "device", "gradient_checkpointing", "log_every", "checkpoint_every", "val_dir",
        "val_every", "val_clips", "val_size", "val_frames", "val_samples", "fsdp", "grad_accum_steps")

    train_dir: str  # a dataset folder (metadata.jsonl or .txt captions; videos and images), see data.manifest
    stages: list[VAEStage]
    note: str = ""  # free text kept with the run (why the recipe is what it is)
    val_dir: str = ""  # held-out clips in the same layout ("" = no validation)
    out_dir: str = "runs/vae"
    vae: dict[str, Any] = field(default_factory=dict)  # VAEConfig fields (from scratch)
    init_from: str = ""  # VAE weights to fine-tune (a file or model folder); "" = from scratch
    init_logvar: float = -6.0  # from scratch: the posterior's starting log-variance (see build_vae)
    train_encoder: bool = True  # False: a decoder-only fine-tune that keeps the latent space (and the DiT on it)
    train_decoder: bool = True  # False: an encoder-only fine-tune; the decoder (what turns a DiT's latents into video)
    # stays exactly as it is
    # > 0: the encoder trains but its posterior means are pulled towards those of `init_from`'s encoder (the mean
    # squared drift in the DiT's unit-variance units, times this weight), so a DiT trained on the old latents still fits
    latent_anchor_weight: float = 0.0
    # measure the exported `scaling_factor` (1 / std of the latents) on training clips: None = only from scratch
    # (a fine-tune of the official VAE keeps its 0.476986, which the released DiT expects)
    refit_scaling_factor: bool | None = None
    # data
    video_per_image: int = 4  # video:image batches 4:1, as in the paper
    max_frame_stride: int = 8
    # loss
    # the paper's "l1"; "mse" (converges faster to a high PSNR with Adam at a fixed lr); or "log_mse", the mean over
    # samples of log(MSE): minus their mean PSNR (up to 10 / ln 10), so each clip counts by its dB, not its error
    rec_loss: str = "l1"
    kl_weight: float = 1e-6
    lpips_weight: float = 0.1
    lpips_vgg_path: str = ""  # torchvision vgg16-397923af.pth
    lpips_lin_path: str = ""  # lpips weights/v0.1/vgg.pth
    disc_weight: float = 0.05
    disc_start: int = 5000
    disc_channels: int = 64
    disc_layers: int = 3
    # optimisation
    lr: float = 1e-4
    encoder_lr: float | None = None  # the encoder's (and quant_conv's) learning rate when it trains; None = lr
    disc_lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # after warm-up: "constant", or "cosine" down to 10% at the last step
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    gradient_checkpointing: bool = False
    # bf16 autocast on the CPU as well as on CUDA (weights, optimiser and losses stay float32): ~1.5x faster steps of
    # the tiny VAE on a CPU with AVX-512 BF16
    cpu_bf16: bool = False
    # under torchrun: shard the VAE (one unit per down/up block), the discriminator, their optimiser states and the
    # EMA over the ranks with FSDP2; False keeps a whole copy on every rank. No effect on one process
    fsdp: bool = False
    grad_accum_steps: int = 1  # micro-batches per step on each rank: a stage's batch sizes are the global batches
    device: str = "auto"  # "auto": CUDA when available, else CPU
    seed: int = 0
    # bookkeeping
    log_every: int = 10
    checkpoint_every: int = 500
    val_every: int = 500
    val_clips: int = 8
    val_size: int = 64
    val_frames: int = 17
    val_samples: int = 2  # reconstructions saved as mp4 at each validation

    def __post_init__(self) -> None:
        self.stages = [s if isinstance(s, VAEStage) else config_from_fields(VAEStage, s, f"stages[{i}]")
                       for i, s in enumerate(self.stages)]
        self.betas = tuple(self.betas)
        if not self.stages:
            raise ValueError("stages is empty: give at least one {steps, size, frames} stage")
        for i, s in enumerate(self.stages):
            if s.steps < 1 or s.batch_size < 1 or s.image_batch_size < 1:
                raise ValueError(f"stage {i}: steps, batch_size and image_batch_size must be >= 1, got {s}")
            if (s.frames - 1) % 4 or s.size % 8:
                raise ValueError(f"stage {i}: frames must be 1 + 4k and size a multiple of 8, got {s.frames}, {s.size}")
            if not 0.0 <= s.tiled_prob <= 1.0:
                raise ValueError(f"stage {i}: tiled_prob must be in [0, 1], got {s.tiled_prob}")
        if self.lpips_weight > 0 and not (self.lpips_vgg_path and self.lpips_lin_path):
            raise ValueError(
                f"lpips_weight is {self.lpips_weight} but lpips_vgg_path / lpips_lin_path are not set: LPIPS needs the "
                "pretrained VGG16 (torchvision vgg16-397923af.pth) and the LPIPS v0.1 linear layers (lpips "
                "weights/v0.1/vgg.pth) as local files; set both paths, or set lpips_weight to 0"
            )
        if self.latent_anchor_weight < 0 or (self.latent_anchor_weight > 0 and not (self.init_from and
                                                                                    self.train_encoder)):
            raise ValueError(f"latent_anchor_weight {self.latent_anchor_weight} needs init_from and train_encoder "
                             "(it ties a training encoder to the one it starts from), and must be >= 0")
        if not (self.train_encoder or self.train_decoder):
            raise ValueError("train_encoder and train_decoder are both false: nothing would train")
        if not self.train_decoder and self.disc_weight > 0:
            raise ValueError(f"disc_weight is {self.disc_weight} but train_decoder is false: the GAN loss (and its "
                             "adaptive weight, taken at the decoder's last layer) trains the decoder; set it to 0")
        if self.encoder_lr is not None and not (self.train_encoder and self.encoder_lr > 0):
            raise ValueError(f"encoder_lr {self.encoder_lr} is for a training encoder (train_encoder true) and "
                             "must be > 0")
        if self.rec_loss not in REC_LOSSES:
            raise ValueError(f"rec_loss {self.rec_loss!r} is not one of {REC_LOSSES}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {self.lr_schedule!r} is not one of {LR_SCHEDULES}")
        if self.video_per_image < 1 or self.max_frame_stride < 1:
            raise ValueError("video_per_image and max_frame_stride must be >= 1")
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.val_dir and (self.val_size % 8 or (self.val_frames - 1) % 4):
            raise ValueError(f"val_size must be a multiple of 8 and val_frames 1 + 4k, got {self.val_size}, "
                             f"{self.val_frames}")

    @property
    def total_steps(self) -> int:
        """The length of the whole schedule."""
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> VAEStage:
        """The stage that trains step `step` (0-based); a ValueError past the last step (see `stage_at`)."""
        return stage_at(self.stages, step)


def _resize_short_side(video: Tensor, short: int) -> Tensor:
    """Resize (3, T, H, W) so that its shorter side is `short` (antialiased bilinear)."""
    h, w = video.shape[-2:]
    if min(h, w) == short:
        return video
    size = (round(h * short / min(h, w)), round(w * short / min(h, w)))
    return F.interpolate(video.transpose(0, 1), size=size, mode="bilinear", antialias=True).transpose(0, 1)


class ClipSampler:
    """Draws training batches from a dataset folder (`hunyuan_video.data.manifest`), in epochs of a seeded shuffle.

    A video sample is `frames` frames at a random stride (1 .. `max_stride`, as the clip's length allows) from a
    random start; an image sample is an image file or, when the folder has none, one random frame of a video. Each
    sample is resized so its shorter side is a random length between the crop size and its own, then randomly
    cropped square. Files too short or too small for a stage, or that fail to decode, are skipped (with a counted
    warning) and listed in `report`. Its state (generator, order, position, bad files, the report) is part of the
    checkpoint, so a resumed run draws the same batches and reports every file the whole run skipped.
    """

    def __init__(self, folder: str | Path, max_stride: int, seed: int) -> None:
        from hunyuan_video.data.manifest import read_dataset

        self.samples, self.report = read_dataset(folder)
        if not self.samples:
            raise ValueError(f"{folder} has no usable clips (a metadata.jsonl, or videos/images with .txt captions; "
                             f"`hunyuan-video data synth {folder}` makes some): {self.report.summary()}")
        self.has_images = any(s.is_image for s in self.samples)
        self.max_stride = max_stride
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(self.samples), generator=self.generator)
        self.position = 0
        self.bad: set[int] = set()  # samples that failed to decode

    def state_dict(self) -> dict[str, Any]:
        """The sampler's position in its shuffle, the files that failed and the skip report so far."""
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position,
                "bad": sorted(self.bad), "report": [list(entry) for entry in self.report.skipped]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`: the report holds the checkpoint's entries, then any the dataset gave now."""
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"], state["position"]
        self.bad = set(state.get("bad", ()))
        restored = [(str(file), str(reason)) for file, reason in state.get("report", ())]
        known = {file for file, _ in restored}
        self.report.skipped = restored + [entry for entry in self.report.skipped if entry[0] not in known]

    def _next_index(self) -> int:
        if self.position == len(self.order):
            self.order = torch.randperm(len(self.samples), generator=self.generator)
            self.position = 0
        self.position += 1
        return int(self.order[self.position - 1])

    def _randint(self, low: int, high: int) -> int:
        """A uniform integer in [low, high]."""
        return int(torch.randint(low, high + 1, (), generator=self.generator))

    def _load(self, index: int, frames: int, size: int) -> Tensor:
        from hunyuan_video.video_io import read_image, read_video

        sample = self.samples[index]
        if sample.is_image:
            video = frames_to_tensor(read_image(sample.file))
        else:
            stride = self._randint(1, min(self.max_stride, (sample.frames - 1) // max(frames - 1, 1)))
            start = self._randint(0, sample.frames - 1 - (frames - 1) * stride)
            indices = range(start, start + (frames - 1) * stride + 1, stride)
            video = frames_to_tensor(read_video(sample.file, indices))
        video = _resize_short_side(video, self._randint(size, min(video.shape[-2:])))
        top = self._randint(0, video.shape[-2] - size)
        left = self._randint(0, video.shape[-1] - size)
        return video[:, :, top : top + size, left : left + size]

    def sample(self, frames: int, size: int) -> Tensor:
        """One (3, frames, size, size) sample in [-1, 1]; ValueError when no file of the folder can give one."""
        for _ in range(2 * len(self.samples)):  # across an epoch boundary: every file is met at least once
            i = self._next_index()
            s = self.samples[i]
            if i in self.bad or (s.is_image != (frames == 1 and self.has_images)):
                continue  # images serve image batches (videos do when the folder has no images)
            if s.frames < frames:
                self.report.add(s.file, f"too short: {s.frames} frames, a stage asks for {frames}")
            elif min(s.height, s.width) < size:
                self.report.add(s.file, f"too small: {s.height}x{s.width}, a stage crops {size}px")
            else:
                try:
                    return self._load(i, frames, size)
                except (ValueError, OSError) as e:
                    self.bad.add(i)
                    self.report.add(s.file, f"decode failed: {e}")
        raise ValueError(f"no file gives {frames} frames of at least {size}px: {self.report.summary()}")

    def batch(self, stage: VAEStage, video_per_image: int) -> Tensor:
        """A video batch (B, 3, frames, size, size), or one time in `1 + video_per_image` an image batch
        (B', 3, 1, size, size)."""
        image = self._randint(0, video_per_image) == 0
        frames, n = (1, stage.image_batch_size) if image else (stage.frames, stage.batch_size)
        return torch.stack([self.sample(frames, stage.size) for _ in range(n)])


def load_val_clips(folder: str | Path, count: int, size: int, frames: int) -> Tensor:
    """The first `count` videos of a dataset folder: the first `frames` frames, shorter side resized to `size`,
    centre crop."""
    from hunyuan_video.data.manifest import read_dataset
    from hunyuan_video.video_io import read_video

    videos = [s.file for s in read_dataset(folder)[0] if not s.is_image and s.frames >= frames][:count]
    if not videos:
        raise ValueError(f"{folder} has no video of at least {frames} frames to validate on")
    return torch.stack([resize_crop(frames_to_tensor(read_video(f, range(frames))), size, size) for f in videos])


@torch.no_grad()
def reconstruct(model: CausalVAE, video: Tensor, tiling: bool) -> Tensor:
    """Encode to the posterior mean and decode, with or without the model's tiles, clamped to [-1, 1]."""
    return model.decode(model.encode(video, tiling=tiling).mode(), tiling=tiling).float().clamp(-1, 1)


@torch.no_grad()
def evaluate(model: CausalVAE, clips: Tensor, batch_size: int = 4) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of reconstructions of `clips` (N, 3, T, H, W), un-tiled and tiled."""
    device = next(model.parameters()).device
    scores: dict[str, list[Tensor]] = {"psnr": [], "ssim": [], "psnr_tiled": [], "ssim_tiled": []}
    for chunk in clips.split(batch_size):
        chunk = chunk.to(device)
        for suffix, tiling in (("", False), ("_tiled", True)):
            rec = reconstruct(model, chunk, tiling)
            scores["psnr" + suffix].append(psnr(rec, chunk).cpu())
            scores["ssim" + suffix].append(ssim(rec, chunk).cpu())
    return {k: torch.cat(v).mean().item() for k, v in scores.items()}


def save_side_by_side(path: Path, original: Tensor, reconstruction: Tensor, fps: float = 8) -> None:
    """Write original | reconstruction (3, T, H, W) in [-1, 1] as one mp4."""
    from hunyuan_video.video_io import to_uint8, write_video

    both = torch.cat([original, reconstruction], dim=-1).permute(1, 2, 3, 0).cpu().numpy()
    write_video(path, to_uint8(both), fps=fps)


def build_vae(cfg: VAETrainConfig) -> CausalVAE:
    """The model to train: `init_from` weights (fine-tune), or a fresh `VAEConfig(**cfg.vae)`.

    A fresh model starts with a narrow posterior (log-variance `init_logvar`, the bias of `quant_conv`'s second
    half): with the default init its std is about 1, the decoder first sees latents drowned in sampling noise, and
    the tiny KL weight lets the encoder shrink that only at the pace of the learning rate (thousands of steps).
    """
    if cfg.init_from:
        from hunyuan_video.checkpoint import load_vae

        return load_vae(cfg.init_from)
    vae = CausalVAE(config_from_dict(VAEConfig, cfg.vae))
    with torch.no_grad():
        vae.quant_conv.bias[vae.config.latent_channels :].fill_(cfg.init_logvar)
    return vae


def frozen_encoder(model: CausalVAE) -> CausalVAE:
    """A frozen copy of `model` without its decoder: the encoder whose latents `latent_drift` measures against."""
    anchor = copy.deepcopy(model).eval().requires_grad_(False)
    anchor.decoder = None
    return anchor


def latent_drift(posterior: DiagonalGaussian, anchor: CausalVAE, video: Tensor,
                 tiling: bool | TileSpec = False) -> Tensor:
    """Mean squared distance of `posterior`'s means from `anchor`'s on the same `video`, in units of the latent
    space's std (times the scaling factor, as the DiT sees them): 0.01 is a drift of 10% of a latent's spread."""
    with torch.no_grad():
        reference = anchor.encode(video, tiling=tiling).mode().float()
    return ((posterior.mode().float() - reference) * anchor.config.scaling_factor).pow(2).mean()


@torch.no_grad()
def latent_scaling_factor(model: CausalVAE, videos: Tensor) -> float:
    """1 / std of the posterior means of `videos`: the factor that gives the diffusion model unit-variance latents."""
    device = next(model.parameters()).device
    means = torch.cat([model.encode(v.to(device), tiling=False).mode().float().flatten() for v in videos.split(4)])
    return 1.0 / means.std().item()


def mean_of(values: list[Tensor | float]) -> Tensor | float:
    """The mean of a step's micro-batch scalars (the one value itself when there is one)."""
    return values[0] if len(values) == 1 else torch.stack([torch.as_tensor(v) for v in values]).mean()


def ema_copy(vae: CausalVAE, ema: EMA) -> CausalVAE:
    """A whole copy of `vae` (sharded or not) holding `ema`'s weights, in eval mode; built without drawing from the
    training's RNG. Every rank calls it when the EMA is sharded (it is gathered)."""
    whole = ema.gathered()
    with torch.random.fork_rng(devices=[]):
        model = CausalVAE(vae.config)
    model.tiling = vae.tiling
    whole.copy_to(model)
    return model.to(next(vae.parameters()).device).eval()


def shard_vae(vae: CausalVAE) -> None:
    """Shard `vae` with FSDP2: one unit per encoder down block and decoder up block, one each for the rest of the
    encoder, the two 1x1x1 convs and the rest of the decoder (whose last layer stays gathered through the loss, for
    the adaptive GAN weight), under a root without parameters of its own that `encode` and `decode` run."""
    units = [*vae.encoder.down_blocks, *vae.decoder.up_blocks, vae.encoder, vae.quant_conv, vae.post_quant_conv]
    shard_model(vae, units, kept_gathered=[vae.decoder], methods=("encode", "decode"))


def export_vae(model: CausalVAE, folder: str | Path) -> Path:
    """Write a VAE model folder: `model.safetensors` (official keys) and `config.json`, which
    `hunyuan_video.checkpoint.load_vae(folder)` reads."""
    from hunyuan_video.checkpoint import save_vae

    folder = Path(folder)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_vae(model, tmp)
    save_config(model.config, folder / "config.json")
    return folder


def train_vae(cfg: VAETrainConfig, resume: bool = False, max_steps: int | None = None, progress: bool = True,
              overwrite: bool = False) -> Path:
    """Run (or with `resume`, continue) a training run; returns `cfg.out_dir`.

    `max_steps` stops early after that many total steps (the schedule is still that of the whole config), exporting
    the EMA weights of that step and leaving a checkpoint to resume from. Under `torch.distributed` each rank trains
    its rows of every batch, `grad_accum_steps` micro-batches at a time (see `train.distributed`; the adaptive GAN
    weight is each micro-batch's own), with `fsdp` on a sharded VAE and discriminator (checkpointed in
    `checkpoint.dcp/`, see `train.sharded_checkpoint`), and rank 0 writes.
    `out_dir` is checked first (`train.run_dir`): a folder holding a run needs `resume` (and a config that fits it)
    or `overwrite`. The files skipped (`skipped.json`) are those of the whole run, a resumed one included.
    """
    out = Path(cfg.out_dir)
    check_run_dir(out, cfg, resume=resume, overwrite=overwrite)
    device = resolve_device(cfg.device)
    for i, s in enumerate(cfg.stages):
        check_divisible(s.batch_size, f"stage {i}: batch_size", cfg.grad_accum_steps)
        check_divisible(s.image_batch_size, f"stage {i}: image_batch_size", cfg.grad_accum_steps)
    seed_everything(cfg.seed)

    vae = build_vae(cfg).to(device).train()
    vae.set_gradient_checkpointing(cfg.gradient_checkpointing)
    if any(s.tiled_prob for s in cfg.stages) or cfg.val_dir:  # a bad tile size fails now, not hours in
        vae.official_tiling().check(vae.config.spatial_compression_ratio, vae.config.time_compression_ratio)
    anchor = frozen_encoder(vae) if cfg.latent_anchor_weight > 0 else None
    sharded = cfg.fsdp and rank_and_world()[1] > 1
    if sharded:
        shard_vae(vae)
    ema = EMA(vae, cfg.ema_decay)
    encoder_ids = {id(p) for p in [*vae.encoder.parameters(), *vae.quant_conv.parameters()]}
    encoder = [p for p in vae.parameters() if id(p) in encoder_ids]
    decoder = [p for p in vae.parameters() if id(p) not in encoder_ids]  # post_quant_conv and the decoder
    groups = []
    sides = ((decoder, cfg.train_decoder, cfg.lr), (encoder, cfg.train_encoder, cfg.encoder_lr or cfg.lr))
    for side, trains, lr in sides:
        for p in side:
            p.requires_grad_(trains)
        if trains:
            groups.append({"params": side, "lr": lr})
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = adamw(groups, cfg.lr, cfg.betas, cfg.weight_decay)
    sched = lr_schedule(opt, cfg.lr_schedule, cfg.warmup_steps, cfg.total_steps)
    disc, opt_d = None, None
    if cfg.disc_weight > 0:
        disc = PatchDiscriminator3D(vae.config.out_channels, cfg.disc_channels, cfg.disc_layers).to(device).train()
        if sharded:
            shard_model(disc, [])
        opt_d = adamw(disc.parameters(), cfg.disc_lr, (0.5, 0.9), cfg.weight_decay)
    lpips = load_lpips(cfg.lpips_vgg_path, cfg.lpips_lin_path).to(device) if cfg.lpips_weight > 0 else None
    sampler = ClipSampler(cfg.train_dir, cfg.max_frame_stride, cfg.seed)
    val_clips = load_val_clips(cfg.val_dir, cfg.val_clips, cfg.val_size, cfg.val_frames) if cfg.val_dir else None

    def generator_loss(x: Tensor, noise: Callable[[Tensor], Tensor], tiling: bool | TileSpec, use_gan: bool
                       ) -> tuple[Tensor, Tensor, dict]:
        """The VAE's loss on the micro-batch `x` (its posterior's noise is `noise(mean)`), its reconstruction and the
        scalars to log."""
        with autocast_context(device, cfg.cpu_bf16):
            posterior = vae.encode(x, tiling=tiling)
            y = vae.decode(posterior.sample(noise=noise(posterior.mean)), tiling=tiling)
            error = y.float() - x
            rec = reconstruction_loss(error, cfg.rec_loss)
            if lpips is not None:
                frames = lambda v: v.transpose(1, 2).flatten(0, 1)  # (B, C, T, H, W) -> (B*T, C, H, W)
                rec = rec + cfg.lpips_weight * lpips(frames(y.float()), frames(x)).mean()
            kl = posterior.kl().sum() / x.numel()  # per pixel, like the L1 term: kl_weight keeps its usual meaning
            loss = rec + cfg.kl_weight * kl
            scalars = {"rec": rec.detach(), "kl": kl.detach()}
            if anchor is not None:
                drift = latent_drift(posterior, anchor, x, tiling)
                loss = loss + cfg.latent_anchor_weight * drift
                scalars["drift"] = drift.detach()
            if use_gan:
                g_loss = -disc(y).float().mean()
                weight = cfg.disc_weight * adaptive_weight(rec, g_loss, vae.last_layer)
                loss = loss + weight * g_loss
                scalars.update(g=g_loss.detach(), gan_weight=weight)
        return loss, y.detach(), {"loss": loss.detach(), **scalars}

    def step(index: int) -> dict:
        # Every rank draws the whole batch from the same sampler state (what it draws depends on what decodes), and
        # trains its rows, one micro-batch at a time.
        stage = cfg.stage_at(index)
        batch = sampler.batch(stage, cfg.video_per_image)
        micro = [x.to(device) for x in micro_batches(batch, cfg.grad_accum_steps)]
        tiling = vae.official_tiling() if stage.tiled_prob and torch.rand(()) < stage.tiled_prob else False
        use_gan = disc is not None and index >= cfg.disc_start
        outputs, records, noises = [], [], []

        def noise(i: int, mean: Tensor) -> Tensor:
            # the posterior noise of the whole batch, drawn once as one process draws it; micro-batch i takes its rows
            if not noises:
                whole = torch.randn((len(batch), *mean.shape[1:]), device=mean.device, dtype=mean.dtype)
                noises.extend(micro_batches(whole, cfg.grad_accum_steps))
            return noises[i]

        def generator_losses() -> Iterator[Tensor]:
            for i, x in enumerate(micro):
                loss, y, scalars = generator_loss(x, partial(noise, i), tiling, use_gan)
                outputs.append(y)
                records.append(scalars)
                yield loss

        grad_norm = apply_gradients(generator_losses(), opt, params, cfg.grad_clip, sched)
        ema.update(vae)
        if use_gan:
            def disc_losses() -> Iterator[Tensor]:
                for x, y in zip(micro, outputs):
                    with autocast_context(device, cfg.cpu_bf16):
                        d_loss = hinge_d_loss(disc(x).float(), disc(y).float())
                    records.append({"d": d_loss.detach()})
                    yield d_loss

            apply_gradients(disc_losses(), opt_d, disc.parameters())
        scalars = {k: mean_of([r[k] for r in records if k in r]) for k in dict.fromkeys(k for r in records for k in r)}
        return {"loss": scalars.pop("loss"), "lr": sched.get_last_lr()[0], **scalars, "grad_norm": grad_norm}

    def validate(index: int) -> dict[str, float]:
        model = ema_copy(vae, ema)  # every rank: a sharded EMA is gathered together
        if not is_main():
            return {}
        scores = evaluate(model, val_clips)
        if anchor is not None:
            with torch.no_grad():
                drifts = [latent_drift(model.encode(c, tiling=False), anchor, c) for c in val_clips.to(device).split(4)]
            scores["drift"] = torch.stack(drifts).mean().item()
        for i in range(min(cfg.val_samples, len(val_clips))):
            clip = val_clips[i : i + 1].to(device)
            save_side_by_side(out / "val" / f"step{index:07d}_clip{i}.mp4", clip[0], reconstruct(model, clip, False)[0])
        return {f"val_{k}": v for k, v in scores.items()}

    parts = dict(model=vae, ema=ema, optimizer=opt, scheduler=sched, disc=disc, disc_optimizer=opt_d, sampler=sampler)
    done = run_loop(step, parts, out, cfg, total_steps=cfg.total_steps, log_every=cfg.log_every,
                    checkpoint_every=cfg.checkpoint_every, max_steps=max_steps, resume=resume,
                    overwrite=overwrite, periodic=[Periodic(cfg.val_every, validate)] if val_clips is not None else [],
                    desc="train-vae", progress=progress)
    final = ema_copy(vae, ema)
    if not is_main():
        return out
    if len(sampler.report):
        print(sampler.report.summary())
        sampler.report.save(out / "skipped.json")
    if done == last_step(cfg.total_steps, max_steps):  # a run stopped by `max_steps` exports too; `resume` goes on
        refit = not cfg.init_from if cfg.refit_scaling_factor is None else cfg.refit_scaling_factor
        if refit:  # a new latent space needs its own scale; a fine-tune keeps the one it started from
            last = cfg.stages[-1]  # 16 more training clips, drawn after the last checkpoint
            videos = torch.stack([sampler.sample(last.frames, last.size) for _ in range(16)])
            final.config = dataclasses.replace(final.config, scaling_factor=latent_scaling_factor(final, videos))
        export_vae(final, out / "vae")
    return out
