"""Ulysses, ring, USP and CFG-parallel forwards on 2 gloo ranks (spawned, bounded by a timeout) equal the
single-process forward; bad degrees fail before any work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from random_weights import tiny_transformer

import hunyuan_video
from hunyuan_video.cli import TINY_MODEL, main
from hunyuan_video.parallel import ParallelConfig, ParallelGroups, ParallelTransformer
from hunyuan_video.parallel.ring import attention_with_lse, merge_attention
from hunyuan_video.parallel.sequence import gather, shard
from hunyuan_video.pipelines import HunyuanVideoPipeline

TIMEOUT_S = 60
SMALL = ["--height", "32", "--width", "32", "--frames", "5", "--steps", "2", "--seed", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker, world: int, *args) -> None:
    """Run `worker(rank, world, port, *args)` in `world` spawned processes; fail on an error or after TIMEOUT_S."""
    ctx = mp.start_processes(worker, args=(world, _free_port(), *args), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ctx.processes:
                process.kill()
            pytest.fail(f"{world} ranks did not finish within {TIMEOUT_S} s (a hang)")


def _init(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=__import__("datetime").timedelta(seconds=30))


def _inputs(batch: int = 2, seed: int = 0) -> dict:
    """Latents of grid (3, 4, 4) = 48 tokens, two text lengths (7 and 4), embedded guidance."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 7, dtype=torch.long)
    mask[1::2, 4:] = 0
    return dict(x=torch.randn(batch, 16, 3, 8, 8, generator=gen), t=torch.rand(batch, generator=gen) * 1000,
                text_states=torch.randn(batch, 7, 32, generator=gen), text_mask=mask,
                text_states_2=torch.randn(batch, 24, generator=gen), guidance=torch.full((batch,), 6000.0))


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    error = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert error <= 1e-5, f"{what}: relative error {error:.2e}"


def _sequence_parallel_matches(model: torch.nn.Module, groups: ParallelGroups) -> None:
    config = groups.config
    inputs = _inputs()
    expected = model(**inputs)
    _assert_close(ParallelTransformer(model, groups)(**inputs), expected, f"{config} forward")
    # the first-frame modulation (the 16 tokens of the first latent frame, in shard 0 of 24) follows the shard
    state = model.embed(**inputs, first_frame_t=torch.tensor([10.0, 500.0]))
    _assert_close(model.head(gather(model.blocks(shard(state, groups)), state, groups)),
                  model.head(model.blocks(state)), f"{config} first-frame modulation")


def _cfg_parallel_matches(model: torch.nn.Module, groups: ParallelGroups) -> None:
    negative, positive = _inputs(seed=1), _inputs(seed=2)
    inputs = {k: torch.cat([negative[k], positive[k]]) for k in negative}
    inputs["x"] = torch.cat([positive["x"], positive["x"]])
    v_neg, v_pos = model(**inputs).chunk(2)
    p_neg, p_pos = ParallelTransformer(model, groups)(**inputs).chunk(2)
    _assert_close(p_neg + 5.0 * (p_pos - p_neg), v_neg + 5.0 * (v_pos - v_neg), "cfg parallel guided velocity")


def _two_rank_worker(rank: int, world: int, port: int) -> None:
    _init(rank, world, port)
    model = tiny_transformer()
    with torch.no_grad():
        _sequence_parallel_matches(model, ParallelGroups.build(ParallelConfig(ulysses_degree=2)))
        _sequence_parallel_matches(model, ParallelGroups.build(ParallelConfig(ring_degree=2)))
        _cfg_parallel_matches(model, ParallelGroups.build(ParallelConfig(cfg_parallel=True)))
    dist.destroy_process_group()


def test_ulysses_ring_and_cfg_parallel_equal_one_process() -> None:
    """On 2 gloo ranks, each in turn: Ulysses degree 2, ring degree 2, CFG parallel (batch 2 per half, two text
    lengths, embedded guidance): the velocity equals one process's to 1e-5 relative."""
    run_ranks(_two_rank_worker, 2)


