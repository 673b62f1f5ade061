"""Near-duplicate removal across the whole dataset by perceptual hashes (DCT hashes, 64 bits) of key frames.

Two clips are duplicates when their key frames' hashes differ by at most `distance` bits on average (a re-encoded
copy, cut a frame earlier or later, still matches; different shots differ by about half the bits). Candidates are
found by splitting each key frame's hash into `distance + 1` bands: when the mean distance is within `distance`, one
key frame's is too, and by the pigeonhole principle those two hashes agree on at least one whole band, so no pair is
missed and the work grows with the number of clips, not its square. Of each group of duplicates the best clip is
kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np


def phash(frame: np.ndarray) -> int:
    """The 64-bit perceptual (DCT) hash of an RGB frame."""
    import imagehash
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(frame)).hash.ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """The number of bits in which two hashes differ."""
    return (a ^ b).bit_count()


def _bands(value: int, count: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, 64, count + 1).round().astype(int)
    return [(i, (value >> int(lo)) & ((1 << int(hi - lo)) - 1)) for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]


def duplicate_groups(keys: Sequence[Sequence[int]], distance: int) -> list[list[int]]:
    """Groups (of 2 or more indices) of items whose key-frame hashes (the same count per item) lie within `distance`
    bits on average; items linked through a chain of duplicates share a group."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for i, hashes in enumerate(keys):
        for k, value in enumerate(hashes):
            for band, bits in _bands(value, distance + 1):
                buckets[(k, band, bits)].append(i)
    for members in buckets.values():
        for n, i in enumerate(members):
            for j in members[n + 1 :]:
                if root(i) != root(j) and sum(map(hamming, keys[i], keys[j])) <= distance * len(keys[i]):
                    parent[root(j)] = root(i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(keys)):
        groups[root(i)].append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def remove_duplicates(keys: Sequence[Sequence[int]], distance: int,
                      rank: Callable[[int], tuple]) -> dict[int, int]:
    """{removed index: kept index}: in each duplicate group the item with the smallest `rank` is kept."""
    removed = {}
    for group in duplicate_groups(keys, distance):
        best = min(group, key=rank)
        removed.update({i: best for i in group if i != best})
    return removed
