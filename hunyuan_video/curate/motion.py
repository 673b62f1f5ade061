"""Motion: dense optical flow (OpenCV's Farneback) between consecutive downscaled frames, a global fit of each flow
field (translation, zoom, rotation), a motion score and the camera-movement label of a clip.

Flow is measured in percent of the frame's shorter side per frame. The fit is u = tx + z x - r y, v = ty + r x + z y
over the frame's inner part (coordinates from the centre, in units of the shorter side): a pan slides the scene
sideways (tx), a tilt up and down (ty), a zoom scales it about the centre (z).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hunyuan_video.curate.config import CurateConfig


def flow_fit(previous: np.ndarray, current: np.ndarray) -> list[float]:
    """The global fit of the flow from one gray frame to the next: (tx, ty, zoom, rotation, magnitude, residual),
    translation and magnitudes in percent of the shorter side per frame, zoom and rotation per frame."""
    import cv2

    flow = cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    h, w = previous.shape
    side = min(h, w)
    my, mx = max(1, h // 10), max(1, w // 10)
    flow = flow[my : h - my, mx : w - mx] / side * 100
    ys, xs = np.mgrid[my : h - my, mx : w - mx]
    x, y = ((xs - (w - 1) / 2) / side).ravel(), ((ys - (h - 1) / 2) / side).ravel()
    u, v = flow[..., 0].ravel(), flow[..., 1].ravel()
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    a = np.concatenate([np.stack([ones, zeros, x, -y], 1), np.stack([zeros, ones, y, x], 1)])
    b = np.concatenate([u, v])
    params, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = float(np.sqrt(np.mean((a @ params - b) ** 2)))
    tx, ty, zoom, rotation = (float(p) for p in params)
    return [tx, ty, zoom / 100, rotation / 100, float(np.mean(np.hypot(u, v))), residual]


def motion_score(fits: Sequence[Sequence[float]]) -> float:
    """A clip's motion: the mean flow magnitude of its frame pairs (% of the shorter side per frame)."""
    return float(np.mean([f[4] for f in fits])) if fits else 0.0


def camera_label(fits: Sequence[Sequence[float]], config: CurateConfig) -> str:
    """The camera movement of a clip from its flow fits: static, pan_left/right, tilt_up/down, zoom_in/out, handheld
    (translation that keeps changing direction) or complex (flow that no global fit explains: moving subjects,
    parallax)."""
    if not fits or motion_score(fits) < config.static_motion:
        return "static"
    f = np.asarray(fits, np.float64)
    if f[:, 5].mean() > config.complex_residual * f[:, 4].mean():
        return "complex"
    t = f[:, :2]
    mean_t = t.mean(0)
    zoom = abs(f[:, 2].mean()) * 50  # flow of the zoom half a shorter side from the centre, in % per frame
    if zoom > config.zoom_ratio * np.abs(mean_t).max():
        return "zoom_in" if f[:, 2].mean() > 0 else "zoom_out"
    if np.linalg.norm(mean_t) < config.handheld_consistency * np.linalg.norm(t, axis=1).mean():
        return "handheld"
    if abs(mean_t[0]) >= abs(mean_t[1]):
        return "pan_right" if mean_t[0] < 0 else "pan_left"  # the camera turns right: the scene slides left
    return "tilt_down" if mean_t[1] < 0 else "tilt_up"
