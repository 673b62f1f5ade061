"""Shot detection with PySceneDetect's detectors, fed frame by frame: content and adaptive detectors find hard cuts,
the threshold detector finds fades through black. Shots shorter than the minimum are dropped, longer ones split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hunyuan_video.curate.config import CurateConfig


class ShotDetector:
    """Streams frames (RGB uint8, any size) through the configured PySceneDetect detectors; `cuts()` gives the first
    frame of every shot but the first, with cuts of different detectors that fall within a few frames merged."""

    def __init__(self, fps: float, config: CurateConfig) -> None:
        from scenedetect.detectors import AdaptiveDetector, ContentDetector, ThresholdDetector

        self.fps = fps
        self.min_gap = max(2, round(0.25 * fps))
        make = {
            "content": lambda: ContentDetector(threshold=config.content_threshold, min_scene_len=self.min_gap),
            "adaptive": lambda: AdaptiveDetector(adaptive_threshold=config.adaptive_threshold,
                                                 min_scene_len=self.min_gap),
            "threshold": lambda: ThresholdDetector(threshold=config.fade_threshold, min_scene_len=self.min_gap),
        }
        self.detectors = [make[name]() for name in config.detectors] if config.shots else []
        self.found: list[int] = []
        self.index = 0

    def _timecode(self, index: int):
        from scenedetect import FrameTimecode

        return FrameTimecode(index, fps=self.fps)

    def push(self, frame: np.ndarray) -> None:
        """Feed the next frame (RGB; the detectors read BGR, as OpenCV decodes)."""
        if self.detectors:
            bgr = np.ascontiguousarray(frame[..., ::-1])
            timecode = self._timecode(self.index)
            for detector in self.detectors:
                self.found += [int(c.frame_num) for c in detector.process_frame(timecode, bgr)]
        self.index += 1

    def cuts(self) -> list[int]:
        """The first frame of each shot after the first (sorted, merged within `min_gap` frames)."""
        if self.detectors and self.index:
            end = self._timecode(self.index)
            for detector in self.detectors:
                self.found += [int(c.frame_num) for c in detector.post_process(end)]
        merged: list[int] = []
        for cut in sorted(c for c in set(self.found) if 0 < c < self.index):
            if merged and cut - merged[-1] < self.min_gap:
                continue
            merged.append(cut)
        return merged


def shot_ranges(cuts: Sequence[int], frames: int) -> list[tuple[int, int]]:
    """The [start, end) frame ranges between cuts, covering frames 0 .. frames."""
    edges = [0, *cuts, frames]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def split_long(start: int, end: int, max_frames: int) -> list[tuple[int, int]]:
    """[start, end) cut into equal pieces of at most `max_frames` frames."""
    pieces = max(1, -(-(end - start) // max_frames))
    edges = [start + round(i * (end - start) / pieces) for i in range(pieces + 1)]
    return list(zip(edges, edges[1:]))
