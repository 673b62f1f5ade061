"""The training loop both trainers run, and the optimisation pieces they share.

A trainer builds its model, optimisers, EMA and data, then hands `run_loop` a `step(step_index) -> scalars` closure
(one optimisation step: draw this rank's part of the batch, compute the loss, `apply_gradients`, update the EMA) and
the parts to checkpoint. The loop owns what is the same for every trainer: the rules of the training folder
(`train.run_dir`: exact resume with a config that fits, refusing or moving aside an earlier run), `config.json`,
the step count and `max_steps`, the JSONL log (with the memory peak of each log interval) and its plot, periodic jobs
(samples, validation), atomic checkpoints with the RNG state, and the progress bar. Under `torch.distributed` only
rank 0 logs and writes; every rank steps, runs the periodic jobs (which gather a sharded EMA together and leave the
writing to rank 0) and loads the checkpoint. A run whose model is sharded with FSDP2 checkpoints with
`torch.distributed.checkpoint` into `checkpoint.dcp/` (see `train.sharded_checkpoint`), every rank writing its slices;
other runs write `checkpoint.pt`. A resume reads whichever of the two is newer, re-sharded for this run's ranks.
"""

from __future__ import annotations

import resource
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor
from tqdm import tqdm

from hunyuan_video.config import save_config
from hunyuan_video.files import remove
from hunyuan_video.train.common import (
    JsonlLogger,
    load_training_state,
    plot_losses,
    save_training_state,
    schedule_lambda,
)
from hunyuan_video.train.distributed import average_gradients, is_main, is_sharded, mean_over_ranks, wait_for_ranks
from hunyuan_video.train.run_dir import CHECKPOINT, CONFIG, SHARDED_CHECKPOINT, check_run_dir, prepare_run_dir
from hunyuan_video.train.sharded_checkpoint import latest_step_folder, load_full_into, load_sharded, save_sharded

Scalars = Mapping[str, Tensor | float]


