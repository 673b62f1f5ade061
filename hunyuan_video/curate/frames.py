"""Per-frame measurements and the choices made from them: sharpness (variance of the Laplacian), brightness, black
bars; the sharpest start frame of a clip, the faded frames to trim, and the letterbox crop of a clip."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_gray(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> gray uint8 (H, W)."""
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def sharpness(gray: np.ndarray) -> float:
    """The variance of the Laplacian of a gray frame: high for sharp detail, low for blur."""
    import cv2

    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def black_bars(frame: np.ndarray, black_level: int) -> tuple[int, int, int, int]:
    """The black border (top, bottom, left, right) in pixels: the outer rows and columns whose brightest pixel is
    under `black_level`."""
    peak = frame.max(axis=2)
    rows, cols = peak.max(axis=1) >= black_level, peak.max(axis=0) >= black_level
    if not rows.any():
        return frame.shape[0], 0, frame.shape[1], 0
    r, c = np.flatnonzero(rows), np.flatnonzero(cols)
    return int(r[0]), int(len(rows) - 1 - r[-1]), int(c[0]), int(len(cols) - 1 - c[-1])


def clip_crop(bars: Sequence[tuple[int, int, int, int]], height: int, width: int) -> tuple[int, int, int, int]:
    """The crop (top, bottom, left, right) of a clip from its frames' black bars: the median of the frames whose
    picture is at least half the frame, shrunk to keep an even picture size (0s when none qualifies)."""
    good = [b for b in bars if b[0] + b[1] < height / 2 and b[2] + b[3] < width / 2]
    if not good:
        return 0, 0, 0, 0
    top, bottom, left, right = (int(np.median([b[i] for b in good])) for i in range(4))
    bottom += (height - top - bottom) % 2
    right += (width - left - right) % 2
    return top, bottom, left, right


def trim_fades(brightness: Sequence[float], start: int, end: int) -> tuple[int, int]:
    """[start, end) without its darkest leading and trailing frames: those under half the range's median level
    (a fade in or out)."""
    level = float(np.median(brightness[start:end])) / 2
    while start < end and brightness[start] < level:
        start += 1
    while end > start and brightness[end - 1] < level:
        end -= 1
    return start, end


def pick_start(sharp: Sequence[float], start: int, end: int, window: int) -> int:
    """The sharpest frame among the first `window` frames of [start, end) (the first on ties)."""
    stop = max(start + 1, min(end, start + window))
    return start + int(np.argmax(sharp[start:stop]))
