"""The latent cache built by 2 ranks and sequence-parallel transformer training on 2 ranks (gloo, spawned, bounded by
a timeout) give what one process gives; a training config whose sequence split cannot work fails before any step."""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from parallel_ranks import TIMEOUT_S, _free_port
from safetensors.torch import load_file
from test_cache import VIDEO, make_setup

from hunyuan_video.cli import main
from hunyuan_video.parallel import ParallelConfig, ParallelGroups
from hunyuan_video.train.cache import BucketLatents, build_cache, read_sources
from hunyuan_video.train.common import read_jsonl
from hunyuan_video.train.dit import DiTTrainConfig, build_transformer, check_sequence_split, train

pytestmark = pytest.mark.usefixtures("one_thread")  # the one-process runs sum as the one-thread ranks do


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("sp")
    fields = make_setup(root, clips=9)  # in VAE batches of 8: rank 0 encodes clips 0-7 of a bucket, rank 1 clip 8
    build_cache(DiTTrainConfig(**fields), progress=False)
    return {**fields, "log_every": 1}


def _cache_and_train_as_rank(rank: int, world: int, port: int, config_path: str, fields: dict,
                             rendezvous: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    assert main(["cache", config_path]) == 0  # as under torchrun: the CLI starts (and ends) the process group
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        train(DiTTrainConfig(**fields), progress=False)
    finally:
        dist.destroy_process_group()


def test_two_ranks_cache_and_train_with_ulysses_as_one_process(base, tmp_path):
    """`hunyuan-video cache` on 2 ranks writes the files one process writes, byte for byte; `train` with
    `ulysses_degree: 2` on 2 ranks (each sample's video tokens split in 2) and the transformer sharded over them
    (`fsdp`) logs one process's losses to 1e-5 relative and exports its EMA weights."""
    parallel_cache = tmp_path / "cache"
    config_path = tmp_path / "cache.json"
    config_path.write_text(json.dumps({**base, "cache_dir": str(parallel_cache)}))
    train(DiTTrainConfig(**{**base, "out_dir": str(tmp_path / "one")}), progress=False)
    fields = {**base, "out_dir": str(tmp_path / "two"), "ulysses_degree": 2, "fsdp": True}
    context = mp.start_processes(_cache_and_train_as_rank, nprocs=2, join=False, start_method="spawn",
                                 args=(2, _free_port(), str(config_path), fields, str(tmp_path / "rendezvous")))
    deadline = time.monotonic() + TIMEOUT_S * 4
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("2-rank cache and training did not finish in time")
    one_cache = Path(base["cache_dir"])
    files = sorted(p.relative_to(one_cache) for p in one_cache.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel_cache) for p in parallel_cache.rglob("*") if p.is_file())
    for name in files:
        assert (one_cache / name).read_bytes() == (parallel_cache / name).read_bytes(), name
    one, two = (load_file(tmp_path / name / "transformer_ema.safetensors") for name in ("one", "two"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6, msg=key)
    losses = [[r["loss"] for r in read_jsonl(tmp_path / name / "log.jsonl")] for name in ("one", "two")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_sequence_split_that_cannot_work_fails_before_training(base, tmp_path):
    with pytest.raises(ValueError, match="ulysses_degree 2 does not divide the 1 process"):
        train(DiTTrainConfig(**{**base, "ulysses_degree": 2}), progress=False)
    with pytest.raises(ValueError, match="ulysses_degree must be at least 1"):
        DiTTrainConfig(**{**base, "ulysses_degree": 0})
    with pytest.raises(ValueError, match="distill runs the student and teacher whole on each rank"):
        DiTTrainConfig(**{**base, "transformer": {}, "init_from": "teacher.safetensors", "distill": {},
                          "ulysses_degree": 2})
    assert not Path(base["out_dir"]).exists()


def test_heads_and_bucket_tokens_must_split_over_the_sequence_group(base):
    config = DiTTrainConfig(**base)
    model, cache = build_transformer(config), read_sources(config)

    def groups(degree: int) -> ParallelGroups:  # the sizes alone; the check needs no process group
        return ParallelGroups(ParallelConfig(ulysses_degree=degree), 0, 0, None, None, None, None)

    check_sequence_split(groups(4), model, cache)  # 4 heads; 1x2x2 and 3x2x2 tokens
    with pytest.raises(ValueError, match="4 heads do not split over ulysses degree 3: use a ulysses degree of 1, 2, 4"):
        check_sequence_split(groups(3), model, cache)
    rows = cache.buckets[VIDEO]
    cache.buckets[VIDEO] = BucketLatents(torch.zeros(1, 16, 3, 6, 6), torch.zeros(1, 16, 3, 6, 6), rows.clip[:1])
    with pytest.raises(ValueError, match="^bucket 9x32x32: the video's 3x3x3 = 27 tokens do not split into 2"):
        check_sequence_split(groups(2), model, cache)
