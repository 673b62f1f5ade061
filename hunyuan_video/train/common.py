"""Pieces every trainer shares: its config file, stages and device; EMA weights, RNG state, atomic checkpoints, a
JSONL log and its plot, LR warm-up."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import pickle
import random
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from hunyuan_video.config import config_from_dict
from hunyuan_video.files import atomic_path

T = TypeVar("T")


def config_from_fields(cls: type[T], data: Any, where: str, unknown_what: str = "keys") -> T:
    """Build the dataclass `cls` from a JSON object, refusing unknown keys (a typo must not silently change a run)
    and missing required ones; lists become tuples where the field's default is a tuple. Errors name `where`."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object of {cls.__name__} fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown {unknown_what} {unknown}; known keys are {sorted(fields)}")
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    return config_from_dict(cls, data)


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a training config (a JSON object of `cls`'s fields) from `path`. A missing file, invalid JSON, unknown
    or missing keys and invalid values are each a one-line ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    try:
        return config_from_fields(cls, data, str(path), "config keys")
    except (TypeError, ValueError) as error:  # a value of the wrong type fails inside the dataclass's checks
        message = str(error)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None


class _Stage(Protocol):
    steps: int


StageT = TypeVar("StageT", bound=_Stage)


def stage_at(stages: Sequence[StageT], step: int) -> StageT:
    """The stage of a schedule (stages of `steps` steps each, in order) that trains global step `step` (0-based);
    a ValueError past the last stage's last step."""
    remaining = step
    for stage in stages:
        if 0 <= remaining < stage.steps:
            return stage
        remaining -= stage.steps
    raise ValueError(f"step {step} is past the end of the schedule (0 .. {sum(s.steps for s in stages) - 1})")


def resolve_device(device: str | torch.device) -> torch.device:
    """The device a trainer runs on: `"auto"` is CUDA when torch sees a GPU, else the CPU; another name is read by
    torch, and a CUDA device without a GPU is a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a torch device: use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} but torch sees no CUDA GPU: use auto or cpu")
    return resolved


class EMA:
    """An exponential moving average of a model's floating-point state: `shadow = decay * shadow + (1 - decay) * w`.

    The shadow is kept in float32 on the model's device; integer buffers are copied as they are. The shadow of a
    model sharded with FSDP2 is sharded the same way (DTensors: each rank averages its own slices); `gathered()`
    makes a whole copy.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: _to_shadow(v) for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow one step towards the model's current weights."""
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().float(), 1.0 - self.decay)
            else:
                shadow.copy_(value)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into `model` (cast to its dtypes)."""
        model.load_state_dict(self.shadow)

    def state_dict(self) -> dict[str, Any]:
        """The decay and the shadow tensors."""
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (tensors are copied onto the current shadow's device)."""
        if state["shadow"].keys() != self.shadow.keys():
            raise ValueError("EMA state does not match the model: the parameter names differ")
        self.decay = state["decay"]
        for key, value in state["shadow"].items():
            shadow = self.shadow[key]
            if isinstance(shadow, DTensor) and not isinstance(value, DTensor):  # whole tensors: keep this rank's slice
                value = distribute_tensor(value.to(shadow.device), shadow.device_mesh, shadow.placements,
                                          src_data_rank=None)
            shadow.copy_(value)

    def gathered(self) -> EMA:
        """This EMA with whole tensors: itself, or for a sharded shadow a copy gathered from every rank (a
        collective: every rank must call it)."""
        if not any(isinstance(v, DTensor) for v in self.shadow.values()):
            return self
        whole = copy.copy(self)
        whole.shadow = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in self.shadow.items()}
        return whole


def _to_shadow(value: torch.Tensor) -> torch.Tensor:
    value = value.detach().clone()
    return value.float() if value.is_floating_point() else value


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The state of the python, numpy, torch CPU and (if present) CUDA generators, in `torch.load`-safe types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from `rng_state()`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, **states: Any) -> Path:
    """Write `states` (state dicts, ints, RNG state...) with `torch.save`, atomically: a kill or a full disk leaves
    the earlier checkpoint as it was (see `hunyuan_video.files.atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(states, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` onto the CPU (tensors only, no pickled code); a missing,
    incomplete or corrupt file is a one-line ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"checkpoint {path} is incomplete or corrupt: {reason}") from None


def save_training_state(path: str | Path, step: int, **parts: Any) -> Path:
    """Checkpoint a run: each part's `state_dict()` under its name (None stays None), the RNG state and `step`."""
    states = {name: None if part is None else part.state_dict() for name, part in parts.items()}
    return save_checkpoint(path, step=step, rng=rng_state(), **states)


