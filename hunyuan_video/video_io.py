"""Read and write videos and images: H.264 mp4 through PyAV, GIF and PNG through Pillow.

Frames are always uint8 numpy arrays shaped (T, H, W, 3), RGB. Every writer is atomic: it fills a temporary beside
the target and renames it into place once complete (`hunyuan_video.files`), so that a full disk, an error or Ctrl-C
leaves no partial file and an earlier file at the target whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from hunyuan_video.files import atomic_path, remove, temporary_path

X264_THREADS = 8  # libx264's threads for every mp4 written (see write_video)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, read from its header (frames counted by decoding when the header lacks it)."""

    frames: int
    fps: float
    height: int
    width: int


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}: convert [-1, 1] floats with to_uint8()")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be shaped (T, H, W, 3) with T >= 1, got {tuple(frames.shape)}")
    return frames


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Map values in [-1, 1] (a model's output) to uint8 [0, 255], clipping what falls outside."""
    return ((np.asarray(x, dtype=np.float32) + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 24, crf: int = 18) -> Path:
    """Write frames (T, H, W, 3) uint8 to an H.264 (yuv420p) mp4; H and W must be even (a yuv420p rule)."""
    frames = _check_frames(frames)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(
            f"H.264 yuv420p needs an even height and width, got {h}x{w}: crop or pad the frames, "
            "or use write_gif / write_frames_png"
        )
    check_fps(fps)
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4",
                                           options={"movflags": "faststart"}) as container:  # index first: streamable
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # x264's output depends on its thread count, which defaults to the machine's CPU count: a fixed count makes
        # the same frames the same file on every machine.
        stream.options = {"crf": str(crf), "preset": "medium", "threads": str(X264_THREADS)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def check_fps(fps: float, name: str = "fps") -> None:
    """A ValueError (naming the value as `name`) unless `fps` is a positive, finite number of frames per second."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"{name} must be positive and finite, got {fps}")


def open_for_reading(path: str | Path) -> av.container.InputContainer:
    """Open a file that must hold a video stream; any failure is a ValueError naming the file."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"{path}: not a readable video: {e}") from e
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: holds no video stream")
    return container


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, fps, height and width of a video file."""
    with open_for_reading(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        frames = stream.frames or sum(1 for _ in container.decode(stream))
        return VideoInfo(frames=frames, fps=fps, height=stream.height, width=stream.width)


def read_video(path: str | Path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode a video to uint8 (T, H, W, 3); `indices` picks frames (decoding stops after the last one)."""
    if indices is not None and len(indices) == 0:
        raise ValueError("indices is empty: pass None to read every frame")
    wanted = None if indices is None else set(indices)
    last = -1 if wanted is None else max(wanted)
    out: dict[int, np.ndarray] = {}
    decoded = 0
    with open_for_reading(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for i, frame in enumerate(container.decode(stream)):
                decoded += 1
                if wanted is None or i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24")
                if wanted is not None and i >= last:
                    break
        except av.FFmpegError as e:
            raise ValueError(f"{path}: decoding failed after {decoded} frames: {e}") from e
    if not decoded:
        raise ValueError(f"{path}: no video frames could be decoded")
    if wanted is not None:
        missing = sorted(wanted - out.keys())
        if missing:
            raise ValueError(f"{path}: frame {missing[0]} asked for is past the end of the video ({decoded} frames)")
        return np.stack([out[i] for i in indices])
    return np.stack([out[i] for i in sorted(out)])


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as a one-frame clip, uint8 (1, H, W, 3)."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))[None]


def write_gif(path: str | Path, frames: np.ndarray, fps: float = 8) -> Path:
    """Write frames (T, H, W, 3) uint8 as a looping GIF."""
    frames = _check_frames(frames)
    check_fps(fps)
    path = Path(path)
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def write_frames_png(directory: str | Path, frames: np.ndarray) -> list[Path]:
    """Write each frame as `directory/00000.png`, `00001.png`, ...; returns the paths. The frames are written into a
    temporary folder beside `directory` and moved in once all are complete (each replacing a frame of that name);
    other files in `directory` are left as they are."""
    frames = _check_frames(frames)
    directory = Path(directory)
    names = [f"{i:05d}.png" for i in range(len(frames))]
    tmp = temporary_path(directory)
    remove(tmp)
    try:
        tmp.mkdir(parents=True)
        for frame, name in zip(frames, names):
            Image.fromarray(frame).save(tmp / name, format="PNG")
        directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(tmp / name, directory / name)
    finally:
        remove(tmp)
    return [directory / name for name in names]


OUTPUT_KINDS = {".mp4": "mp4", ".gif": "gif"}  # suffix (any case) -> kind; a path without a suffix: "png frames"


def output_kind(path: str | Path) -> str:
    """What `write_output` writes at `path`: "mp4" or "gif" by its suffix (any case), or "png frames" (a folder of
    png files) for a path without a suffix, one that ends in a separator or an existing folder. Another suffix is a
    ValueError."""
    text = str(path)
    path = Path(path)
    if path.suffix.lower() in OUTPUT_KINDS and not text.endswith(("/", os.sep)):
        return OUTPUT_KINDS[path.suffix.lower()]
    if not path.suffix or text.endswith(("/", os.sep)) or path.is_dir():
        return "png frames"
    raise ValueError(f"{path}: unknown suffix {path.suffix!r}: use .mp4, .gif, or a name without a suffix (or ending "
                     "in /) for a folder of png frames")


def write_output(path: str | Path, frames: np.ndarray, fps: float) -> str:
    """Write frames (T, H, W, 3) uint8 as `output_kind(path)` says; returns that kind."""
    kind = output_kind(path)
    if kind == "mp4":
        write_video(path, frames, fps=fps)
    elif kind == "gif":
        write_gif(path, frames, fps=fps)
    else:
        write_frames_png(path, frames)
    return kind
