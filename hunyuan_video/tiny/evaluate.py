"""The yardstick of the synthetic world: does a video show the colour and the motion its caption names?

How it looks at a video (uint8 frames, T H W 3):
1. Background: the synthetic backgrounds only vary from top to bottom, so each row's background colour is the
   median over time of that row's three first and three last columns.
2. Foreground: pixels farther than `FOREGROUND_DISTANCE` (RGB) from the background, but for the outermost ring
   of pixels (no object of the world reaches it; decoders put their artefacts there). Every object colour is at
   least ~130 away from every background colour, so blur and noise of a generated video stay on the right side.
3. Colour: each foreground pixel is "unmixed": for every named colour c, the pixel is projected onto the segment
   background -> c, and the colour leaving the smallest residual wins. A blurred edge (half object, half
   background) so still votes for the object's colour, not for the named colour it happens to lie near.
   Votes are weighted by the distance from the background; the colours with the most votes are the detection.
4. Motion: the object's soft mask per frame (the coverage alpha of all foreground for a one-object caption, else
   of the pixels of the named colour) gives a centroid track and an area track, classified in this order:
   grow / shrink (area x2 or /2 over the clip), orbit (the new-concept world's "moves in a circle": the centroid
   stays >= 8% of the frame from the track's centre and turns one way round it by >= 270 degrees in steps of
   <= 100, where a straight or bouncing track jumps 180), bounce (vertical swing >= 15% of the frame with >= 2 turns and
   little net travel), a straight direction (net travel >= 12% of the frame, 8 sectors of 45 degrees; speed
   slow/fast split at the midpoint of the world's two speeds), rotate (same place and area, but the mask turns:
   its soft IoU with the first frame's mask, both centred and 3x3-smoothed, drops below 0.85), else still.
5. Shape: in three frames spread over the clip, the object's soft mask is matched against every shape of the world
   (the new-concept heart included) drawn with the mask's area and centroid at every distinct rotation (6-degree
   steps); the shape of the best soft IoU in most of the frames wins.

Reliable (100% on the world's own clips, also through H.264 and after blur and noise, see tests/test_tiny_evaluate.py):
the colours, the eight directions, still, grow, shrink, bounce, orbit, and speed. Rotation is the weakest: a square at
45 degrees still overlaps itself by ~0.7-0.8, and on blurred, noisy clips still objects score 0.87-0.97, rotating
ones 0.53-0.82, a narrow margin; a generator's wobbly still object can read as "rotate", and a blurred rotating
square as "still". The evaluator does not judge size. `background_name` names the world's background (dark or
light) nearest a video's; `evaluate_folder` judges it where a manifest row names its background.

The palette is the default world's colours; videos of the new-concept world are scored with `NEW_CONCEPT_PALETTE`,
which adds its new colours (pink), so that a pink object counts as pink, not as the nearest old colour.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hunyuan_video.tiny.synth import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    LIGHT_BACKGROUNDS,
    MOTION_PHRASES,
    NEW_COLOURS,
    NEW_SHAPES,
    SHAPES,
    SIZES,
    SPEED_WORDS,
    SPEEDS,
    draw_shape,
    shape_points,
)

FOREGROUND_DISTANCE = 60.0
MIN_TRAVEL = 0.12  # net travel (fraction of the shorter side) that counts as moving
GROW_RATIO = 2.0
BOUNCE_RANGE = 0.15
ROTATE_IOU = 0.85
ORBIT_SWEEP = 270.0  # degrees the centroid turns round the track's centre for "moves in a circle"
ORBIT_STEP = 100.0  # the most it may turn between two found frames (a straight or bouncing track jumps 180)
ORBIT_MIN_RADIUS = 0.08  # of the shorter side: the least distance from the centre at any frame
NEW_CONCEPT_PALETTE: dict[str, tuple[int, int, int]] = {**COLOURS, **NEW_COLOURS}
# Every shape the evaluator tells apart, and the turn after which each looks the same again (degrees).
SHAPE_PERIODS: dict[str, int] = {"circle": 6, "square": 90, "triangle": 120, "star": 72, "heart": 360}
SHAPE_ANGLE_STEP = 6
SHAPE_FRAMES = 3  # frames, spread over the clip, whose masks vote on the shape


@dataclass
class Detection:
    """What the evaluator saw: colours by share of the foreground, and the tracked object's motion and track."""

    colours: list[str]
    motion: str | None  # None: no object found in enough frames
    speed: str | None  # for straight motions only
    shape: str | None  # None: no object found in enough frames
    x: np.ndarray  # (T,) centroid in pixels, nan where the object was not found
    y: np.ndarray
    area: np.ndarray  # (T,) pixels


