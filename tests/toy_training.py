"""A toy trainer on `run_loop` (a linear model on random batches, in well under a second), for the tests of the
training folder's rules. Run as a script (`python toy_training.py OUT_DIR MARKER HOLD_STEP`) it trains in OUT_DIR
and holds the writer of the checkpoint of step HOLD_STEP with half its bytes written, touching MARKER, so that a test
can kill it there."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from hunyuan_video.train.loop import apply_gradients, run_loop


@dataclass
class ToyConfig:
    RESUME_MAY_CHANGE: ClassVar[tuple[str, ...]] = ("log_every", "checkpoint_every")

    width: int = 4
    lr: float = 0.05
    steps: int = 6
    log_every: int = 1
    checkpoint_every: int = 2


def train_toy(out_dir: str | Path, config: ToyConfig, *, resume: bool = False, overwrite: bool = False,
              max_steps: int | None = None) -> torch.nn.Linear:
    """Train the toy model in `out_dir`; returns it. Each step's batch comes from the global torch RNG (which the
    checkpoint holds), so a resumed run is bit-exact only if the checkpoint is whole."""
    torch.manual_seed(0)
    model = torch.nn.Linear(config.width, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)

    def step(index: int) -> dict:
        x = torch.randn(8, config.width)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        apply_gradients(loss, optimizer, model.parameters())
        return {"loss": loss.detach()}

    run_loop(step, {"model": model, "optimizer": optimizer}, out_dir, config, total_steps=config.steps,
             log_every=config.log_every, checkpoint_every=config.checkpoint_every, max_steps=max_steps,
             resume=resume, overwrite=overwrite, progress=False)
    return model


def _held_save(marker: Path, hold_step: int):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if isinstance(obj, dict) and obj.get("step") == hold_step:
            data = Path(f).read_bytes()
            Path(f).write_bytes(data[: len(data) // 2])
            marker.touch()
            time.sleep(120)  # killed here, mid-write

    return save


if __name__ == "__main__":
    out, marker, hold = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    torch.save = _held_save(marker, hold)
    train_toy(out, ToyConfig())