def test_merged_blocks_equal_whole_attention_with_padding() -> None:
    """The USP arithmetic in one process: Ulysses head slices of 2 ring blocks, each merged by log-sum-exp with the
    padded text block, equal SDPA over the whole padded sequence (real queries)."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 12 + 5, 4, 8, generator=gen) for _ in range(3))
    real = torch.ones(2, 1, 1, 17, dtype=torch.bool)
    real[1, ..., 14:] = False
    expected = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=real).transpose(1, 2)
    for heads in (slice(0, 2), slice(2, 4)):  # Ulysses rank 0 and 1
        qh, kh, vh = q[:, :, heads], k[:, :, heads], v[:, :, heads]
        parts = [attention_with_lse(qh, kh[:, i:i + 6], vh[:, i:i + 6]) for i in (0, 6)]  # the 2 ring blocks
        merged = merge_attention([*parts, attention_with_lse(qh, kh[:, 12:], vh[:, 12:], real[..., 12:])])
        _assert_close(merged[0], expected[0, :, heads], "merged blocks, sample 0")
        _assert_close(merged[1, :14], expected[1, :14, heads], "merged blocks, real tokens of sample 1")


@pytest.mark.parametrize(("config", "message"), [
    (ParallelConfig(ulysses_degree=2, ring_degree=2), "= 4 processes, but this run has 2"),
    (ParallelConfig(ulysses_degree=1, cfg_parallel=True), None),
])
def test_degrees_must_multiply_to_world_size(config: ParallelConfig, message: str | None) -> None:
    if message is None:
        config.check_world_size(2)
        return
    with pytest.raises(ValueError, match=message):
        config.check_world_size(2)


def test_heads_and_grid_must_split() -> None:
    with pytest.raises(ValueError, match="4 heads do not split over ulysses degree 3: use a ulysses degree of 1, 2, 4"):
        ParallelConfig(ulysses_degree=3).check_heads(4)
    with pytest.raises(ValueError, match=r"3x3x3 = 27 tokens do not split into 2 .* 2 latent frames \(num_frames 5\)"
                                         r" or 4 latent frames \(num_frames 13\)"):
        ParallelConfig(ring_degree=2).check_grid((3, 3, 3))
    with pytest.raises(ValueError, match="ring_degree must be at least 1"):
        ParallelConfig(ring_degree=0)


def test_torchrun_generate_writes_the_video_of_one_process(tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m hunyuan_video generate --ulysses-degree 2` (the embedded tiny model, 2 heads,
    true CFG) writes the frames one process makes; rank 0 alone reports."""
    out = tmp_path / "frames"
    env = {**os.environ, "PYTHONPATH": str(Path(hunyuan_video.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                           "hunyuan_video", "generate", "a red cube", *SMALL, "--ulysses-degree", "2", "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT_S * 2)
    assert done.returncode == 0, done.stderr[-2000:]
    # 'cube' is a word the tiny text encoders do not know: one process warns, not two
    assert done.stdout.count("wrote ") == 1 and done.stderr.count("UserWarning") == 1
    written = np.stack([np.asarray(Image.open(f)) for f in sorted(out.glob("*.png"))])
    pipe = HunyuanVideoPipeline.from_pretrained(Path(hunyuan_video.__file__).parent / TINY_MODEL)
    pipe.progress = False
    expected = pipe("a red cube", height=32, width=32, num_frames=5, num_inference_steps=2, seed=3).frames[0]
    assert np.array_equal(written, expected)


def test_generate_with_degrees_that_miss_the_world_size_fails_before_loading(tmp_path: Path) -> None:
    out = tmp_path / "video.mp4"
    for options, message in ((["--ulysses-degree", "2"], "ulysses degree 2 x ring degree 1 = 2 processes, but this "
                              "run has 1: launch `torchrun --nproc-per-node 2`"),
                             (["--cfg-parallel"], "x 2 \\(cfg parallel\\) = 2 processes, but this run has 1")):
        with pytest.raises(SystemExit, match=f"^hunyuan-video generate: .*{message}"):
            main(["generate", "a red cube", *SMALL, *options, "-o", str(out)])
    assert not out.exists()
