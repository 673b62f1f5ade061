"""Tiers: hierarchical thresholds that sort the kept clips into datasets of rising quality and resolution, each with
its own manifest and buckets. Each tier holds only clips of the tier before it that also pass its own thresholds.

A tier is {"name": ..., and any of "min_short_side", "min_seconds", "min_sharpness", "min_motion", "max_motion",
"min_scores": {scorer name: least score}, "buckets": "FRAMESxHEIGHTxWIDTH,..."}. With buckets, a clip that fits no
bucket is left out of the tier, and each row names its bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hunyuan_video.data.buckets import assign_bucket, parse_buckets

TIER_KEYS = {"name", "min_short_side", "min_seconds", "min_sharpness", "min_motion", "max_motion", "min_scores",
             "buckets"}


def check_tiers(tiers: Sequence[dict[str, Any]]) -> None:
    """A ValueError naming the first unknown key or bad bucket list of a tier."""
    for tier in tiers:
        unknown = set(tier) - TIER_KEYS
        if unknown:
            raise ValueError(f"tier {tier.get('name')!r}: unknown keys {sorted(unknown)} (known: {sorted(TIER_KEYS)})")
        if "buckets" in tier:
            parse_buckets(tier["buckets"])


def passes(clip: dict[str, Any], tier: dict[str, Any]) -> bool:
    """Whether a clip meets a tier's own thresholds."""
    checks = [
        min(clip["height"], clip["width"]) >= tier.get("min_short_side", 0),
        clip["seconds"] >= tier.get("min_seconds", 0),
        clip["sharpness"] >= tier.get("min_sharpness", float("-inf")),
        clip["motion"] is None or clip["motion"] >= tier.get("min_motion", float("-inf")),
        clip["motion"] is None or clip["motion"] <= tier.get("max_motion", float("inf")),
    ]
    scores = clip.get("scores") or {}
    checks += [scores.get(name, float("-inf")) >= least for name, least in tier.get("min_scores", {}).items()]
    return all(checks)


def assign_tiers(clips: Sequence[dict[str, Any]], tiers: Sequence[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """{tier name: [(clip index, bucket or "")]}: each tier's clips, a subset of the tier before it's."""
    out: dict[str, list[tuple[int, str]]] = {}
    eligible = list(range(len(clips)))
    for tier in tiers:
        eligible = [i for i in eligible if passes(clips[i], tier)]
        rows = []
        buckets = parse_buckets(tier["buckets"]) if "buckets" in tier else None
        for i in eligible:
            if buckets is None:
                rows.append((i, ""))
                continue
            bucket = assign_bucket(clips[i]["frames"], clips[i]["height"], clips[i]["width"], buckets, image=False)
            if bucket is not None:
                rows.append((i, str(bucket)))
        out[tier["name"]] = rows
    return out
