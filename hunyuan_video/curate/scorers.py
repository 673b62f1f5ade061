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


def apply_scorers(rows: list[dict[str, Any]], raw: Path, config: CurateConfig) -> None:
    """Score the clips with each configured scorer (into row["scores"]) and balance concepts with the embedder,
    adding a reason to the rows they reject."""
    if not rows or not (config.scorers or config.embedder):
        return
    for spec in config.scorers:
        size = int(spec.get("size", 224))
        model = _load(spec)
        scores = _run(model, _key_frames(rows, raw, size)).reshape(len(rows), 3).mean(1)
        for row, score in zip(rows, scores):
            row.setdefault("scores", {})[spec["name"]] = float(score)
            if "min" in spec and score < spec["min"]:
                row["reasons"].append(f"{spec['name']}: below {spec['min']}")
            if "max" in spec and score > spec["max"]:
                row["reasons"].append(f"{spec['name']}: above {spec['max']}")
    if config.embedder:
        spec = config.embedder
        live = [r for r in rows if not r["reasons"]]
        if not live:
            return
        embeddings = _run(_load(spec), _key_frames(live, raw, int(spec.get("size", 224))))[1::3]
        embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-8)
        labels = kmeans(embeddings, int(spec.get("clusters", 8)))
        for j in np.unique(labels):
            members = sorted((i for i in range(len(live)) if labels[i] == j), key=lambda i: -live[i]["sharpness"])
            for i in members:
                live[i]["concept"] = int(j)
            for i in members[int(spec.get("per_cluster", len(live))) :]:
                live[i]["reasons"].append(f"concept: cluster {int(j)} holds more than {spec['per_cluster']} clips")