def adamw(params: Iterable[Any], lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `params` (parameters, or groups that may set their own `lr`)."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)


def lr_schedule(optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, total_steps: int
                ) -> torch.optim.lr_scheduler.LambdaLR:
    """The config's `lr_schedule` (see `common.schedule_lambda`) over the whole run of `total_steps` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_lambda(schedule, warmup_steps, total_steps))


def apply_gradients(loss: Tensor | Iterable[Tensor], optimizer: torch.optim.Optimizer,
                    params: Iterable[torch.nn.Parameter], grad_clip: float | None = None,
                    schedule: torch.optim.lr_scheduler.LRScheduler | None = None) -> Tensor | None:
    """One update: clear the gradients, backpropagate `loss`, average the gradients over the ranks, clip their norm
    to `grad_clip` (when given), step the optimiser and the schedule. Returns the norm before clipping, or None.

    `loss` may instead be an iterable of the losses of equal micro-batches (gradient accumulation), each the mean
    over its rows and backpropagated as it comes (so that one micro-batch's graph is alive at a time): the update
    is that of their mean, the loss of the whole batch."""
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    count = 0
    for each in [loss] if isinstance(loss, Tensor) else loss:
        each.backward()
        count += 1
    if count > 1:
        for p in params:
            if p.grad is not None:
                p.grad.div_(count)
    average_gradients(params)
    norm = None if grad_clip is None else torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if isinstance(norm, DTensor):  # the norm over a sharded model's slices, the same on every rank
        norm = norm.full_tensor()
    optimizer.step()
    if schedule is not None:
        schedule.step()
    return norm


def peak_memory() -> dict[str, float]:
    """The memory high-water mark in MiB, named for what it measures: with CUDA in use, `cuda_peak_mib` (the most
    tensor memory allocated since the previous call, whose peak it resets); otherwise `rss_peak_mib` (the process's
    peak resident set so far, `getrusage`'s `ru_maxrss`, which never goes down)."""
    if torch.cuda.is_initialized():
        peak = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        return {"cuda_peak_mib": peak}
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"rss_peak_mib": maxrss / (2**20 if sys.platform == "darwin" else 2**10)}


@dataclass
class Periodic:
    """A job a run does every `every` steps (0: never in between) and after its last step, on every rank: `run(step)`
    writes samples or validates on rank 0 (the others take part in gathering a sharded EMA, then return), and may
    return scalars to log."""

    every: int
    run: Callable[[int], Scalars | None]

    def due(self, step: int, end: int) -> bool:
        """Whether the job runs after step `step` of a run that stops at `end`."""
        return step == end or (self.every > 0 and step % self.every == 0)


def last_step(total_steps: int, max_steps: int | None) -> int:
    """Where a run stops: the end of its schedule, or `max_steps` (>= 1) when that is sooner."""
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return min(total_steps, max_steps or total_steps)


def run_loop(
    step: Callable[[int], Scalars],
    parts: Mapping[str, Any],
    out_dir: str | Path,
    config: Any,
    *,
    total_steps: int,
    log_every: int,
    checkpoint_every: int,
    max_steps: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    periodic: Sequence[Periodic] = (),
    desc: str = "train",
    progress: bool = True,
) -> int:
    """Run `step(i)` for i from the start (0, or with `resume` the step of the run's checkpoint) to
    `last_step(total_steps, max_steps)`; returns the step reached.

    `parts` (name -> object with `state_dict`/`load_state_dict`, or None) and the RNG state are what the
    checkpoint holds, written atomically every `checkpoint_every` steps and after the last: `checkpoint.pt`, or
    `checkpoint.dcp/` when a part is a model sharded with FSDP2 (see the module). The scalars `step`
    returns are averaged over the ranks and appended to `log.jsonl` with rank 0's `peak_memory` every `log_every`
    steps and after the last;
    `loss.png` plots them at the end (a plot that fails is a warning, never the end of the run). `config` (a
    dataclass) is written to `config.json` once the checkpoint has loaded. `out_dir` follows `train.run_dir`'s rules:
    a folder holding a run is refused unless `resume` (with a config that fits) or `overwrite` (moved aside), checked
    before anything is written.
    """
    out = Path(out_dir)
    end = last_step(total_steps, max_steps)
    main = is_main()
    check_run_dir(out, config, resume=resume, overwrite=overwrite)
    wait_for_ranks()  # every rank has checked before rank 0 moves an earlier run aside
    if main and (moved := prepare_run_dir(out, overwrite=overwrite)):
        print(f"--overwrite: moved the earlier run in {out} to {moved}")
    sharded = any(is_sharded(part) for part in parts.values())
    done = load_run_checkpoint(out, parts, sharded) if resume else 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / CONFIG)
    logger = JsonlLogger(out / "log.jsonl") if main else None
    bar = tqdm(total=end, initial=done, desc=desc, dynamic_ncols=True, disable=not (progress and main))
    while done < end:
        scalars = step(done)
        done += 1
        bar.update()
        if done % log_every == 0 or done == end:
            scalars = mean_over_ranks(scalars)  # a collective: every rank takes part
            if logger is not None:
                logger.log(done, **scalars, **peak_memory())
            if "loss" in scalars:
                bar.set_postfix(loss=f"{float(scalars['loss']):.4f}")
        for job in periodic:
            if job.due(done, end) and (extra := job.run(done)) and main:
                logger.log(done, **extra)
                bar.write(f"step {done}: " + ", ".join(f"{k} {float(v):.3f}" for k, v in extra.items()))
        if done % checkpoint_every == 0 or done == end:
            save_run_checkpoint(out, done, parts, sharded)
    bar.close()
    if main:
        try:
            plot_losses(out / "log.jsonl", out / "loss.png")
        except Exception as error:  # the plot is a view of the log: it never stops the run or its export
            warnings.warn(f"could not draw {out / 'loss.png'}: {error}", stacklevel=2)
    return done


def load_run_checkpoint(out: Path, parts: Mapping[str, Any], sharded: bool) -> int:
    """Restore `parts` from the newer of `out`'s `checkpoint.pt` and `checkpoint.dcp/` (a run may change between
    one process and several, sharded or not); returns its step."""
    single, latest = out / CHECKPOINT, out / SHARDED_CHECKPOINT / "latest"
    if latest_step_folder(out / SHARDED_CHECKPOINT) is not None and not (
            single.is_file() and single.stat().st_mtime > latest.stat().st_mtime):
        return load_sharded(out / SHARDED_CHECKPOINT, **parts)
    return (load_full_into if sharded else load_training_state)(single, **parts)


def save_run_checkpoint(out: Path, step: int, parts: Mapping[str, Any], sharded: bool) -> None:
    """Checkpoint `parts` at `step`: a sharded run into `checkpoint.dcp/` (every rank), another into `checkpoint.pt`
    (rank 0); the checkpoint of the other kind, from an earlier part of the run, is then deleted."""
    if sharded:
        save_sharded(out / SHARDED_CHECKPOINT, step, **parts)
    elif is_main():
        save_training_state(out / CHECKPOINT, step, **parts)
    if is_main():
        remove(out / (CHECKPOINT if sharded else SHARDED_CHECKPOINT))
