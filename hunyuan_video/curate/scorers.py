"""Pluggable learned scorers and embedders, loaded from local paths (never downloaded); none is required.

A scorer ({"name", "path", "size": 224, "min": least score or absent}) is a TorchScript file mapping a batch of
frames (N, 3, size, size), float in [0, 1], to one score per frame (N,) — an aesthetic or clarity model, or an
OCR/text-area detector returning the text's share of the frame (then "max" instead of "min"). A clip's score is the
mean over its key frames; clips outside the limits are rejected by the scorer's name.

The embedder ({"path", "size": 224, "clusters": K, "per_cluster": M}) maps frames to embeddings (N, D); the clips'
middle-frame embeddings are clustered by k-means and each concept (cluster) keeps at most M clips (the sharpest),
which balances the dataset's concepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hunyuan_video.curate.config import CurateConfig


def check_models(config: CurateConfig) -> None:
    """A ValueError naming the first scorer, embedder or captioner whose local file or folder is missing."""
    for spec in [*config.scorers, *([config.embedder] if config.embedder else [])]:
        if not isinstance(spec, dict) or "path" not in spec or ("name" not in spec and spec is not config.embedder):
            raise ValueError(f"a scorer needs a name and a path, an embedder a path; got {spec!r}")
        if not Path(spec["path"]).is_file():
            raise ValueError(f"model {spec['path']} does not exist (models are loaded from local paths only)")
    if config.captioner:
        model = Path(config.captioner.get("model", ""))
        if not model.is_dir():
            raise ValueError(f"captioner model {model} is not a folder (models are loaded from local paths only)")


BATCH_CLIPS = 32  # clips whose key frames go through a model at once (memory stays bounded)


def _load(spec: dict[str, Any]):
    import torch

    return torch.jit.load(str(spec["path"]), map_location="cpu").eval()


def _key_frames(rows: Sequence[dict[str, Any]], raw: Path, size: int) -> np.ndarray:
    """The key frames (3 per clip: a quarter, half and three quarters in) resized to size x size, (3N, 3, S, S)."""
    import cv2

    from hunyuan_video.video_io import read_video

    out = []
    for row in rows:
        top, bottom, left, right = row["crop"]
        picks = [row["start"] + round(q * (row["end"] - row["start"] - 1)) for q in (0.25, 0.5, 0.75)]
        for frame in read_video(raw / row["source"], picks):
            picture = frame[top : frame.shape[0] - bottom, left : frame.shape[1] - right]
            out.append(cv2.resize(picture, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out).transpose(0, 3, 1, 2).astype(np.float32) / 255


def _outputs(spec: dict[str, Any], rows: Sequence[dict[str, Any]], raw: Path, cache: Path) -> list[np.ndarray]:
    """A model's outputs for each clip's three key frames, (3, ...) per clip, computed in batches and cached per clip
    under `cache` by the model's settings, size and modification time (a run again computes none twice)."""
    import hashlib
    import json

    from hunyuan_video.files import atomic_path

    stat = Path(spec["path"]).stat()
    key = json.dumps({**spec, "bytes": stat.st_size, "mtime": stat.st_mtime_ns}, sort_keys=True)
    folder = cache / "models" / hashlib.sha256(key.encode()).hexdigest()[:16]
    out: list[np.ndarray | None] = [None] * len(rows)
    todo = []
    for i, row in enumerate(rows):
        if (folder / f"{row['id']}.npy").is_file():
            out[i] = np.load(folder / f"{row['id']}.npy")
        else:
            todo.append(i)
    model = _load(spec) if todo else None
    for n in range(0, len(todo), BATCH_CLIPS):
        chunk = todo[n : n + BATCH_CLIPS]
        values = _run(model, _key_frames([rows[i] for i in chunk], raw, int(spec.get("size", 224))))
        for i, value in zip(chunk, values.reshape(len(chunk), 3, -1)):
            with atomic_path(folder / f"{rows[i]['id']}.npy") as tmp:
                np.save(tmp, value)
            out[i] = value
    return out


def _run(model, frames: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(frames)).float().numpy()


def kmeans(points: np.ndarray, k: int, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """Cluster labels of `points` (N, D) by Lloyd's k-means from k-means++ seeds."""
    rng = np.random.default_rng(seed)
    k = min(k, len(points))
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(points[rng.choice(len(points), p=d / d.sum())] if d.sum() > 0 else points[0])
    centres = np.stack(centres)
    labels = np.zeros(len(points), int)
    for _ in range(iterations):
        labels = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        moved = np.stack([points[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return labels


def apply_scorers(rows: list[dict[str, Any]], raw: Path, cache: Path, config: CurateConfig) -> None:
    """Score the clips with each configured scorer (into row["scores"]) and balance concepts with the embedder,
    adding a reason to the rows they reject; models' outputs are cached under `cache`."""
    for spec in config.scorers if rows else []:
        for row, value in zip(rows, _outputs(spec, rows, raw, cache)):
            score = float(value.mean())
            row.setdefault("scores", {})[spec["name"]] = score
            if "min" in spec and score < spec["min"]:
                row["reasons"].append(f"{spec['name']}: below {spec['min']}")
            if "max" in spec and score > spec["max"]:
                row["reasons"].append(f"{spec['name']}: above {spec['max']}")
    live = [r for r in rows if not r["reasons"]]
    if not config.embedder or not live:
        return
    spec = config.embedder
    embeddings = np.stack([value[1] for value in _outputs(spec, live, raw, cache)])  # the middle key frame's
    embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-8)
    labels = kmeans(embeddings, int(spec.get("clusters", 8)))
    for j in np.unique(labels):
        members = sorted((i for i in range(len(live)) if labels[i] == j), key=lambda i: -live[i]["sharpness"])
        for i in members:
            live[i]["concept"] = int(j)
        for i in members[int(spec.get("per_cluster", len(live))) :]:
            live[i]["reasons"].append(f"concept: cluster {int(j)} holds more than {spec['per_cluster']} clips")
