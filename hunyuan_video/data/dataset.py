"""Batches of clips for training: a dataset that loads what it is asked for, and a sampler that decides what.

    dataset = VideoDataset("data/train", parse_buckets("17x64x64,1x64x64"))
    sampler = BucketBatchSampler(dataset, batch_size=8, image_batch_size=16, video_image_ratio=(4, 1), seed=0)
    loader = make_loader(dataset, sampler, num_workers=2)
    for step, batch in zip(range(start_step, max_steps), loader):
        batch["video"]    # (B, 3, T, H, W) float in [-1, 1], every sample from one bucket
        batch["caption"]  # B strings
        dataset.report.add_all(batch["skipped"])  # files that failed to decode (each replaced by another)
    print(dataset.report.summary())

Every batch is a pure function of (seed, step), so `sampler.load_state_dict({"step": n, ...})` resumes exactly at
batch n. A DataLoader fetches ahead of the loop, so checkpoint the trainer's own step, not `sampler.step`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from hunyuan_video.data.buckets import Bucket, assign_bucket
from hunyuan_video.data.manifest import Sample, read_dataset
from hunyuan_video.video_io import read_image, read_video


class Request(NamedTuple):
    """What to load: sample `index`, frames start, start + stride, ... (as many as the bucket has), at its size."""

    index: int
    bucket: Bucket
    start: int
    stride: int


def frames_to_tensor(frames: np.ndarray) -> Tensor:
    """uint8 frames (T, H, W, 3) -> float (3, T, H, W) in [-1, 1], the models' range (`video_io.to_uint8` undoes it)."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def resize_crop(video: Tensor, height: int, width: int) -> Tensor:
    """Resize (3, T, h, w) to cover height x width (antialiased bilinear, aspect kept), then crop the centre."""
    h, w = video.shape[-2:]
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    if size != (h, w):
        video = F.interpolate(video.transpose(0, 1), size=size, mode="bilinear", antialias=True).transpose(0, 1)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return video[:, :, top : top + height, left : left + width]


class VideoDataset(Dataset):
    """The samples of a dataset folder, grouped by bucket, loaded on request as (3, T, H, W) in [-1, 1].

    Videos go to the video bucket that fits them best (see `assign_bucket`); those shorter than every video bucket
    are skipped as too short. One-frame buckets are filled with the image files, or, when the folder has none,
    with single frames of the videos. Index it with a `Request` (what `BucketBatchSampler` yields).
    """

    def __init__(self, root: str | Path, buckets: Sequence[Bucket], verify: bool = False) -> None:
        self.samples, self.report = read_dataset(root, verify=verify)
        self.buckets = sorted(Bucket(*b) for b in buckets)
        self.groups: dict[Bucket, list[int]] = {}  # bucket -> sample indices
        video_buckets = [b for b in self.buckets if not b.is_image]
        images_from_videos = not any(s.is_image for s in self.samples)
        for i, s in enumerate(self.samples):
            if not s.is_image and video_buckets:
                bucket = assign_bucket(s.frames, s.height, s.width, self.buckets, image=False)
                if bucket is None:
                    shortest = min(b.frames for b in video_buckets)
                    self.report.add(s.file, f"too short: {s.frames} frames, the shortest video bucket has {shortest}")
                    continue
                self.groups.setdefault(bucket, []).append(i)
            if s.is_image or images_from_videos:
                bucket = assign_bucket(1, s.height, s.width, self.buckets, image=True)
                if bucket is not None:
                    self.groups.setdefault(bucket, []).append(i)
        self._bad: set[int] = set()  # samples that failed to decode in this process

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int, bucket: Bucket, start: int = 0, stride: int = 1) -> Tensor:
        """Sample `index` as (3, bucket.frames, bucket.height, bucket.width) in [-1, 1]; ValueError if unreadable."""
        sample = self.samples[index]
        if sample.is_image:
            frames = read_image(sample.file)
        else:
            frames = read_video(sample.file, range(start, start + (bucket.frames - 1) * stride + 1, stride))
        return resize_crop(frames_to_tensor(frames), bucket.height, bucket.width)

    def __getitem__(self, request: Request) -> dict[str, Any]:
        """The requested clip, or, if it fails to decode, the next readable sample of the same bucket."""
        group = self.groups[request.bucket]
        skipped = []
        index = request.index
        for _ in range(len(group)):
            if index not in self._bad:
                sample = self.samples[index]
                start, stride = _fit(sample, request.bucket, request.start, request.stride)
                try:
                    video = self.load(index, request.bucket, start, stride)
                    return {"video": video, "caption": sample.caption, "file": str(sample.file), "skipped": skipped}
                except ValueError as e:
                    self._bad.add(index)
                    skipped.append((str(sample.file), f"decode failed: {e}"))
            index = group[(group.index(index) + 1) % len(group)]
        raise RuntimeError(f"no readable sample left in bucket {request.bucket}: {skipped}")


