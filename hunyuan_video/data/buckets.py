"""Buckets: the (frames, height, width) shapes a batch can have, and which bucket each sample goes to."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Bucket(NamedTuple):
    """A batch shape: frames (1 for images), height, width."""

    frames: int
    height: int
    width: int

    @property
    def is_image(self) -> bool:
        """Whether the bucket holds single frames."""
        return self.frames == 1

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def parse_buckets(text: str | Sequence[Sequence[int]]) -> list[Bucket]:
    """Buckets from "17x256x256,1x256x256" or [[17, 256, 256], [1, 256, 256]]; sorted, without repeats."""
    items = [s.strip().split("x") for s in text.split(",") if s.strip()] if isinstance(text, str) else text
    try:
        buckets = sorted({Bucket(*(int(v) for v in item)) for item in items})
    except (TypeError, ValueError) as e:
        raise ValueError(f"buckets must be FRAMESxHEIGHTxWIDTH, comma separated, got {text!r}") from e
    if not buckets or any(min(b) < 1 for b in buckets):
        raise ValueError(f"buckets must be positive FRAMESxHEIGHTxWIDTH, comma separated, got {text!r}")
    return buckets


def assign_bucket(frames: int, height: int, width: int, buckets: Sequence[Bucket], image: bool) -> Bucket | None:
    """The bucket a sample goes to, or None if none fits.

    Images (`image=True`) go to one-frame buckets, videos to buckets of more frames than one but no more than
    they have. Among those: the nearest aspect ratio, then the most frames, then the largest area.
    """
    fits = [b for b in buckets if b.is_image] if image else [b for b in buckets if 1 < b.frames <= frames]
    if not fits:
        return None
    aspect = math.log(width / height)
    return min(
        fits, key=lambda b: (round(abs(math.log(b.width / b.height) - aspect), 6), -b.frames, -b.height * b.width)
    )
