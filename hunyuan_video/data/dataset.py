"""A dataset folder grouped into buckets and loaded clip by clip, as the latent cache encodes it.

    dataset = VideoDataset("data/train", parse_buckets("17x64x64,1x64x64"))
    dataset.groups              # bucket -> indices of the samples that go to it
    dataset.load(i, bucket)     # (3, T, H, W) float in [-1, 1], resized to cover the bucket and centre-cropped
    print(dataset.report.summary())  # what was skipped, and why

The VAE trainer draws its own batches (`train.vae.ClipSampler`: random stride, rescale and crop).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hunyuan_video.data.buckets import Bucket, assign_bucket
from hunyuan_video.data.manifest import read_dataset
from hunyuan_video.video_io import read_image, read_video


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


class VideoDataset:
    """The samples of a dataset folder, grouped by bucket, loaded on request as (3, T, H, W) in [-1, 1].

    Videos go to the video bucket that fits them best (see `assign_bucket`); those shorter than every video bucket
    are skipped as too short. One-frame buckets are filled with the image files, or, when the folder has none,
    with single frames of the videos.
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
