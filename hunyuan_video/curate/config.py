"""The settings of `data curate`: every stage's switch and thresholds, with defaults that suit most footage.

A JSON file of these fields (any subset) configures a run (`hunyuan-video data curate RAW OUT --config c.json`).
Measurements are in units that do not depend on the resolution: motion in percent of the frame's shorter side per
frame, sharpness as the variance of the Laplacian at the analysis size (shorter side `analysis_size`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

DETECTORS = ("content", "adaptive", "threshold")
ANALYSIS_VERSION = 1  # raised whenever the analysis code finds something else for the same video and settings
# The fields that change what the analysis of one video finds (its cache key); the others act later.
ANALYSIS_FIELDS = ("analysis_size", "samples_per_second", "shots", "detectors", "content_threshold",
                   "adaptive_threshold", "fade_threshold", "min_seconds", "max_seconds", "start_frame",
                   "start_window_seconds", "letterbox", "black_level", "trim_fades", "motion", "static_motion",
                   "handheld_consistency", "zoom_ratio", "complex_residual")


@dataclass
class CurateConfig:
    """What each stage of curation does; `None` or `False` switches a filter or stage off."""

    analysis_size: int = 96  # frames are analysed with their shorter side scaled down to this many pixels
    samples_per_second: float = 6.0  # frames a second measured for motion and hashes
    # shots
    shots: bool = True  # False: each video is one shot (then split by max_seconds)
    detectors: tuple[str, ...] = ("adaptive", "threshold")  # content / adaptive (hard cuts), threshold (fades)
    content_threshold: float = 27.0
    adaptive_threshold: float = 3.0
    fade_threshold: float = 12.0  # mean 8-bit level under which a frame counts as faded out
    min_seconds: float = 1.0  # shorter shots are rejected
    max_seconds: float = 10.0  # longer shots are split into pieces of at most this length
    # frames
    start_frame: bool = True  # start each clip at its sharpest frame within start_window_seconds
    start_window_seconds: float = 0.5
    letterbox: bool = True  # detect black bars and crop them
    black_level: int = 24  # an 8-bit level under which border rows and columns count as black
    trim_fades: bool = True  # drop the faded (darker than half the shot's median level) frames at each end
    # motion
    motion: bool = True
    static_motion: float = 0.15  # motion under this (% of the short side per frame) is a static camera
    handheld_consistency: float = 0.5  # translation that keeps its direction less than this is handheld
    zoom_ratio: float = 1.0  # zoom wins over translation when its flow is this many times larger
    complex_residual: float = 0.5  # flow the global fit leaves unexplained, as a share of all flow, above which
    # the movement is complex
    # filters (None: off)
    min_sharpness: float | None = 30.0
    min_motion: float | None = 0.15
    max_motion: float | None = 8.0
    min_brightness: float | None = 20.0
    # near-duplicates
    dedup: bool = True
    dedup_distance: int = 8  # bits (of 64) the key frames' perceptual hashes of duplicates differ by on average
    # learned scorers and embedders from local paths (see hunyuan_video.curate.scorers)
    scorers: list[dict[str, Any]] = field(default_factory=list)
    embedder: dict[str, Any] | None = None
    # captioning with a local vision-language model (see hunyuan_video.curate.caption)
    captioner: dict[str, Any] | None = None
    # tiers of rising resolution and quality, the paper's (see hunyuan_video.curate.tiers)
    tiers: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "256p", "min_short_side": 256}, {"name": "360p", "min_short_side": 360},
        {"name": "540p", "min_short_side": 540}, {"name": "720p", "min_short_side": 720},
        {"name": "finetune", "min_short_side": 720, "min_seconds": 3.0, "min_sharpness": 100.0}])
    # the clips written
    crf: int = 18

    def __post_init__(self) -> None:
        self.detectors = tuple(self.detectors)
        unknown = [d for d in self.detectors if d not in DETECTORS]
        if unknown:
            raise ValueError(f"detectors must be among {DETECTORS}, got {unknown}")
        if self.analysis_size < 16:
            raise ValueError(f"analysis_size must be >= 16, got {self.analysis_size}")
        if self.samples_per_second <= 0:
            raise ValueError(f"samples_per_second must be positive, got {self.samples_per_second}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds} and {self.max_seconds}")
        if not 0 <= self.dedup_distance < 32:
            raise ValueError(f"dedup_distance must be in [0, 32), got {self.dedup_distance}")
        names = [t.get("name") for t in self.tiers]
        if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"every tier needs a unique name, got {names}")

    def analysis_key(self) -> str:
        """A digest of the fields that change the analysis of a video (with the file's hash, its cache key)."""
        values = {"version": ANALYSIS_VERSION, **{name: getattr(self, name) for name in ANALYSIS_FIELDS}}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values."""
        return asdict(self)

