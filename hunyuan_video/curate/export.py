"""Export: the kept clips of one source video cut, cropped and re-encoded (H.264 mp4) in one streaming decode; a clip
whose file exists is complete (files are written atomically) and is left as it is."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hunyuan_video.curate.probe import FrameStream
from hunyuan_video.files import atomic_path
from hunyuan_video.video_io import X264_THREADS


@contextlib.contextmanager
def _clip_writer(path: Path, fps: float, height: int, width: int, crf: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield a function that appends a frame to an H.264 mp4 at `path`; the file appears, complete, when the block
    ends without error (and not at all otherwise)."""
    import av

    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4",
                                           options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", "threads": str(X264_THREADS)}

        def write(frame: np.ndarray) -> None:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))

        yield write
        container.mux(stream.encode())


class _Ended(Exception):
    """Decoding ended before a clip did."""


def export_clips(path: str | Path, rotation: int, fps: float, clips: Sequence[dict[str, Any]], out: str | Path,
                 crf: int) -> int:
    """Write each clip ({"id", "start", "end", "crop"}; clips must not overlap, as those of one video never do) of the
    video at `path` to OUT/ID.mp4, skipping those already there; returns how many were written. A clip that decoding
    does not reach in full is not written."""
    out = Path(out)
    todo = sorted((c for c in clips if not (out / f"{c['id']}.mp4").exists()), key=lambda c: c["start"])
    frames = iter(FrameStream(path, rotation))  # a generator: closing it closes the file
    position, written = 0, 0

    def next_frame() -> np.ndarray:
        nonlocal position
        frame = next(frames, None)
        if frame is None:
            raise _Ended
        position += 1
        return frame

    try:
        for clip in todo:
            while position < clip["start"]:
                next_frame()
            top, bottom, left, right = clip["crop"]
            frame = next_frame()
            picture = frame[top : frame.shape[0] - bottom, left : frame.shape[1] - right]
            with _clip_writer(out / f"{clip['id']}.mp4", fps, *picture.shape[:2], crf) as write:
                write(picture)
                while position < clip["end"]:
                    frame = next_frame()
                    write(frame[top : frame.shape[0] - bottom, left : frame.shape[1] - right])
            written += 1
    except _Ended:
        pass
    finally:
        frames.close()  # the decoder, when the last clip ends before the video does
    return written
