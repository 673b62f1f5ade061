"""The rules of a training folder (`out_dir`), checked before anything is computed or written.

A run starts in a folder that is missing or empty. A folder that holds anything is refused unless the run says
`resume` (continue its `checkpoint.pt` or sharded `checkpoint.dcp/`, with a config that differs from the run's
`config.json` only in the fields its config class lists in `RESUME_MAY_CHANGE`) or `overwrite` (the earlier run is
moved aside, whole, to `OUT_DIR.old-YYYYmmdd-HHMMSS`; nothing is deleted). Checkpoint temporaries that a kill left
behind are removed when a run starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hunyuan_video.config import config_to_dict
from hunyuan_video.files import remove, stale_temporaries

CHECKPOINT = "checkpoint.pt"
SHARDED_CHECKPOINT = "checkpoint.dcp"  # the checkpoint of a run sharded with FSDP2 (see train.sharded_checkpoint)
CONFIG = "config.json"


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    """`{"a": {"b": 1}, "c": [2]}` as `{"a.b": 1, "c[0]": 2}` (leaves keyed by their path)."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}.{key}" if prefix else key)
                .items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def config_differences(old: dict[str, Any], new: dict[str, Any], may_change: Collection[str] = ()) -> list[str]:
    """The fields (dotted paths: `transformer.hidden_size`, `stages[1].steps`) whose values differ between two config
    dicts, each as `path (old -> new)`, leaving out the top-level fields named in `may_change`."""
    a, b = _flatten(old, ""), _flatten(new, "")
    missing = object()
    differences = []
    for path in sorted(a.keys() | b.keys()):
        top = path.split(".")[0].split("[")[0]
        before, after = a.get(path, missing), b.get(path, missing)
        if top not in may_change and before != after:
            shown = ["(none)" if v is missing else json.dumps(v)[:40] for v in (before, after)]
            differences.append(f"{path} ({shown[0]} -> {shown[1]})")
    return differences


def check_run_dir(out_dir: str | Path, config: Any, *, resume: bool = False, overwrite: bool = False) -> None:
    """A one-line ValueError unless a run of `config` may start in `out_dir` as asked (see the module); reads only."""
    out = Path(out_dir)
    if resume and overwrite:
        raise ValueError("--resume continues the run in out_dir and --overwrite moves it aside: pass one of them")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} is a file, not a folder")
    if resume:
        checkpoint = out / CHECKPOINT
        if not (checkpoint.is_file() or (out / SHARDED_CHECKPOINT / "latest").is_file()):
            raise ValueError(f"--resume: checkpoint {checkpoint} does not exist (drop --resume to start a new run)")
        saved = out / CONFIG
        if saved.is_file():
            try:
                old = json.loads(saved.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"--resume: the run's {saved} is not valid JSON: {error}") from None
            may_change = getattr(config, "RESUME_MAY_CHANGE", ())
            differences = config_differences(old, config_to_dict(config), may_change)
            if differences:
                shown = ", ".join(differences[:6]) + (f" and {len(differences) - 6} more" if len(differences) > 6
                                                      else "")
                raise ValueError(f"--resume: the config differs from the run's {saved} in {shown}; only "
                                 f"{', '.join(sorted(may_change))} may change on resume (or start a new out_dir)")
    elif not overwrite and out.is_dir() and any(out.iterdir()):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:4])
        raise ValueError(f"out_dir {out} already holds a run ({held}...): pass --resume to continue it, --overwrite "
                         "to move it aside, or choose another out_dir")


def set_aside_path(out_dir: str | Path) -> Path:
    """Where `--overwrite` moves an earlier run: `OUT_DIR.old-YYYYmmdd-HHMMSS` (with `-2`, `-3`... when taken)."""
    out = Path(out_dir)
    base = out.with_name(f"{out.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def prepare_run_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path | None:
    """Make `out_dir`, once `check_run_dir` has passed, ready for the writing rank: with `overwrite` a non-empty
    folder is moved aside (returns where to), and stale checkpoint temporaries are deleted."""
    out = Path(out_dir)
    moved = None
    if overwrite and out.is_dir() and any(out.iterdir()):
        moved = set_aside_path(out)
        out.rename(moved)
    for stale in stale_temporaries(out / CHECKPOINT):
        remove(stale)
    return moved
