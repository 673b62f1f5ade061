"""`data curate` as a Ray Data pipeline on a local Ray instance (2 CPUs) writes the same dataset as the local run on
2 processes."""

from __future__ import annotations

import shutil

import pytest

from hunyuan_video.curate import CurateConfig, curate
from hunyuan_video.tiny.raw import write_raw_footage

ray = pytest.importorskip("ray")


def test_ray_pipeline_gives_the_local_manifest(tmp_path):
    write_raw_footage(tmp_path / "footage")
    (tmp_path / "raw").mkdir()
    for name in ("short_c.mp4", "reencoded_c.mp4", "garbage.mp4"):
        shutil.copy(tmp_path / "footage" / name, tmp_path / "raw" / name)
    config = CurateConfig(tiers=[{"name": "base", "buckets": "9x32x32"}])
    local = curate(tmp_path / "raw", tmp_path / "local", config, workers=2, progress=False)  # 2 local processes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = curate(tmp_path / "raw", tmp_path / "ray", config, ray=True, progress=False)
    finally:
        ray.shutdown()
    assert remote.analyzed == local.analyzed == 3 and remote.kept == local.kept == 2
    for name in ("metadata.jsonl", "tiers/base/metadata.jsonl", "report.json"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text()
    assert sorted(p.name for p in (tmp_path / "ray" / "clips").iterdir()) == sorted(
        p.name for p in (tmp_path / "local" / "clips").iterdir())