def estimate_background(frames: np.ndarray, band: int = 3) -> np.ndarray:
    """Per-row background colour (H, 3): the median over time of each row's `band` first and last columns
    (a band, not one column, so that a decoder's artefact on the outermost pixels does not shift it)."""
    edges = np.concatenate([frames[:, :, :band], frames[:, :, -band:]], axis=2).astype(np.float32)  # T H 2b 3
    return np.median(edges.transpose(1, 0, 2, 3).reshape(frames.shape[1], -1, 3), axis=1)


def background_name(frames: np.ndarray) -> str:
    """The world's background, dark or light, nearest a video's own: `estimate_background` over the top eighth of
    the frame, where a gradient still shows its named colour."""
    top = estimate_background(frames)[: max(1, frames.shape[1] // 8)].mean(0)
    named = {**BACKGROUNDS, **LIGHT_BACKGROUNDS}
    return min(named, key=lambda name: float(np.linalg.norm(top - np.asarray(named[name], dtype=np.float32))))


def label_pixels(
    frames: np.ndarray, background: np.ndarray, palette: Mapping[str, tuple[int, int, int]] = COLOURS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel (T, H, W): distance from the background, index in `palette` of the unmixed colour (-1 off the
    foreground), and coverage alpha in [0, 1] of that colour (0 off the foreground)."""
    colours = np.array(list(palette.values()), dtype=np.float32)  # (K, 3)
    diff = frames.astype(np.float32) - background[None, :, None, :]
    dist = np.linalg.norm(diff, axis=-1)
    labels = np.full(dist.shape, -1, dtype=np.int64)
    coverage = np.zeros(dist.shape, dtype=np.float32)
    fg = dist > FOREGROUND_DISTANCE
    fg[:, [0, -1]] = fg[:, :, [0, -1]] = False  # the outermost pixels: where decoders leave artefacts, no object is
    rows = np.nonzero(fg)[1]
    p = diff[fg]  # N 3, relative to the background
    d = colours[None] - background[rows][:, None]  # N K 3: segment from the background to each colour
    dd = np.maximum((d * d).sum(-1), 1e-6)
    pd = np.einsum("nc,nkc->nk", p, d)
    alpha = np.clip(pd / dd, 0.0, 1.0)
    residual = (p * p).sum(-1, keepdims=True) - 2 * alpha * pd + alpha * alpha * dd  # squared, N K
    best = residual.argmin(1)
    labels[fg] = best
    coverage[fg] = alpha[np.arange(len(best)), best]
    return dist, labels, coverage


def _classify_track(x: np.ndarray, y: np.ndarray, area: np.ndarray, masks: list[np.ndarray], side: int):
    """(motion, speed) from centroid and area tracks (nan where missing) and the soft masks of the valid frames."""
    ok = ~np.isnan(x)
    t = np.linspace(0.0, 1.0, len(x))[ok]
    xs, ys, areas = x[ok] / side, y[ok] / side, area[ok]
    vx, vy = np.polyfit(t, xs, 1)[0], np.polyfit(t, ys, 1)[0]  # travel over the whole clip
    ratio = math.exp(np.polyfit(t, np.log(areas), 1)[0])
    if ratio >= GROW_RATIO:
        return "grow", None
    if ratio <= 1 / GROW_RATIO:
        return "shrink", None
    if _orbits(xs, ys):
        return "orbit", None
    travel = math.hypot(vx, vy)
    if ys.max() - ys.min() >= BOUNCE_RANGE and travel < MIN_TRAVEL and _turns(ys, 0.03) >= 2:
        return "bounce", None
    if travel >= MIN_TRAVEL:
        angle = math.degrees(math.atan2(vy, vx))
        direction = min(DIRECTIONS, key=lambda m: _angle_gap(angle, math.degrees(math.atan2(*DIRECTIONS[m][::-1]))))
        speed = "slow" if travel < sum(SPEEDS.values()) / 2 else "fast"
        return direction, speed
    if _min_centred_iou(masks) < ROTATE_IOU:
        return "rotate", None
    return "still", None


def _orbits(xs: np.ndarray, ys: np.ndarray) -> bool:
    """Whether a track (in units of the shorter side) goes round its centre: far from it at every frame, turning
    one way by small steps through at least ORBIT_SWEEP degrees."""
    dx, dy = xs - xs.mean(), ys - ys.mean()
    if np.hypot(dx, dy).min() < ORBIT_MIN_RADIUS:
        return False
    steps = _wrap_degrees(np.diff(np.degrees(np.arctan2(dy, dx))))
    return bool(np.abs(steps).max() <= ORBIT_STEP and abs(steps.sum()) >= ORBIT_SWEEP)


def _wrap_degrees(d: float | np.ndarray) -> float | np.ndarray:
    """An angle difference (degrees) brought into [-180, 180)."""
    return (d + 180) % 360 - 180


def _angle_gap(a: float, b: float) -> float:
    return abs(_wrap_degrees(a - b))


def _turns(values: np.ndarray, tolerance: float) -> int:
    """How many times a track reverses direction, ignoring wiggles smaller than `tolerance`."""
    turns, direction, extreme = 0, 0, values[0]
    for v in values[1:]:
        if direction >= 0 and v < extreme - tolerance:
            turns, direction, extreme = turns + (direction > 0), -1, v
        elif direction <= 0 and v > extreme + tolerance:
            turns, direction, extreme = turns + (direction < 0), 1, v
        elif (direction > 0 and v > extreme) or (direction < 0 and v < extreme):
            extreme = v
    return turns


def _centred(mask: np.ndarray) -> np.ndarray:
    """A soft mask, smoothed by a 3x3 box (pixel noise averages out), rolled to put its centroid at the middle."""
    padded = np.pad(mask, 1)
    mask = sum(padded[i : i + mask.shape[0], j : j + mask.shape[1]] for i in range(3) for j in range(3)) / 9
    ys, xs = np.indices(mask.shape)
    total = mask.sum()
    cy, cx = (ys * mask).sum() / total, (xs * mask).sum() / total
    return np.roll(mask, (mask.shape[0] // 2 - round(cy), mask.shape[1] // 2 - round(cx)), axis=(0, 1))


def _min_centred_iou(masks: list[np.ndarray]) -> float:
    """The lowest soft IoU (sum of min / sum of max) between the first mask and a later one, both centred;
    each pair takes the best of the shifts by up to a pixel, so centroid rounding does not count as change."""
    first = _centred(masks[0])
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return max(np.minimum(a, s).sum() / max(np.maximum(a, s).sum(), 1e-6)
                   for s in (np.roll(b, sh, axis=(0, 1)) for sh in shifts))

    return min((iou(first, _centred(m)) for m in masks[1:]), default=1.0)


@functools.cache
def _unit_shape(shape: str) -> tuple[float, float, float]:
    """Area and centroid (x, y) of `shape` with circumradius 1, unrotated, drawn around (0, 0)."""
    if shape == "circle":
        return math.pi, 0.0, 0.0
    x, y = np.array(shape_points(shape, 0.0, 0.0, 1.0, 0.0)).T
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    return abs(area), float(((x + np.roll(x, -1)) * cross).sum() / (6 * area)), \
        float(((y + np.roll(y, -1)) * cross).sum() / (6 * area))


def shape_mask(shape: str, cx: float, cy: float, area: float, angle: float, height: int, width: int,
               supersample: int = 4) -> np.ndarray:
    """A soft mask (H, W) in [0, 1] of `shape` covering `area` pixels with its centroid at (cx, cy), turned by
    `angle` degrees (clockwise on screen), antialiased by supersampling."""
    from PIL import Image, ImageDraw

    unit_area, gx, gy = _unit_shape(shape)
    r = math.sqrt(area / unit_area)
    turn = math.radians(angle)
    ox, oy = r * (gx * math.cos(turn) - gy * math.sin(turn)), r * (gx * math.sin(turn) + gy * math.cos(turn))
    s = supersample
    image = Image.new("L", (width * s, height * s), 0)
    # pixel centres sit at +0.5
    draw_shape(ImageDraw.Draw(image), shape, (cx - ox + 0.5) * s, (cy - oy + 0.5) * s, r * s, angle, 255)
    return np.asarray(image.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0


def classify_shape(mask: np.ndarray) -> tuple[str | None, float]:
    """The shape of `SHAPE_PERIODS` (and its soft IoU) that best matches a soft mask (H, W): each drawn with the
    mask's area and centroid at every rotation of its period, compared in a window around the object (which leaves
    stray pixels farther away out); (None, 0) for a mask of under 4 pixels."""
    area = float(mask.sum())
    if area < 4:
        return None, 0.0
    ys, xs = np.indices(mask.shape)
    cx, cy = float((xs * mask).sum() / area), float((ys * mask).sum() / area)
    reach = max(math.sqrt(area / _unit_shape(shape)[0]) for shape in SHAPE_PERIODS) + 2  # the widest shape's radius
    size, x0, y0 = math.ceil(2 * reach), math.floor(cx - reach), math.floor(cy - reach)
    pad = size
    window = np.pad(mask, pad)[y0 + pad:y0 + pad + size, x0 + pad:x0 + pad + size]
    best: tuple[str | None, float] = (None, 0.0)
    for shape, period in SHAPE_PERIODS.items():
        for angle in range(0, period, SHAPE_ANGLE_STEP):
            template = shape_mask(shape, cx - x0, cy - y0, area, angle, size, size)
            iou = float(np.minimum(template, window).sum() / max(np.maximum(template, window).sum(), 1e-6))
            if iou > best[1]:
                best = (shape, iou)
    return best


def _vote_shape(masks: list[np.ndarray]) -> str | None:
    """The shape most of `SHAPE_FRAMES` masks spread over the clip show (a tie: the higher summed IoU)."""
    picks = [classify_shape(masks[i]) for i in np.linspace(0, len(masks) - 1, SHAPE_FRAMES).round().astype(int)]
    votes: dict[str, tuple[int, float]] = {}
    for shape, iou in picks:
        if shape is not None:
            count, total = votes.get(shape, (0, 0.0))
            votes[shape] = (count + 1, total + iou)
    return max(votes, key=lambda k: votes[k]) if votes else None


def detect(
    frames: np.ndarray, n_objects: int = 1, colour: str | None = None,
    palette: Mapping[str, tuple[int, int, int]] = COLOURS,
) -> Detection:
    """Find the colours of `palette` in a video and track one object: `colour`'s pixels, or all foreground if
    `n_objects` is 1."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    names = list(palette)
    if colour is not None and colour not in palette:
        raise ValueError(f"unknown colour {colour!r}: one of {names}")
    dist, labels, coverage = label_pixels(frames, estimate_background(frames), palette)
    fg = labels >= 0
    votes = np.bincount(labels[fg], weights=dist[fg], minlength=len(names))
    colours = [names[i] for i in np.argsort(-votes) if votes[i] > 0]
    track = coverage if n_objects == 1 or colour is None else coverage * (labels == names.index(colour))
    area = track.sum((1, 2)).astype(np.float64)
    t_len, side = len(frames), min(frames.shape[1:3])
    present = area >= max(2.0, 0.2 * np.median(area[area > 0])) if area.any() else np.zeros(t_len, bool)
    ys, xs = np.indices(frames.shape[1:3])
    x, y = np.full(t_len, np.nan), np.full(t_len, np.nan)
    x[present] = (track[present] * xs).sum((1, 2)) / area[present]
    y[present] = (track[present] * ys).sum((1, 2)) / area[present]
    if present.sum() < max(3, t_len // 2):
        return Detection(colours, None, None, None, x, y, area)
    masks = list(track[present])
    motion, speed = _classify_track(x, y, area, masks, side)
    return Detection(colours, motion, speed, _vote_shape(masks), x, y, area)


def score(
    frames: np.ndarray, objects: Sequence[dict[str, Any]], palette: Mapping[str, tuple[int, int, int]] = COLOURS
) -> dict[str, Any]:
    """Check a video against its caption's objects (dicts with colour, motion, optional speed; main first), telling
    the colours of `palette` apart.

    colour_ok: the main colour is among the len(objects) most present colours; motion_ok: the main object's
    track shows its motion; speed_ok: the same for speed (None when the motion has no speed); shape_ok: its mask
    shows its shape (None when the object names none).
    """
    if not objects:
        raise ValueError("objects is empty: give at least the main object's colour and motion")
    main = objects[0]
    det = detect(frames, n_objects=len(objects), colour=main["colour"], palette=palette)
    expected_speed = main.get("speed")
    return {
        "colour": main["colour"],
        "motion": main["motion"],
        "detected_colours": det.colours[: len(objects)],
        "detected_motion": det.motion,
        "detected_speed": det.speed,
        "colour_ok": main["colour"] in det.colours[: len(objects)],
        "motion_ok": det.motion == main["motion"],
        "speed_ok": None if expected_speed is None else det.speed == expected_speed,
        "shape": main.get("shape"),
        "detected_shape": det.shape,
        "shape_ok": None if main.get("shape") is None else det.shape == main["shape"],
    }


_PHRASE_TO_MOTION = sorted(
    ((p.format(speed=w).strip(), m, s) for m, ps in MOTION_PHRASES.items() for p in ps
     for s, ws in (SPEED_WORDS.items() if "{speed}" in p else [(None, ("",))]) for w in ws),
    key=lambda item: -len(item[0]),
)
_OBJECT_RE = re.compile(
    rf"\ba ({'|'.join(SIZES)}) ({'|'.join([*COLOURS, *NEW_COLOURS])}) ({'|'.join([*SHAPES, *NEW_SHAPES])}) "
    rf"({'|'.join(re.escape(p) for p, _, _ in _PHRASE_TO_MOTION)})(?=$| and | on | against )"
)


def parse_caption(caption: str) -> list[dict[str, Any]]:
    """The objects a caption of the synthetic world (or of the new-concept world) names, main first: size, colour,
    shape, motion, speed."""
    lookup = {p: (m, s) for p, m, s in _PHRASE_TO_MOTION}
    objects = []
    for size, colour, shape, phrase in _OBJECT_RE.findall(caption.lower()):
        motion, speed = lookup[phrase]
        objects.append({"size": size, "colour": colour, "shape": shape, "motion": motion, "speed": speed})
    if not objects:
        raise ValueError(f"no object of the synthetic world in caption {caption!r} (e.g. 'a small red circle grows')")
    return objects


def evaluate_folder(
    videos: str | Path, manifest: str | Path | None = None, out: str | Path | None = None,
    palette: Mapping[str, tuple[int, int, int]] = COLOURS,
) -> dict:
    """Score every video of a folder against its manifest row (default: the folder's own metadata.jsonl), telling
    the colours of `palette` apart.

    Rows with `objects` use them; other rows are scored from their parsed caption. A row that names its
    `background` (as the world's manifests do) is also judged on it (`background_name`). Writes the report as JSON
    to `out` when given and returns it: accuracies, and per-motion counts of what was detected.
    """
    from hunyuan_video.video_io import read_video

    videos = Path(videos)
    manifest = Path(manifest) if manifest else videos / "metadata.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    results = []
    for row in rows:
        objects = row.get("objects") or parse_caption(row["caption"])
        frames = read_video(videos / row["file"])
        result = {"file": row["file"], **score(frames, objects, palette)}
        if row.get("background") is not None:
            result["background_ok"] = background_name(frames) == row["background"]
        results.append(result)
    report = summarize(results)
    report["clips"] = results
    if out:
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return report


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracies of a list of `score` results, and a confusion table motion -> detected motion -> count."""
    if not results:
        raise ValueError("no results to summarize")
    speeds = [r["speed_ok"] for r in results if r["speed_ok"] is not None]
    shapes = [r["shape_ok"] for r in results if r.get("shape_ok") is not None]
    backgrounds = [r["background_ok"] for r in results if "background_ok" in r]
    confusion: dict[str, dict[str, int]] = {}
    for r in results:
        row = confusion.setdefault(r["motion"], {})
        row[str(r["detected_motion"])] = row.get(str(r["detected_motion"]), 0) + 1
    return {
        "n": len(results),
        "colour_accuracy": float(np.mean([r["colour_ok"] for r in results])),
        "motion_accuracy": float(np.mean([r["motion_ok"] for r in results])),
        "speed_accuracy": float(np.mean(speeds)) if speeds else None,
        "shape_accuracy": float(np.mean(shapes)) if shapes else None,
        "background_accuracy": float(np.mean(backgrounds)) if backgrounds else None,
        "motion_confusion": confusion,
    }
