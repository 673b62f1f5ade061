"""Checkpoints of runs whose model is sharded with FSDP2, written with `torch.distributed.checkpoint` (DCP).

`OUT_DIR/checkpoint.dcp/` holds one DCP folder per saved step (`step_000500/`: each rank writes its own slices, and
`.metadata` says where every slice of every tensor lies) and `latest`, the name of the last complete one, replaced
atomically once every rank has written: a run killed mid-save resumes from the step before. What a folder holds:
each model's state dict and its optimiser's (keyed by parameter name, `get_model_state_dict` and
`get_optimizer_state_dict`), the EMA shadow, and as pickled bytes the other parts' state dicts (LR schedule, data
sampler), the step and the RNG state.

DCP re-shards on load: a checkpoint loads into as many ranks as the run now has, sharded or not, and into one process
without a process group; `load_full_into` reads a one-process `checkpoint.pt` into sharded parts (a run that moves from
one process to several). The parts are those `run_loop` checkpoints: models, their optimisers (each matched to the
model that holds its parameters), an `EMA`, and any object with `state_dict`/`load_state_dict`.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from hunyuan_video.files import remove, write_text_atomic
from hunyuan_video.train.common import EMA, load_checkpoint, rng_state, set_rng_state
from hunyuan_video.train.distributed import is_main, rank_and_world, wait_for_ranks

LATEST = "latest"


def _owners(parts: Mapping[str, Any]) -> dict[str, nn.Module]:
    """Each optimiser part's model: the module part that holds its first parameter."""
    modules = {name: part for name, part in parts.items() if isinstance(part, nn.Module)}
    owners = {}
    for name, part in parts.items():
        if isinstance(part, torch.optim.Optimizer):
            first = part.param_groups[0]["params"][0]
            owner = next((m for m in modules.values() if any(p is first for p in m.parameters())), None)
            if owner is None:
                raise ValueError(f"the optimiser {name!r} trains no model of the checkpoint")
            owners[name] = owner
    return owners


def _pickled(value: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return buffer


def _unpickled(buffer: io.BytesIO) -> Any:
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=True)


def _dcp_state(parts: Mapping[str, Any]) -> dict[str, Any]:
    """What DCP writes and, for a load, fills in place: the parts' state dicts in their DCP form."""
    owners = _owners(parts)
    state: dict[str, Any] = {}
    for name, part in parts.items():
        if part is None:
            continue
        if isinstance(part, nn.Module):
            state[name] = get_model_state_dict(part)
        elif name in owners:
            state[name] = get_optimizer_state_dict(owners[name], part)
        elif isinstance(part, EMA):
            state[name] = {"shadow": part.shadow}
        else:
            state[name] = _pickled(part.state_dict())
    return state


@contextlib.contextmanager
def _one_process_quiet() -> Iterator[None]:
    """Without DCP's warning that it runs in one process (which is what it is asked to do)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _step_folders(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("step_*") if p.is_dir())


def latest_step_folder(path: str | Path) -> Path | None:
    """The last complete step folder of a `checkpoint.dcp` folder, or None when it has none."""
    pointer = Path(path) / LATEST
    return Path(path) / pointer.read_text().strip() if pointer.is_file() else None


def save_sharded(path: str | Path, step: int, **parts: Any) -> Path:
    """Write a checkpoint of `parts` at `step` into the folder `path` (every rank calls it: a collective); once it is
    complete, `latest` names it and the folders of earlier steps are deleted. Returns the step's folder."""
    path = Path(path)
    folder = path / f"step_{step:06d}"
    if is_main():
        remove(folder)  # a save of this step that a kill interrupted
    wait_for_ranks()
    state = _dcp_state(parts)
    state["meta"] = _pickled({"step": step, "rng": rng_state()})
    with _one_process_quiet():
        dcp.save(state, checkpoint_id=folder, no_dist=rank_and_world()[1] == 1)
    wait_for_ranks()
    if is_main():
        write_text_atomic(path / LATEST, folder.name + "\n")
        for old in _step_folders(path):
            if old != folder:
                remove(old)
    wait_for_ranks()
    return folder


def load_sharded(path: str | Path, **parts: Any) -> int:
    """Restore each (non-None) part and the RNG state from the last complete step of the `checkpoint.dcp` folder
    `path`, re-sharded for this run (any number of ranks, sharded or not, or one process); returns its step. A part
    the checkpoint does not hold or fit is a one-line ValueError."""
    folder = latest_step_folder(path)
    if folder is None or not folder.is_dir():
        raise ValueError(f"checkpoint {path} holds no complete step (its {LATEST} is missing or names no folder)")
    state = _dcp_state(parts)
    state["meta"] = io.BytesIO()
    try:
        with _one_process_quiet():
            dcp.load(state, checkpoint_id=folder, no_dist=rank_and_world()[1] == 1)
    except (CheckpointException, RuntimeError, ValueError, KeyError) as error:  # DCP gathers the ranks' errors
        reasons = re.findall(r"(Missing key in checkpoint state_dict: [^\s,]+|Size mismatch[^\n]*)", str(error))
        reason = reasons[0] if reasons else str(error).strip().splitlines()[0]
        raise ValueError(f"{folder}: the checkpoint does not fit this run ({reason})") from None
    owners = _owners(parts)
    for name, part in parts.items():
        if part is None:
            continue
        if isinstance(part, nn.Module):
            set_model_state_dict(part, state[name])
        elif name in owners:
            set_optimizer_state_dict(owners[name], part, state[name])
        elif not isinstance(part, EMA):  # the EMA's shadow was filled in place
            part.load_state_dict(_unpickled(state[name]))
    meta = _unpickled(state["meta"])
    set_rng_state(meta["rng"])
    return meta["step"]


def load_full_into(path: str | Path, **parts: Any) -> int:
    """Restore parts, sharded or not, from a one-process `checkpoint.pt` (`common.save_training_state`): every rank
    reads the whole file and keeps its slices. Returns its step."""
    state = load_checkpoint(path)
    owners = _owners(parts)
    full = StateDictOptions(full_state_dict=True)
    for name, part in parts.items():
        if part is None:
            continue
        if state.get(name) is None:
            raise ValueError(f"{path} holds no {name}: it was written by a run without one")
        if isinstance(part, nn.Module):
            set_model_state_dict(part, state[name], options=full)
        elif name in owners:
            names = {id(p): n for n, p in owners[name].named_parameters()}
            order = [names[id(p)] for group in part.param_groups for p in group["params"]]
            saved = state[name]
            keyed = {"state": {order[i]: v for i, v in saved["state"].items()},
                     "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]]}
            set_optimizer_state_dict(owners[name], part, keyed, options=full)
        else:
            part.load_state_dict(state[name])
    set_rng_state(state["rng"])
    return state["step"]
