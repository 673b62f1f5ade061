"""Datasets: manifests, buckets, the synthetic world."""
