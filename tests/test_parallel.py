"""Ulysses, ring, USP and CFG-parallel forwards and the parallel VAE decode on 2 gloo ranks (spawned, bounded by a
timeout) equal one process's, and so does USP (Ulysses 2 x ring 2) on 4; so do Ulysses training's gradients; so does
`generate` under torchrun; bad degrees fail before any work, and a rank killed mid-run ends the run, not a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from parallel_ranks import TIMEOUT_S, assert_close, four_rank_worker, run_ranks, two_rank_worker
from PIL import Image

import hunyuan_video
from hunyuan_video.cli import TINY_MODEL, main
from hunyuan_video.parallel import ParallelConfig
from hunyuan_video.parallel.groups import group_ranks
from hunyuan_video.parallel.ring import attention_with_lse, merge_attention
from hunyuan_video.pipelines import HunyuanVideoPipeline

SMALL = ["--height", "32", "--width", "32", "--frames", "5", "--steps", "2", "--seed", "3"]


def test_ulysses_ring_and_cfg_parallel_equal_one_process() -> None:
    """On 2 gloo ranks, each in turn: Ulysses degree 2, ring degree 2, CFG parallel (batch 2 per half, two text
    lengths, embedded guidance): the velocity equals one process's to 1e-5 relative; the VAE's tiles decoded on 2
    ranks give exactly the single-process tiled decode; Ulysses training (differentiable all-to-alls and gathers)
    gives one process's loss and gradients to 1e-5 relative over 3 SGD steps."""
    run_ranks(two_rank_worker, 2)


def test_usp_and_data_parallel_sequence_training_on_4_ranks_equal_one_process() -> None:
    """On 4 gloo ranks: USP (Ulysses 2 x ring 2, batch 2, two text lengths, embedded guidance, and a first-frame
    modulation) gives one process's velocity to 1e-5 relative; 2 data-parallel groups of Ulysses 2 (one with
    gradient checkpointing) train a batch of 4 with one process's loss and gradients over 2 SGD steps."""
    run_ranks(four_rank_worker, 4, timeout=TIMEOUT_S * 2)


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
        assert_close(merged[0], expected[0, :, heads], "merged blocks, sample 0")
        assert_close(merged[1, :14], expected[1, :14, heads], "merged blocks, real tokens of sample 1")


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


def test_usp_layout_gives_each_ring_rank_one_contiguous_block() -> None:
    """Ulysses 2 x ring 2 x CFG on 8 ranks, as lists: a Ulysses group holds consecutive shards in rank order (so its
    all-to-all yields one contiguous block), a ring group holds the blocks in order with the same head slice, and
    each CFG pair holds the same shard of the two halves."""
    config = ParallelConfig(ulysses_degree=2, ring_degree=2, cfg_parallel=True)
    sets = group_ranks(config)
    shard = {rank: rank % config.sequence_degree for rank in range(config.world_size)}
    assert sets["sequence"] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    for ranks in sets["ulysses"]:
        first = shard[ranks[0]]
        assert [shard[r] for r in ranks] == list(range(first, first + 2)) and first % 2 == 0
    for ranks in sets["ring"]:
        assert [shard[r] // 2 for r in ranks] == [0, 1] and len({r % 2 for r in ranks}) == 1
    for ranks in sets["cfg"]:
        assert len({shard[r] for r in ranks}) == 1 and [r // 4 for r in ranks] == [0, 1]
    assert sorted(r for kind in ("ulysses", "ring", "cfg") for ranks in sets[kind] for r in ranks) == sorted(
        list(range(8)) * 3)


def _workers(launcher: int) -> dict[int, int]:
    """RANK -> pid of the processes `launcher` (torchrun's agent) started, read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else 0
            if parent == launcher:
                environ = (entry / "environ").read_bytes().split(b"\0")
                found[next(int(v[5:]) for v in environ if v.startswith(b"RANK="))] = int(entry.name)
        except (OSError, StopIteration):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers through /proc")
def test_a_rank_killed_mid_run_ends_the_torchrun_run_with_its_cause(tmp_path: Path) -> None:
    """Rank 1 of a 2-rank Ulysses `generate` is killed (SIGKILL) during denoising: gloo sees the lost peer at once and
    torchrun ends the other rank; the run exits non-zero within seconds, naming rank 1 and its signal as the root
    cause, and writes nothing."""
    out = tmp_path / "video.mp4"
    env = {**os.environ, "PYTHONPATH": str(Path(hunyuan_video.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m",
                            "hunyuan_video", "generate", "a red cube", *SMALL, "--steps", "1000", "--ulysses-degree",
                            "2", "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = b""
    try:
        os.set_blocking(run.stderr.fileno(), False)
        deadline = time.monotonic() + TIMEOUT_S * 2
        while b"denoise:" not in stderr:  # rank 0's progress bar: both ranks are in the denoising loop
            assert time.monotonic() < deadline and run.poll() is None, stderr.decode()[-2000:]
            time.sleep(0.2)
            stderr += run.stderr.read() or b""
        os.kill(_workers(run.pid)[1], signal.SIGKILL)
        killed = time.monotonic()
        os.set_blocking(run.stderr.fileno(), True)
        stderr += run.communicate(timeout=TIMEOUT_S)[1]
    finally:
        run.kill()
    assert time.monotonic() - killed < 30 and run.returncode != 0
    cause = stderr.decode().split("Root Cause")[-1]
    assert "rank      : 1" in cause and "Signal 9 (SIGKILL)" in cause, stderr.decode()[-2000:]
    assert not out.exists()
