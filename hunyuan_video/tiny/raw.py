"""Raw footage of the synthetic world, for testing `hunyuan_video.curate`: long videos of several shots joined by
hard cuts and fades, with the ground truth of every shot written beside each video as `NAME.json`.

Each shot films its own large textured backdrop with a moving camera (pan, tilt, zoom, handheld shake, or none), so
that shots differ from each other and optical flow sees the camera's motion. Some shots are made hard to use on
purpose: static (a still image held), blurry, or letterboxed (black bars). The footage also holds an exact copy of a
video, a re-encoded near-copy, a video cut off half-way, and a file that is no video at all.

    truth = write_raw_footage("raw/")   # {file name: ground truth}; also raw/NAME.json per video
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from hunyuan_video.video_io import write_video

PAN_SPEED = 1.6  # pixels per frame of a pan or tilt, at the frame's scale
ZOOM_RATE = 0.018  # relative change of the field of view per frame
FADE_FRAMES = 5  # frames of a fade out (and of the fade in that follows)


@dataclass
class Shot:
    """One shot of a raw video: what the camera does, and how the shot is spoiled ("" when it is not)."""

    camera: str
    frames: int
    spoil: str = ""  # "static", "blurry" or ""
    letterbox: tuple[int, int, int, int] = (0, 0, 0, 0)  # black bars: top, bottom, left, right (pixels)
    transition: str = "cut"  # how the shot begins after the one before: "cut" or "fade"
    seed: int = 0
    start: int = 0  # first frame in the video (filled in when the video is drawn)
    end: int = 0  # one past the last frame


@dataclass
class RawVideo:
    """A raw video to draw: its shots, size and rate."""

    name: str
    shots: list[Shot]
    height: int = 96
    width: int = 128
    fps: float = 12.0
    extra: dict[str, Any] = field(default_factory=dict)


def _backdrop(seed: int, height: int, width: int) -> np.ndarray:
    """A textured backdrop three times the frame size: smooth colour fields, blobs and fine detail (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    big_h, big_w = 3 * height, 3 * width
    coarse = rng.uniform(50, 230, size=(6, 8, 3)).astype(np.float32)
    base = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((big_w, big_h), Image.BICUBIC), np.float32)
    detail = rng.uniform(-1, 1, size=(big_h // 4, big_w // 4, 1)).astype(np.float32)
    detail = np.asarray(Image.fromarray(((detail[..., 0] + 1) * 127.5).astype(np.uint8)).resize(
        (big_w, big_h), Image.BILINEAR), np.float32)[..., None] / 127.5 - 1
    image = base + 45 * detail
    yy, xx = np.mgrid[0:big_h, 0:big_w]
    for _ in range(40):  # sharp-edged blobs: corners and edges for optical flow and sharpness
        cy, cx, r = rng.uniform(0, big_h), rng.uniform(0, big_w), rng.uniform(4, 14)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r if rng.random() < 0.5 else (
            (abs(yy - cy) < r) & (abs(xx - cx) < r * 0.7))
        image[mask] = rng.uniform(40, 240, size=3)
    return image.clip(40, 240).astype(np.uint8)


def _camera_view(camera: str, t: int, frames: int, rng: np.random.Generator,
                 shake: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(x offset, y offset, scale) of the camera window at frame t, in units of the frame size."""
    s = t - (frames - 1) / 2
    if camera == "pan_right":  # the camera turns right: the scene slides left in the frame
        return PAN_SPEED * s, 0.0, 1.0
    if camera == "pan_left":
        return -PAN_SPEED * s, 0.0, 1.0
    if camera == "tilt_down":
        return 0.0, PAN_SPEED * s, 1.0
    if camera == "tilt_up":
        return 0.0, -PAN_SPEED * s, 1.0
    if camera == "zoom_in":  # the field of view narrows: the scene grows in the frame
        return 0.0, 0.0, (1 - ZOOM_RATE) ** s
    if camera == "zoom_out":
        return 0.0, 0.0, (1 + ZOOM_RATE) ** s
    if camera == "handheld":
        return shake[t][0], shake[t][1], 1.0
    return 0.0, 0.0, 1.0


def _draw_shot(shot: Shot, height: int, width: int) -> np.ndarray:
    """The frames (T, H, W, 3) uint8 of one shot, spoils and bars included, before any fade."""
    import cv2

    backdrop = _backdrop(shot.seed, height, width)
    rng = np.random.default_rng(shot.seed + 1)
    walk = np.cumsum(rng.normal(0, 1.4, size=(shot.frames, 2)), axis=0)
    shake = [(float(x), float(y)) for x, y in walk - walk.mean(0)]
    top, bottom, left, right = shot.letterbox
    inner_h, inner_w = height - top - bottom, width - left - right
    frames = np.zeros((shot.frames, height, width, 3), np.uint8)
    cy, cx = backdrop.shape[0] / 2, backdrop.shape[1] / 2
    for t in range(shot.frames):
        dx, dy, scale = _camera_view("static" if shot.spoil == "static" else shot.camera, t, shot.frames, rng, shake)
        # Output pixel (u, v) of the inner picture looks at backdrop point centre + offset + scale * (u, v - centre).
        m = np.array([[scale * width / inner_w, 0, cx + dx - scale * width / 2],
                      [0, scale * height / inner_h, cy + dy - scale * height / 2]], np.float64)
        view = cv2.warpAffine(backdrop, m, (inner_w, inner_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if shot.spoil == "blurry":
            view = np.asarray(Image.fromarray(view).filter(ImageFilter.GaussianBlur(2.5)))
        frames[t, top : top + inner_h, left : left + inner_w] = view
    return frames


def draw_video(video: RawVideo) -> np.ndarray:
    """The frames of a raw video: its shots in order, a fade shot faded in from black after the one before fades
    out to black (the black frame ends the shot before). Fills in each shot's `start` and `end`."""
    pieces, position = [], 0
    for i, shot in enumerate(video.shots):
        frames = _draw_shot(shot, video.height, video.width).astype(np.float32)
        fade_out = i + 1 < len(video.shots) and video.shots[i + 1].transition == "fade"
        if fade_out:
            ramp = np.linspace(1, 0, FADE_FRAMES)
            frames[-FADE_FRAMES:] *= ramp[:, None, None, None]
        if shot.transition == "fade" and i:
            ramp = np.arange(1, FADE_FRAMES + 1) / (FADE_FRAMES + 1)
            frames[:FADE_FRAMES] *= ramp[:, None, None, None]
        shot.start, shot.end = position, position + shot.frames
        position = shot.end
        pieces.append(frames.round().clip(0, 255).astype(np.uint8))
    return np.concatenate(pieces)


def truth(video: RawVideo) -> dict[str, Any]:
    """The ground truth of a drawn video: size, rate, frames and its shots (`draw_video` fills in their ranges)."""
    return {"file": f"{video.name}.mp4", "fps": video.fps, "height": video.height, "width": video.width,
            "frames": sum(s.frames for s in video.shots), "shots": [asdict(s) for s in video.shots], **video.extra}


def default_footage(seed: int = 0) -> list[RawVideo]:
    """The standard test footage: two long videos of five shots each, and a short one to be copied."""
    def shots(*specs: tuple) -> list[Shot]:
        out = []
        for i, (camera, frames, *rest) in enumerate(specs):
            spoil, letterbox, transition = (list(rest) + ["", (0, 0, 0, 0), "cut"][len(rest):])[:3]
            out.append(Shot(camera, frames, spoil, tuple(letterbox), transition, seed=seed * 1000 + 17 * i + 1))
        return out

    long_a = RawVideo("long_a", shots(("pan_right", 30), ("tilt_down", 26, "", (0, 0, 0, 0), "fade"),
                                      ("zoom_in", 28), ("static", 24, "static"), ("pan_left", 30, "", (12, 12, 0, 0))))
    for s in long_a.shots:
        s.seed += 100
    long_b = RawVideo("long_b", shots(("tilt_up", 28), ("zoom_out", 30), ("pan_right", 26, "blurry", (0, 0, 0, 0),
                                                                          "fade"),
                                      ("handheld", 28), ("tilt_down", 28, "", (0, 0, 16, 16), "fade")))
    for s in long_b.shots:
        s.seed += 200
    short_c = RawVideo("short_c", shots(("pan_left", 28), ("zoom_in", 26)))
    for s in short_c.shots:
        s.seed += 300
    broken = RawVideo("broken", shots(("pan_right", 40), ("tilt_up", 40), ("zoom_out", 40), ("pan_left", 40)))
    for s in broken.shots:
        s.seed += 400
    return [long_a, long_b, short_c, broken]


def write_raw_footage(out: str | Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Write the standard test footage to `out` with a `NAME.json` of ground truth beside each video; returns the
    truths by file name. Besides the drawn videos: `copy_c.mp4` (byte-identical to short_c.mp4), `reencoded_c.mp4`
    (short_c's frames encoded again, at a lower quality), `broken.mp4` cut off after half of its bytes, and
    `garbage.mp4` (not a video)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truths: dict[str, dict[str, Any]] = {}
    for video in default_footage(seed):
        frames = draw_video(video)
        write_video(out / f"{video.name}.mp4", frames, fps=video.fps)
        truths[f"{video.name}.mp4"] = truth(video)
        if video.name == "short_c":
            write_video(out / "reencoded_c.mp4", frames, fps=video.fps, crf=30)
            shutil.copyfile(out / "short_c.mp4", out / "copy_c.mp4")
            truths["reencoded_c.mp4"] = {**truth(video), "file": "reencoded_c.mp4", "duplicate_of": "short_c.mp4"}
            truths["copy_c.mp4"] = {**truth(video), "file": "copy_c.mp4", "duplicate_of": "short_c.mp4"}
    data = (out / "broken.mp4").read_bytes()
    (out / "broken.mp4").write_bytes(data[: len(data) // 2])
    truths["broken.mp4"]["truncated"] = True
    (out / "garbage.mp4").write_bytes(np.random.default_rng(seed).bytes(5000))
    truths["garbage.mp4"] = {"file": "garbage.mp4", "unreadable": True, "shots": []}
    for name, t in truths.items():
        (out / name).with_suffix(".json").write_text(json.dumps(t, indent=1) + "\n")
    return truths
