"""Export: the kept clips of one source video cut, cropped and re-encoded (H.264 mp4) in one streaming decode; a clip
whose file exists is complete (files are written atomically) and is left as it is."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hunyuan_video.curate.probe import FrameStream
from hunyuan_video.files import atomic_path
from hunyuan_video.video_io import X264_THREADS


class _ClipWriter:
    """An H.264 mp4 written frame by frame into a temporary file, renamed into place by `close`."""

    def __init__(self, path: Path, fps: float, height: int, width: int, crf: int) -> None:
        import av

        self._atomic = atomic_path(path)
        tmp = self._atomic.__enter__()
        self._container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "faststart"})
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "medium", "threads": str(X264_THREADS)}

    def write(self, frame: np.ndarray) -> None:
        import av

        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        self._container.mux(self._stream.encode(picture))

    def close(self, ok: bool) -> None:
        """Finish the file and move it into place (`ok`), or delete it."""
        try:
            if ok:
                self._container.mux(self._stream.encode())
            self._container.close()
        finally:
            if ok:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(RuntimeError, RuntimeError("clip not finished"), None)


def export_clips(path: str | Path, rotation: int, fps: float, clips: Sequence[dict[str, Any]], out: str | Path,
                 crf: int) -> int:
    """Write each clip ({"id", "start", "end", "crop"}) of the video at `path` to OUT/ID.mp4, skipping those
    already there; returns how many were written. A clip that decoding does not reach in full is not written."""
    out = Path(out)
    todo = sorted((c for c in clips if not (out / f"{c['id']}.mp4").exists()), key=lambda c: c["start"])
    if not todo:
        return 0
    open_writers: dict[str, _ClipWriter] = {}
    written = 0
    stream = FrameStream(path, rotation)
    last = max(c["end"] for c in todo)
    try:
        for i, frame in enumerate(stream):
            for clip in todo:
                if not clip["start"] <= i < clip["end"]:
                    continue
                top, bottom, left, right = clip["crop"]
                picture = frame[top : frame.shape[0] - bottom, left : frame.shape[1] - right]
                if clip["id"] not in open_writers:
                    open_writers[clip["id"]] = _ClipWriter(out / f"{clip['id']}.mp4", fps, *picture.shape[:2], crf)
                open_writers[clip["id"]].write(picture)
                if i == clip["end"] - 1:
                    open_writers.pop(clip["id"]).close(ok=True)
                    written += 1
            if i >= last - 1:
                break
    finally:
        for writer in open_writers.values():
            writer.close(ok=False)
    return written