def _fit(sample: Sample, bucket: Bucket, start: int, stride: int) -> tuple[int, int]:
    """Start and stride clipped to what the sample's length allows (for a replacement sample)."""
    if sample.is_image:
        return 0, 1
    if bucket.is_image:
        return min(start, sample.frames - 1), 1
    stride = max(1, min(stride, (sample.frames - 1) // (bucket.frames - 1)))
    return min(start, sample.frames - 1 - (bucket.frames - 1) * stride), stride


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a bucket's items: video (B, 3, T, H, W), caption and file lists, and every skipped (file, reason)."""
    return {
        "video": torch.stack([it["video"] for it in items]),
        "caption": [it["caption"] for it in items],
        "file": [it["file"] for it in items],
        "skipped": [s for it in items for s in it["skipped"]],
    }


class BucketBatchSampler(Sampler[list[Request]]):
    """An endless, seeded stream of batches, each from one bucket; video and image batches in a fixed pattern.

    `video_image_ratio=(4, 1)`: four video batches, then one image batch, over and over (the paper's VAE mix).
    Each kind runs in epochs: every epoch shuffles each bucket's samples, cuts them into batches (the last one
    topped up from the start of the shuffle) and shuffles the batches. A video sample is read at a random frame
    stride from 1 to `max_stride`, as far as its length allows, from a random start; an image batch takes one
    random frame of a video sample.
    """

    def __init__(
        self, dataset: VideoDataset, batch_size: int, image_batch_size: int | None = None,
        video_image_ratio: tuple[int, int] = (4, 1), max_stride: int = 8, seed: int = 0,
    ) -> None:
        self.dataset = dataset
        self.sizes = {"video": batch_size, "image": image_batch_size or batch_size}
        self.ratio = tuple(video_image_ratio)
        self.max_stride, self.seed, self.step = max_stride, seed, 0
        if min(self.sizes.values()) < 1 or max_stride < 1 or min(self.ratio) < 0 or sum(self.ratio) == 0:
            raise ValueError(f"batch sizes and max_stride must be >= 1 and the ratio non-negative, not all zero; got "
                             f"{self.sizes}, {max_stride}, {self.ratio}")
        self.groups = {
            kind: {b: g for b, g in dataset.groups.items() if b.is_image == (kind == "image")}
            for kind in ("video", "image")
        }
        for kind, share in zip(("video", "image"), self.ratio):
            if share and not self.groups[kind]:
                raise ValueError(f"video_image_ratio {self.ratio} asks for {kind} batches, but no sample fits a "
                                 f"{kind} bucket of {[str(b) for b in dataset.buckets]}: add one, or set its share 0")
        self._cache: dict[str, tuple[int, list[tuple[Bucket, np.ndarray]]]] = {}

    def batches_per_epoch(self, kind: str) -> int:
        """How many batches of `kind` ("video" or "image") make one pass over its samples."""
        return sum(math.ceil(len(g) / self.sizes[kind]) for g in self.groups[kind].values())

    def _epoch(self, kind: str, epoch: int) -> list[tuple[Bucket, np.ndarray]]:
        """The batches (bucket, sample indices) of one epoch of `kind`, in order."""
        if kind in self._cache and self._cache[kind][0] == epoch:
            return self._cache[kind][1]
        rng = np.random.default_rng([self.seed, 0 if kind == "video" else 1, epoch])
        size, batches = self.sizes[kind], []
        for bucket in sorted(self.groups[kind]):
            group = np.asarray(self.groups[kind][bucket])
            order = np.resize(rng.permutation(group), math.ceil(len(group) / size) * size)
            batches += [(bucket, chunk) for chunk in order.reshape(-1, size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache[kind] = (epoch, batches)
        return batches

    def batch(self, step: int) -> list[Request]:
        """The requests of batch `step`: a pure function of (seed, step)."""
        videos, images = self.ratio
        cycle, pos = divmod(step, videos + images)
        kind, k = ("video", cycle * videos + pos) if pos < videos else ("image", cycle * images + pos - videos)
        n = self.batches_per_epoch(kind)
        bucket, members = self._epoch(kind, k // n)[k % n]
        rng = np.random.default_rng([self.seed, 2, step])
        requests = []
        for index in members.tolist():
            sample = self.dataset.samples[index]
            if sample.is_image:
                start, stride = 0, 1
            elif bucket.is_image:
                start, stride = int(rng.integers(sample.frames)), 1
            else:
                span = bucket.frames - 1
                stride = int(rng.integers(1, min(self.max_stride, (sample.frames - 1) // span) + 1))
                start = int(rng.integers(0, sample.frames - span * stride))
            requests.append(Request(index, bucket, start, stride))
        return requests

    def __iter__(self) -> Iterator[list[Request]]:
        while True:
            yield self.batch(self.step)
            self.step += 1

    def state_dict(self) -> dict[str, int]:
        """Where the stream is: seed, next step, and the dataset size (checked on load)."""
        return {"seed": self.seed, "step": self.step, "samples": len(self.dataset)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at `state["step"]`; the seed and the dataset size must match the saved ones."""
        if state["seed"] != self.seed or state["samples"] != len(self.dataset):
            raise ValueError(f"sampler state is for seed {state['seed']} and {state['samples']} samples, this sampler "
                             f"has seed {self.seed} and {len(self.dataset)}: resume with the same data and seed")
        self.step = int(state["step"])


def make_loader(dataset: VideoDataset, sampler: BucketBatchSampler, num_workers: int = 0) -> DataLoader:
    """A DataLoader over the sampler's batches, collated by `collate`."""
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
