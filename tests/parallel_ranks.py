"""Workers of the multi-process tests in `test_parallel.py`, importing only torch and hunyuan_video's model and
parallel modules (not transformers), so that spawned ranks start fast."""

from __future__ import annotations

import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from random_weights import tiny_transformer, tiny_vae

from hunyuan_video.models.tiling import TileSpec
from hunyuan_video.parallel import ParallelConfig, ParallelGroups, ParallelTransformer
from hunyuan_video.parallel.sequence import gather, shard
from hunyuan_video.parallel.vae import decode_shared

TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(worker, world: int, *args, timeout: float = TIMEOUT_S) -> None:
    """Run `worker(rank, world, port, *args)` in `world` spawned processes; fail on an error or after `timeout`
    seconds."""
    ctx = mp.start_processes(worker, args=(world, _free_port(), *args), nprocs=world, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ctx.processes:
                process.kill()
            pytest.fail(f"{world} ranks did not finish within {timeout} s (a hang)")


def _init(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30))


def _inputs(batch: int = 2, seed: int = 0) -> dict:
    """Latents of grid (3, 4, 4) = 48 tokens, two text lengths (7 and 4), embedded guidance."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 7, dtype=torch.long)
    mask[1::2, 4:] = 0
    return dict(x=torch.randn(batch, 16, 3, 8, 8, generator=gen), t=torch.rand(batch, generator=gen) * 1000,
                text_states=torch.randn(batch, 7, 32, generator=gen), text_mask=mask,
                text_states_2=torch.randn(batch, 24, generator=gen), guidance=torch.full((batch,), 6000.0))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    error = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert error <= 1e-5, f"{what}: relative error {error:.2e}"


def _sequence_parallel_matches(model: torch.nn.Module, groups: ParallelGroups) -> None:
    config = groups.config
    inputs = _inputs()
    expected = model(**inputs)
    assert_close(ParallelTransformer(model, groups)(**inputs), expected, f"{config} forward")
    # the first-frame modulation (the 16 tokens of the first latent frame, in shard 0 of 24) follows the shard
    state = model.embed(**inputs, first_frame_t=torch.tensor([10.0, 500.0]))
    assert_close(model.head(gather(model.blocks(shard(state, groups)), state, groups)),
                  model.head(model.blocks(state)), f"{config} first-frame modulation")


def _cfg_parallel_matches(model: torch.nn.Module, groups: ParallelGroups) -> None:
    negative, positive = _inputs(seed=1), _inputs(seed=2)
    inputs = {k: torch.cat([negative[k], positive[k]]) for k in negative}
    inputs["x"] = torch.cat([positive["x"], positive["x"]])
    v_neg, v_pos = model(**inputs).chunk(2)
    p_neg, p_pos = ParallelTransformer(model, groups)(**inputs).chunk(2)
    assert_close(p_neg + 5.0 * (p_pos - p_neg), v_neg + 5.0 * (v_pos - v_neg), "cfg parallel guided velocity")


def two_rank_worker(rank: int, world: int, port: int) -> None:
    _init(rank, world, port)
    model = tiny_transformer()
    with torch.no_grad():
        _sequence_parallel_matches(model, ParallelGroups.build(ParallelConfig(ulysses_degree=2)))
        _sequence_parallel_matches(model, ParallelGroups.build(ParallelConfig(ring_degree=2)))
        _cfg_parallel_matches(model, ParallelGroups.build(ParallelConfig(cfg_parallel=True)))
        vae = tiny_vae()
        vae.tiling = TileSpec(sample_size=32, sample_tsize=16)  # 2 x 2 x 2 tiles of the (5, 6, 6) latents
        latents = torch.randn(1, 16, 5, 6, 6, generator=torch.Generator().manual_seed(4))
        assert torch.equal(decode_shared(vae, latents), vae.decode(latents)), "parallel VAE decode"
    _sequence_parallel_training_matches(ParallelGroups.build(ParallelConfig(ulysses_degree=2)))
    dist.destroy_process_group()


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def _sequence_parallel_training_matches(groups: ParallelGroups, steps: int = 3) -> None:
    """Ulysses training of a batch of 2 samples per sequence group (two text lengths, guidance), gradients averaged
    over all ranks as the trainer does: the loss, every gradient and the weights after `steps` SGD steps (each step's
    gradients at the weights the earlier steps reached) equal one process training on the whole batch (every
    data-parallel group's rows) to 1e-5 relative. (SGD, not AdamW: Adam's update of a gradient near zero is about
    its sign, which rounding may flip.)"""
    from hunyuan_video.train.distributed import average_gradients, shard_rows

    one, sharded = tiny_transformer().train(), tiny_transformer().train()
    sharded.gradient_checkpointing = groups.replica == 1  # recomputing a block re-runs its all-to-alls
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (one, sharded)]
    parallel = ParallelTransformer(sharded, groups)
    for step in range(steps):
        inputs = _inputs(batch=2 * groups.replicas, seed=10 + step)
        target = torch.randn(inputs["x"].shape, generator=torch.Generator().manual_seed(step))
        losses = []
        for model, forward, rows in ((one, one, lambda b: b), (sharded, parallel, lambda b: shard_rows(b, 2))):
            model.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(forward(**rows(inputs)), rows(target))
            loss.backward()
            losses.append(loss.detach())
        average_gradients(sharded.parameters())
        mean_loss = losses[1].clone()
        dist.all_reduce(mean_loss)
        assert_close(mean_loss / dist.get_world_size(), losses[0], f"step {step} loss")
        for (name, p), q in zip(one.named_parameters(), sharded.parameters()):
            error = _relative_error(q.grad, p.grad)
            assert error <= 1e-5, f"step {step} gradient of {name}: relative error {error:.2e}"
        for optimizer in optimizers:
            optimizer.step()
    for (name, p), q in zip(one.named_parameters(), sharded.parameters()):
        assert _relative_error(q.detach(), p.detach()) <= 1e-5, f"{name} after {steps} steps"


def four_rank_worker(rank: int, world: int, port: int) -> None:
    _init(rank, world, port)
    with torch.no_grad():
        _sequence_parallel_matches(tiny_transformer(), ParallelGroups.build(ParallelConfig(2, 2)))
    _sequence_parallel_training_matches(ParallelGroups.build(ParallelConfig(ulysses_degree=2), replicas=2), steps=2)
    dist.destroy_process_group()