def load_training_state(path: str | Path, **parts: Any) -> int:
    """Restore each (non-None) part and the RNG state from a `save_training_state` checkpoint; returns its step.
    A part the checkpoint does not fit (other shapes or names) is a one-line ValueError naming the first misfit."""
    state = load_checkpoint(path)
    for name, part in parts.items():
        if part is not None:
            if state.get(name) is None:
                raise ValueError(f"{path} holds no {name}: it was written by a run without one")
            try:
                part.load_state_dict(state[name])
            except (KeyError, RuntimeError, ValueError) as error:  # names or shapes that differ
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                first = next((line for line in lines if line.startswith(("size mismatch", "Missing", "Unexpected"))),
                             lines[0] if lines else repr(error))
                raise ValueError(f"{path}: its {name} does not fit this run ({first})") from None
    set_rng_state(state["rng"])
    return state["step"]


class JsonlLogger:
    """Appends one JSON line per call: `{"step": ..., "time": ..., **scalars}`. A log whose last line a kill tore
    (no final newline) is cut back to its last whole line when the logger opens it, so that the next record starts
    on a line of its own."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # torn: read the whole log (rare) to find its last whole line
                    f.seek(0)
                    data = f.read()
                    keep = data.rfind(b"\n") + 1
                    warnings.warn(f"{self.path}: dropped a torn last line ({len(data) - keep} bytes)", stacklevel=2)
                    f.truncate(keep)

    def log(self, step: int, **scalars: float | torch.Tensor) -> None:
        """Append the scalars of one step (tensors are turned into floats)."""
        record = {"step": int(step), "time": round(time.time(), 3)}
        record.update({k: float(v) for k, v in scalars.items()})
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL log; a later record for the same step (after a resume) replaces the earlier one. A line
    that is not a JSON record (torn by a kill mid-write) is skipped with a warning."""
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = record["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            warnings.warn(f"{path}:{number}: skipped a line that is not a whole record: {line[:60]!r}", stacklevel=2)
            continue
        by_step.setdefault(step, {}).update(record)
    return [by_step[s] for s in sorted(by_step)]


def plot_losses(jsonl_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot every scalar of a JSONL log against the step, one panel per scalar, into a PNG; None (no file) when
    the log is missing or empty (a run resumed at its last step into a new out_dir)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(jsonl_path) if Path(jsonl_path).exists() else []
    keys = sorted({k for r in records for k in r} - {"step", "time"})
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return png_path


LR_SCHEDULES = ("constant", "cosine")  # the trainers' `lr_schedule` values (see schedule_lambda)


def warmup_lambda(warmup_steps: int, decay_steps: int = 0, final: float = 0.1) -> Callable[[int], float]:
    """A `LambdaLR` factor rising linearly from 1/warmup_steps to 1 over `warmup_steps` steps, then constant, or
    with `decay_steps > 0` falling along a half cosine to `final` at step `decay_steps` (and staying there)."""
    if warmup_steps < 0 or decay_steps < 0:
        raise ValueError(f"warmup_steps and decay_steps must be >= 0, got {warmup_steps}, {decay_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if step >= decay_steps:
            return final if decay_steps else 1.0
        progress = (step - warmup_steps) / max(decay_steps - warmup_steps, 1)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def schedule_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The `LambdaLR` factor of a config's `lr_schedule` (one of `LR_SCHEDULES`): warm-up, then constant, or a
    cosine decay to 10% at `total_steps`. The configs check the name when they are made."""
    return warmup_lambda(warmup_steps, total_steps if schedule == "cosine" else 0)


def autocast_context(device: torch.device | str, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, and on the CPU when `cpu_bf16`; a no-op otherwise (CPU training runs in float32)."""
    device = torch.device(device)
    if device.type == "cuda" or (device.type == "cpu" and cpu_bf16):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
