"""The analysis of one raw video in a single streaming decode: probe, shots, per-frame sharpness, brightness and black
bars, optical-flow fits and perceptual hashes of sampled frames; then its clips with their measurements and the
reasons, if any, that the per-clip filters reject them. Memory holds one decoded frame, a few numbers per frame
and a small JPEG thumbnail per second.

The result is a plain dict (JSON), the unit the runner caches under the file's hash and the config's analysis key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from hunyuan_video.curate.config import CurateConfig
from hunyuan_video.curate.dedup import phash
from hunyuan_video.curate.frames import black_bars, clip_crop, pick_start, sharpness, to_gray, trim_fades
from hunyuan_video.curate.motion import camera_label, flow_fit, motion_score
from hunyuan_video.curate.probe import FrameStream, Unreadable, probe
from hunyuan_video.curate.shots import ShotDetector, shot_ranges, split_long
from hunyuan_video.files import atomic_path

THUMB_SIZE = 64  # shorter side of the thumbnails kept for the report's contact sheet
THUMBS_PER_SECOND = 1.0  # thumbnails kept (as JPEG bytes) while decoding, to pick each clip's middle one from


def downscale(frame: np.ndarray, size: int) -> np.ndarray:
    """The frame with its shorter side scaled down to `size` (never up)."""
    import cv2

    h, w = frame.shape[:2]
    scale = size / min(h, w)
    if scale >= 1:
        return frame
    return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _jpeg(frame: np.ndarray) -> bytes:
    """An RGB frame as JPEG bytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def clip_id(file_hash: str, start: int, end: int, crop: tuple[int, ...], config: CurateConfig) -> str:
    """The name of a clip: a digest of its source's bytes, its frame range, crop and encoding settings."""
    text = f"{file_hash}:{start}:{end}:{list(crop)}:{config.analysis_key()}:{config.crf}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _reasons(clip: dict[str, Any], config: CurateConfig, min_frames: int) -> list[str]:
    """Why the per-clip filters reject a clip (empty: kept)."""
    reasons = []
    if clip["frames"] < min_frames:
        reasons.append(f"too short: {clip['frames']} frames, under {min_frames}")
    if config.min_brightness is not None and clip["brightness"] < config.min_brightness:
        reasons.append(f"too dark: level {clip['brightness']:.1f}, under {config.min_brightness}")
    if config.min_sharpness is not None and clip["sharpness"] < config.min_sharpness:
        reasons.append(f"blurry: sharpness {clip['sharpness']:.1f}, under {config.min_sharpness}")
    if config.motion and config.min_motion is not None and clip["motion"] < config.min_motion:
        reasons.append(f"static: motion {clip['motion']:.3f}, under {config.min_motion}")
    if config.motion and config.max_motion is not None and clip["motion"] > config.max_motion:
        reasons.append(f"too fast: motion {clip['motion']:.2f}, over {config.max_motion}")
    return reasons


def analyze_video(path: str | Path, file_hash: str, config: CurateConfig,
                  thumbs: str | Path | None = None) -> dict[str, Any]:
    """Analyse one video: {"status": "ok" | "partial" | "unreadable", "error", "probe", "cuts", "clips"}; each clip
    holds its range, crop, measurements and `reasons` (empty when the per-clip filters keep it). With `thumbs`, a
    small JPEG of each clip's middle frame is written there as CLIP_ID.jpg."""
    try:
        info = probe(path)
    except Unreadable as e:
        return {"status": "unreadable", "error": str(e), "probe": None, "cuts": [], "clips": []}
    detector = ShotDetector(info.fps, config)
    every = max(1, round(info.fps / config.samples_per_second))
    sharp, level, samples = [], [], {}  # samples: frame index -> (flow fit or None, phash, black bars)
    pictures: dict[int, bytes] = {}  # frame index -> thumbnail JPEG
    thumb_every = max(1, round(info.fps / THUMBS_PER_SECOND))
    frames = FrameStream(path, info.rotation)
    previous = None
    for i, frame in enumerate(frames):
        small = downscale(frame, config.analysis_size)
        gray = to_gray(small)
        detector.push(small)
        top, bottom, left, right = black_bars(small, config.black_level) if config.letterbox else (0, 0, 0, 0)
        inner = gray[top + 1 : gray.shape[0] - bottom - 1, left + 1 : gray.shape[1] - right - 1]
        sharp.append(sharpness(inner) if min(inner.shape) > 2 else 0.0)
        level.append(float(gray.mean()))
        if i % every == 0:
            fit = flow_fit(previous, gray) if config.motion and previous is not None else None
            bars = black_bars(frame, config.black_level) if config.letterbox else (0, 0, 0, 0)
            samples[i] = (fit, phash(small), bars)
        if thumbs is not None and i % thumb_every == 0:
            pictures[i] = _jpeg(downscale(frame, THUMB_SIZE))
        previous = gray
    count = frames.count
    if count == 0:
        return {"status": "unreadable", "error": frames.error or "no frames decode", "probe": info.to_dict(),
                "cuts": [], "clips": []}
    height, width = frame.shape[:2]
    cuts = detector.cuts()
    min_frames = max(2, round(config.min_seconds * info.fps))
    max_frames = max(min_frames, round(config.max_seconds * info.fps))
    clips = []
    for shot, (a, b) in enumerate(shot_ranges(cuts, count)):
        if config.trim_fades:
            a, b = trim_fades(level, a, b)
        if b - a < 1:
            continue
        for start, end in split_long(a, b, max_frames):
            if config.start_frame:
                start = pick_start(sharp, start, end, max(1, round(config.start_window_seconds * info.fps)))
            inside = [i for i in range(-(-start // every) * every, end, every) if i in samples]
            fits = [samples[i][0] for i in inside if samples[i][0] is not None and i > start]
            crop = clip_crop([samples[i][2] for i in inside], height, width) if inside else (0, 0, 0, 0)
            keys = [min(inside, key=lambda i, q=q: abs(i - (start + q * (end - start)))) for q in (0.25, 0.5, 0.75)] \
                if inside else []
            clip = {
                "shot": shot, "start": start, "end": end, "frames": end - start, "fps": info.fps,
                "seconds": (end - start) / info.fps, "crop": list(crop),
                "height": height - crop[0] - crop[1], "width": width - crop[2] - crop[3],
                "sharpness": float(np.median(sharp[start:end])), "brightness": float(np.mean(level[start:end])),
                "motion": motion_score(fits) if config.motion else None,
                "camera": camera_label(fits, config) if config.motion else None,
                "hashes": [f"{samples[i][1]:016x}" for i in keys],
            }
            clip["id"] = clip_id(file_hash, start, end, crop, config)
            clip["reasons"] = _reasons(clip, config, min_frames)
            below = (start + end) // 2 // thumb_every * thumb_every  # the thumbnails nearest the middle frame
            middle = next((i for i in (below, below + thumb_every, below - thumb_every) if i in pictures), None)
            if middle is not None:
                with atomic_path(Path(thumbs) / f"{clip['id']}.jpg") as tmp:
                    tmp.write_bytes(pictures[middle])
            clips.append(clip)
    truncated = frames.error or (f"truncated: {count} of {info.frames} frames decode"
                                 if info.frames and count < info.frames * 0.98 else None)
    return {"status": "partial" if truncated else "ok", "error": truncated, "probe": info.to_dict(),
            "frames": count, "cuts": cuts, "clips": clips}
