"""Datasets: manifests, buckets and batches for training (the synthetic world lives in hunyuan_video.tiny)."""

from hunyuan_video.data.buckets import Bucket, assign_bucket, parse_buckets
from hunyuan_video.data.manifest import DataWarning, Sample, SkipReport, read_dataset

__all__ = ["Bucket", "DataWarning", "Sample", "SkipReport", "assign_bucket", "parse_buckets", "read_dataset"]
