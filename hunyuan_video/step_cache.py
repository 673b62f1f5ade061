"""Step caches: on a denoising step whose input barely changed since the blocks last ran, skip the transformer's
blocks and add the residual they added then.

A cache is a small object the pipeline's denoise loop owns (`HunyuanVideoPipeline.enable_step_cache`): per step the
pipeline runs `transformer.embed`, then `cache(transformer, state)` in place of `transformer.blocks`, then
`transformer.head`. The first and the last step always run the blocks.

- `TeaCache` (Liu et al., "Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model"): the relative L1
  change of the first double block's modulated video input since the previous step, rescaled by a polynomial and
  accumulated since the blocks last ran; while the sum stays under the threshold, the cached residual of all blocks
  (video tokens after the blocks minus before) is reused.
- `FirstBlockCache` (ParaAttention's first-block cache): the first block always runs; when its residual changed, in
  relative L1, less than the threshold since the blocks last ran, the cached residual of the other blocks is reused.

Every sample of the batch keeps its own measure, accumulator and residual; the negative and positive halves of true
CFG are separate samples. The batch runs its blocks together, so a step is skipped only when every sample may skip,
and a step that runs refreshes every sample's residual (a video can thus depend on the other videos of its batch).
Threshold 0 never skips: the video is then bit for bit the one without a cache.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from hunyuan_video.models.transformer import HunyuanVideoTransformer, StreamState

if TYPE_CHECKING:
    from hunyuan_video.pipelines.text_to_video import HunyuanVideoPipeline

# The TeaCache polynomial of HunyuanVideo (720p, 50 steps), highest power first, as published with TeaCache:
# ali-vilab/TeaCache, TeaCache4HunyuanVideo/teacache_sample_video.py (`coefficients` in `teacache_forward`; its
# thresholds: 0.1 for ~1.6x, 0.15 for ~2.1x). Used for a model folder without its own `teacache.json`.
HUNYUAN_VIDEO_TEACACHE = (7.33226126e02, -4.01131952e02, 6.75869174e01, -3.14987800e00, 9.61237896e-02)
TEACACHE_FILE = "teacache.json"
CACHE_METHODS = ("teacache", "fbcache")
DEFAULT_THRESHOLDS = {"teacache": 0.1, "fbcache": 0.05}


def relative_l1(new: Tensor, old: Tensor) -> Tensor:
    """Per sample, `mean |new - old| / mean |old|` over everything but the batch axis: (B,) float64 on the CPU."""
    new, old = new.float().flatten(1), old.float().flatten(1)
    return ((new - old).abs().mean(1) / old.abs().mean(1)).double().cpu()


class StepCache:
    """What every step cache shares: the step count, and how many steps ran the blocks (`full`) or reused them
    (`skipped`). Subclasses say how a step runs in `run`."""

    def __init__(self) -> None:
        self.start(0)

    def start(self, num_steps: int) -> None:
        """Forget everything cached and count from step 0 of a loop of `num_steps` steps."""
        self.num_steps, self.step, self.full, self.skipped = num_steps, 0, 0, 0
        self.reset()

    def reset(self) -> None:
        """Drop what the cache holds (called by `start`)."""

    def __call__(self, model: HunyuanVideoTransformer, state: StreamState) -> StreamState:
        """`model.blocks(state)` for the next step, or its cached stand-in."""
        out = self.run(model, state, edge=self.step in (0, self.num_steps - 1))
        self.step += 1
        return out

    def run(self, model: HunyuanVideoTransformer, state: StreamState, edge: bool) -> StreamState:
        """One step; `edge` (the first or last step) must run the blocks."""
        raise NotImplementedError

    @property
    def stats(self) -> dict[str, int]:
        """Steps of the last loop that ran the blocks ("full") and that reused a residual ("skipped")."""
        return {"full": self.full, "skipped": self.skipped}


def _check_threshold(threshold: float) -> float:
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"the cache threshold must be a finite number >= 0 (0: never skip), got {threshold}")
    return float(threshold)


class TeaCache(StepCache):
    """TeaCache over the whole stack of blocks (see the module docstring); `coefficients` of the rescaling
    polynomial, highest power first (default: the published HunyuanVideo ones)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLDS["teacache"],
                 coefficients: Sequence[float] = HUNYUAN_VIDEO_TEACACHE) -> None:
        self.threshold = _check_threshold(threshold)
        self.coefficients = check_coefficients(coefficients, "TeaCache coefficients")
        super().__init__()

    def reset(self) -> None:
        """Drop the previous input, the accumulated distance and the residual."""
        self.previous: Tensor | None = None
        self.accumulated = torch.zeros(0, dtype=torch.float64)
        self.residual: Tensor | None = None

    def rescale(self, distance: Tensor) -> Tensor:
        """The polynomial at `distance` (float64), clamped at 0 so that the accumulated sum never decreases."""
        out = torch.zeros_like(distance)
        for c in self.coefficients:
            out = out * distance + c
        return out.clamp(min=0)

    def run(self, model: HunyuanVideoTransformer, state: StreamState, edge: bool) -> StreamState:
        """Reuse the residual while the accumulated rescaled input change of every sample is under the threshold."""
        signal = model.first_block_input(state)
        previous, self.previous = self.previous, signal
        if not edge and self.residual is not None:
            accumulated = self.accumulated + self.rescale(relative_l1(signal, previous))
            if bool((accumulated < self.threshold).all()):
                self.accumulated, self.skipped = accumulated, self.skipped + 1
                return replace(state, img=state.img + self.residual)
        out = model.blocks(state)
        self.residual = out.img - state.img
        self.accumulated = torch.zeros(signal.shape[0], dtype=torch.float64)
        self.full += 1
        return out


