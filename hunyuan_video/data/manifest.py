"""Read a dataset folder: which files, with which captions, of what length and size; skip and report bad ones.

A dataset is a folder of videos (mp4, webm, mov) and images (png, jpg) with captions, listed by `metadata.jsonl`
(one `{"file": ..., "caption": ...}` a line; optional `fps`, `frames`, `height`, `width`, and any other field,
kept in `Sample.meta`) or, when there is none, by a `.txt` caption beside each file.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class DataWarning(UserWarning):
    """A file of a dataset was skipped."""


@dataclass(frozen=True)
class Sample:
    """One file of a dataset: where, its caption, its length (1 for images) and size."""

    file: Path
    caption: str
    frames: int
    height: int
    width: int
    fps: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_image(self) -> bool:
        """Whether the file is a still image (not a video)."""
        return self.file.suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class SkipReport:
    """The files left out of a dataset and why; each one added warns with a running count."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, file: str | Path, reason: str) -> None:
        """Record a skipped file and warn (a file already recorded is not recorded again)."""
        if any(f == str(file) for f, _ in self.skipped):
            return
        self.skipped.append((str(file), reason))
        warnings.warn(f"skipped {file}: {reason} ({len(self.skipped)} skipped so far)", DataWarning, stacklevel=2)

    def add_all(self, entries: Sequence[tuple[str, str]]) -> None:
        """Record (file, reason) pairs, such as a batch's "skipped" list."""
        for file, reason in entries:
            self.add(file, reason)

    def __len__(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """One line per kind of problem with its count, then every skipped file."""
        if not self.skipped:
            return "no files skipped"
        kinds = Counter(reason.split(":")[0] for _, reason in self.skipped)
        lines = [f"{len(self.skipped)} files skipped: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common())]
        lines += [f"  {file}: {reason}" for file, reason in self.skipped]
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        """Write the report as JSON: a list of {file, reason} (atomically: see `hunyuan_video.files`)."""
        from hunyuan_video.files import write_text_atomic

        rows = [{"file": f, "reason": r} for f, r in self.skipped]
        write_text_atomic(path, json.dumps(rows, indent=1) + "\n")


def _probe(file: Path) -> tuple[int, int, int, float | None]:
    """(frames, height, width, fps) read from the file's header; ValueError if it cannot be read."""
    if file.suffix.lower() in IMAGE_EXTENSIONS:
        from PIL import Image

        try:
            with Image.open(file) as image:
                image.verify()
                width, height = image.size
        except Exception as e:  # Pillow raises many kinds for a broken file
            raise ValueError(f"not a readable image: {e}") from e
        return 1, height, width, None
    from hunyuan_video.video_io import video_info

    info = video_info(file)
    if info.frames < 1:
        raise ValueError("not a readable video: no frames")
    return info.frames, info.height, info.width, info.fps


def _entries(root: Path, report: SkipReport) -> list[tuple[Path, str, dict[str, Any]]]:
    """(file, caption, manifest row) of every listed file with a non-empty caption."""
    manifest = root / "metadata.jsonl"
    entries = []
    if manifest.exists():
        for n, line in enumerate(manifest.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                file = root / row["file"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                report.add(f"{manifest}:{n}", f"bad manifest line: {e!r}")
                continue
            entries.append((file, str(row.get("caption") or "").strip(), row))
    else:
        for file in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS):
            txt = file.with_suffix(".txt")
            if not txt.exists():
                report.add(file, f"no caption: {txt.name} is missing")
                continue
            entries.append((file, txt.read_text().strip(), {}))
    kept = []
    for file, caption, row in entries:
        if not caption:
            report.add(file, "empty caption")
        else:
            kept.append((file, caption, row))
    return kept


def read_dataset(root: str | Path, verify: bool = False, report: SkipReport | None = None) -> tuple[
        list[Sample], SkipReport]:
    """The readable, captioned samples of a dataset folder, and the report of what was skipped.

    Length and size come from the manifest when it gives `frames`, `height` and `width`, else from the file's
    header (which also proves it opens); `verify=True` reads every header. Files that turn out broken later,
    when decoded, are caught by the dataset that loads them.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    report = report if report is not None else SkipReport()
    samples = []
    for file, caption, row in _entries(root, report):
        if file.suffix.lower() not in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
            report.add(file, f"unsupported type: not one of {VIDEO_EXTENSIONS + IMAGE_EXTENSIONS}")
            continue
        if not file.is_file():
            report.add(file, "missing file")
            continue
        known = all(isinstance(row.get(k), int) for k in ("frames", "height", "width"))
        if known and not verify:
            frames, height, width, fps = row["frames"], row["height"], row["width"], row.get("fps")
        else:
            try:
                frames, height, width, fps = _probe(file)
            except ValueError as e:
                report.add(file, f"unreadable: {e}")
                continue
        meta = {k: v for k, v in row.items() if k not in ("file", "caption", "fps", "frames", "height", "width")}
        samples.append(Sample(file, caption, frames, height, width, fps, meta))
    return samples, report
