"""Probe: what a raw file holds (duration, fps, size, codec, rotation), its content hash, and its frames streamed.

A file that cannot be opened, or holds no video stream, is rejected with the reason; a file whose decoding fails
part-way yields the frames before the failure and says where it stopped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hunyuan_video.video_io import open_for_reading


class Unreadable(ValueError):
    """A file that is not a readable video (the message says why)."""


@dataclass
class Probe:
    """A video's header: frames (0 when the header does not say), fps, size after rotation, codec, rotation."""

    frames: int
    fps: float
    height: int
    width: int
    codec: str
    rotation: int
    duration: float

    def to_dict(self) -> dict[str, Any]:
        """The probe as plain JSON values."""
        return dict(self.__dict__)


def file_hash(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(path: Path):
    """`video_io.open_for_reading`, its failure an `Unreadable` whose message is the reason alone."""
    try:
        return open_for_reading(path)
    except ValueError as e:
        raise Unreadable(str(e).removeprefix(f"{path}: ")) from None


def _rotation(container, stream) -> int:
    """The clockwise rotation (0, 90, 180, 270) the file asks players to apply, read from its first frame."""
    import av

    try:
        frame = next(container.decode(stream), None)
    except av.FFmpegError:
        return 0
    return int(round(-getattr(frame, "rotation", 0) or 0)) % 360 if frame is not None else 0


def probe(path: str | Path) -> Probe:
    """The header of a video file; `Unreadable` when it cannot be opened or holds no video."""
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if not fps > 0:
            raise Unreadable("no frame rate in the header")
        height, width = stream.codec_context.height, stream.codec_context.width
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            container.duration / 1e6 if container.duration else 0.0)
        frames = int(stream.frames or round(duration * fps))
        rotation = _rotation(container, stream)
        if rotation in (90, 270):
            height, width = width, height
        return Probe(frames, fps, height, width, stream.codec_context.name, rotation, duration)


class FrameStream:
    """The decoded frames of a video, uint8 (H, W, 3) RGB, one at a time; after iterating, `error` holds why
    decoding stopped early (None when it reached the end)."""

    def __init__(self, path: str | Path, rotation: int = 0) -> None:
        self.path, self.rotation = Path(path), rotation
        self.error: str | None = None
        self.count = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        import av

        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    image = frame.to_ndarray(format="rgb24")
                    if self.rotation:
                        image = np.ascontiguousarray(np.rot90(image, k=-self.rotation // 90))
                    self.count += 1
                    yield image
            except (av.FFmpegError, ValueError) as e:
                self.error = f"decoding failed after {self.count} frames: {e}"
