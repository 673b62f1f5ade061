"""Guidance distillation: a student with the guidance embedding learns, in one pass, the velocity a frozen teacher
gives with true classifier-free guidance (a conditional and an empty-caption pass) at a scale drawn per sample.

The student is the teacher's architecture with `guidance_embed=True`, holding the teacher's weights; the last layer
of its new `guidance_in` starts at zero, so that at step 0 it predicts the teacher's conditional velocity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from hunyuan_video.checkpoint import load_transformer
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.scheduler import add_noise
from hunyuan_video.train.common import autocast_context


@dataclass
class Distill:
    """Distil true CFG into the guidance embedding: the teacher (a checkpoint without guidance embedding; None: the
    config's `init_from`) guided at a scale drawn uniformly from [`guidance_min`, `guidance_max`] per sample."""

    teacher: str | None = None
    guidance_min: float = 1.0
    guidance_max: float = 6.0

    def __post_init__(self) -> None:
        self.guidance_min, self.guidance_max = float(self.guidance_min), float(self.guidance_max)
        if not 0.0 <= self.guidance_min <= self.guidance_max:
            raise ValueError(f"distill: need 0 <= guidance_min <= guidance_max, got {self.guidance_min} and "
                             f"{self.guidance_max}")


def load_teacher(path: str) -> HunyuanVideoTransformer:
    """The frozen teacher at `path` in float32 and eval mode; a ValueError when it already embeds guidance."""
    teacher = load_transformer(path, dtype=torch.float32)
    if teacher.config.guidance_embed:
        raise ValueError(f"distill: the teacher {path} already embeds guidance; it must be a model guided by true "
                         "CFG (guidance_embed false)")
    return teacher.eval().requires_grad_(False)


def student_from_teacher(teacher: HunyuanVideoTransformer, seed: int) -> HunyuanVideoTransformer:
    """The teacher's architecture with the guidance embedding and the teacher's weights; `guidance_in` is freshly
    initialised (seeded by `seed`) with its last layer at zero, so that the student's output is the teacher's."""
    torch.manual_seed(seed)
    student = HunyuanVideoTransformer(replace(teacher.config, guidance_embed=True))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("guidance_in.") for k in missing), (missing, unexpected)
    last = student.guidance_in.mlp[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return student.to(next(teacher.parameters()).device)


def check_student(student: HunyuanVideoTransformer, teacher: HunyuanVideoTransformer) -> None:
    """A ValueError unless `student` is `teacher`'s architecture with the guidance embedding."""
    if student.config != replace(teacher.config, guidance_embed=True):
        raise ValueError("distill: init_from must be the teacher's architecture with guidance_embed true (or the "
                         "teacher itself)")


def draw_scales(batch_size: int, distill: Distill, generator: torch.Generator) -> torch.Tensor:
    """One guidance scale per sample, uniform in the configured range."""
    return distill.guidance_min + (distill.guidance_max - distill.guidance_min) * torch.rand(batch_size,
                                                                                             generator=generator)


@torch.no_grad()
def guided_velocity(teacher: HunyuanVideoTransformer, x_t: torch.Tensor, t: torch.Tensor, batch: dict,
                    scale: torch.Tensor) -> torch.Tensor:
    """The teacher's true-CFG velocity `v_neg + scale (v_pos - v_neg)` at `x_t`, time `t` (in [0, 1]), the batch's
    captions (positive) and its empty caption (`null_*`, negative), in float32."""
    device = x_t.device
    with autocast_context(device):
        v_pos = teacher(x_t, t * 1000.0, batch["text_states"].to(device), batch["text_mask"].to(device),
                        batch["text_states_2"].to(device)).float()
        v_neg = teacher(x_t, t * 1000.0, batch["null_states"].to(device), batch["null_mask"].to(device),
                        batch["null_pooled"].to(device)).float()
    return v_neg + scale.view(-1, *[1] * (x_t.ndim - 1)) * (v_pos - v_neg)


def distillation_loss(student: HunyuanVideoTransformer, teacher: HunyuanVideoTransformer, batch: dict
                      ) -> torch.Tensor:
    """MSE between the student's one-pass velocity (embedded guidance `scale * 1000`) and the teacher's guided one,
    at `x_t = (1 - t) x0 + t noise`, for a batch carrying `t`, `noise`, `scale` and the empty caption's states."""
    device = next(student.parameters()).device
    x0, noise, t = batch["x0"].to(device), batch["noise"].to(device), batch["t"].to(device)
    scale = batch["scale"].to(device)
    x_t = add_noise(x0, noise, t)
    target = guided_velocity(teacher, x_t, t, batch, scale)
    with autocast_context(device):
        pred = student(x_t, t * 1000.0, batch["text_states"].to(device), batch["text_mask"].to(device),
                       batch["text_states_2"].to(device), scale * 1000.0)
    return F.mse_loss(pred.float(), target)