class FirstBlockCache(StepCache):
    """The first-block cache (see the module docstring): `threshold` on the relative L1 change of the first block's
    residual since the blocks last ran."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLDS["fbcache"]) -> None:
        self.threshold = _check_threshold(threshold)
        super().__init__()

    def reset(self) -> None:
        """Drop the first block's residual and the other blocks' residual of the last full step."""
        self.first_residual: Tensor | None = None
        self.rest_residual: Tensor | None = None

    def run(self, model: HunyuanVideoTransformer, state: StreamState, edge: bool) -> StreamState:
        """Run the first block; reuse the rest's residual while every sample's first residual changed little."""
        first = model.blocks(state, 0, 1)
        first_residual = first.img - state.img
        if not edge and self.rest_residual is not None:
            if bool((relative_l1(first_residual, self.first_residual) < self.threshold).all()):
                self.skipped += 1
                return replace(first, img=first.img + self.rest_residual)
        out = model.blocks(first, 1)
        self.first_residual, self.rest_residual = first_residual, out.img - first.img
        self.full += 1
        return out


def make_step_cache(method: str, threshold: float | None = None,
                    coefficients: Sequence[float] = HUNYUAN_VIDEO_TEACACHE) -> StepCache:
    """The cache named `method` ("teacache" or "fbcache") at `threshold` (None: the method's default); TeaCache
    rescales with `coefficients`."""
    if method not in CACHE_METHODS:
        raise ValueError(f"unknown step cache {method!r}: use one of {', '.join(CACHE_METHODS)}")
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    return TeaCache(threshold, coefficients) if method == "teacache" else FirstBlockCache(threshold)


def check_coefficients(values: object, what: str) -> tuple[float, ...]:
    """`values` as a tuple of finite floats (at least one); a ValueError naming `what` otherwise."""
    if (not isinstance(values, (list, tuple)) or not values
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
        raise ValueError(f"{what} must be a non-empty list of finite numbers, got {values!r}")
    return tuple(float(v) for v in values)


def read_teacache_coefficients(folder: str | Path) -> tuple[float, ...] | None:
    """The polynomial in `folder/teacache.json` (written by `calibrate-cache`), or None when there is none."""
    path = Path(folder) / TEACACHE_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    return check_coefficients(values.get("coefficients") if isinstance(values, dict) else None,
                              f"{path}: 'coefficients'")


class TeaCacheRecorder(StepCache):
    """Runs every step in full and records, per sample and pair of consecutive steps, the relative L1 change of the
    first block's modulated input (`inputs`) and of the transformer's output (`outputs`): what TeaCache's
    polynomial maps from and to."""

    def __init__(self) -> None:
        self.inputs: list[float] = []
        self.outputs: list[float] = []
        super().__init__()

    def reset(self) -> None:
        """Forget the previous step (the recorded pairs stay)."""
        self.previous: tuple[Tensor, Tensor] | None = None

    def run(self, model: HunyuanVideoTransformer, state: StreamState, edge: bool) -> StreamState:
        """The blocks in full, recording the changes since the previous step."""
        signal, out = model.first_block_input(state), model.blocks(state)
        velocity = model.head(out)
        if self.previous is not None:
            self.inputs += relative_l1(signal, self.previous[0]).tolist()
            self.outputs += relative_l1(velocity, self.previous[1]).tolist()
        self.previous = (signal, velocity)
        self.full += 1
        return out


def calibrate_teacache(pipe: HunyuanVideoPipeline, prompts: Sequence[str], seed: int = 0, degree: int = 4,
                       steps: Sequence[int | None] = (None,), **call: object) -> tuple[tuple[float, ...], int]:
    """Fit TeaCache's polynomial for `pipe`'s transformer: sample each prompt (seed `seed + i`) at each count of
    `steps` (None: the pipeline's default; the other arguments of the call from `call` or the pipeline's defaults)
    with every step in full, then least-squares fit of degree `degree` from the input changes to the output changes.
    The changes per step shrink as the steps grow, and outside the distances it was fitted on the polynomial may
    fall to 0 (then nearly every step is skipped): fit on every step count the model samples at. Returns the
    coefficients (highest power first) and the number of (input, output) pairs they were fitted on."""
    if not prompts:
        raise ValueError("no calibration prompt given")
    recorder, kept = TeaCacheRecorder(), pipe.step_cache
    pipe.step_cache = recorder
    try:
        for count in steps:
            for i, prompt in enumerate(prompts):
                pipe(prompt, seed=seed + i, output_type="latent", num_inference_steps=count, **call)
    finally:
        pipe.step_cache = kept
    if len(recorder.inputs) <= degree:
        raise ValueError(f"{len(recorder.inputs)} step pairs cannot fit a polynomial of degree {degree}: use more "
                         "steps or prompts")
    coefficients = np.polyfit(np.array(recorder.inputs), np.array(recorder.outputs), degree)
    return tuple(float(c) for c in coefficients), len(recorder.inputs)


def write_teacache_coefficients(folder: str | Path, coefficients: Sequence[float], about: dict) -> Path:
    """Write `folder/teacache.json`: the coefficients and `about` (what they were fitted on)."""
    path = Path(folder) / TEACACHE_FILE
    path.write_text(json.dumps({"coefficients": list(coefficients), **about}, indent=2) + "\n")
    return path
