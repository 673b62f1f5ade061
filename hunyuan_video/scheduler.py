"""Flow matching as HunyuanVideo uses it: `x_t = (1 - t) x0 + t noise`, the model predicts `v = noise - x0`.

Sampling walks sigma from 1 (noise) to 0 (data) with Euler steps on a shifted grid; training draws `t`, mixes the
latents with noise and regresses the velocity.
"""

from __future__ import annotations

import torch

TIME_SAMPLERS = ("uniform", "logit_normal", "shifted")


def time_shift(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """`shift * sigma / (1 + (shift - 1) * sigma)`: spends more of the steps at high noise when shift > 1."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def sampling_sigmas(steps: int, shift: float = 7.0) -> torch.Tensor:
    """The `steps + 1` sigmas of sampling, from 1 down to 0: `linspace(1, 0, steps + 1)` shifted (float32)."""
    if steps < 1:
        raise ValueError(f"the number of sampling steps must be at least 1, got {steps}")
    if shift <= 0:
        raise ValueError(f"the flow shift must be positive, got {shift} (7 is the default, 17 for few steps)")
    return time_shift(torch.linspace(1, 0, steps + 1, dtype=torch.float64), shift).float()


def euler_step(x: torch.Tensor, v: torch.Tensor, sigma: float | torch.Tensor, sigma_next: float | torch.Tensor
               ) -> torch.Tensor:
    """One Euler step of the flow ODE `dx/dsigma = v`: `x + (sigma_next - sigma) * v`, in x's dtype."""
    return x + (sigma_next - sigma) * v.to(x.dtype)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The training input `x_t = (1 - t) * x0 + t * noise`, with `t` of shape `(B,)` in [0, 1]."""
    t = t.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the model learns to predict at every t: `noise - x0`."""
    return noise - x0


def sample_time(
    batch: int,
    mode: str = "uniform",
    shift: float = 1.0,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training times `(B,)` in (0, 1): "uniform"; "logit_normal" (`sigmoid(N(mean, std))`, SD3); or "shifted"
    (uniform, then `time_shift(., shift)` as sampling does, so training sees the same noise levels)."""
    if mode == "uniform":
        return torch.rand(batch, generator=generator, device=device)
    if mode == "logit_normal":
        return torch.sigmoid(mean + std * torch.randn(batch, generator=generator, device=device))
    if mode == "shifted":
        return time_shift(torch.rand(batch, generator=generator, device=device), shift)
    raise ValueError(f"unknown time sampling {mode!r}: choose one of {TIME_SAMPLERS}")
