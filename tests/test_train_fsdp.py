"""Transformer training sharded with FSDP2 on 2 gloo ranks: the same losses as one process with the same global batch,
sharded checkpoints that resume on another number of ranks (2 -> 1 and 1 -> 2) as an uninterrupted run goes on,
gradient accumulation that equals one batch as big, and a global batch that does not split refused before training."""

import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_cache import VIDEO, make_setup

from hunyuan_video.checkpoint import read_state_dict
from hunyuan_video.train.cache import build_cache
from hunyuan_video.train.common import load_checkpoint, read_jsonl
from hunyuan_video.train.dit import DiTTrainConfig, train

TIMEOUT_S = 240  # two spawned ranks train twice; a hung collective fails the test instead of blocking the suite


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    base = make_setup(root)
    build_cache(DiTTrainConfig(**base), progress=False)
    stages = [{"name": "video", "steps": 4, "batch_size": 4, "buckets": [VIDEO]}]
    return {**base, "stages": stages, "log_every": 1, "checkpoint_every": 2, "warmup_steps": 1, "lr": 1e-3}


def _config(fields: dict, out: Path, **extra) -> DiTTrainConfig:
    return DiTTrainConfig(**{**fields, "out_dir": str(out), **extra})


def _rank(rank: int, world: int, fields: dict, root: str) -> None:
    import torch.distributed as dist

    root = Path(root)
    dist.init_process_group("gloo", init_method=f"file://{root / 'rendezvous'}", rank=rank, world_size=world)
    try:
        with pytest.raises(ValueError, match="batch_size 4 does not split over 2 ranks x 4 accumulation steps"):
            train(_config(fields, root / "refused", fsdp=True, grad_accum_steps=4), progress=False)
        # 2 ranks x 2 micro-batches of one row, each block recomputed in the backward pass; stopped at step 2,
        # resumed on one process by the test
        train(_config(fields, root / "two", fsdp=True, grad_accum_steps=2, gradient_checkpointing=True), max_steps=2,
              progress=False)
        # the run of one process stopped at step 2 goes on here, on 2 ranks
        train(_config(fields, root / "one_then_two", fsdp=True), resume=True, progress=False)
    finally:
        dist.destroy_process_group()


def _spawn(worker, fields: dict, root: Path) -> None:
    context = mp.start_processes(worker, args=(2, fields, str(root)), nprocs=2, join=False, start_method="spawn")
    start = time.monotonic()
    while not context.join(timeout=1):
        if time.monotonic() - start > TIMEOUT_S:
            for process in context.processes:
                process.kill()
            pytest.fail(f"2 ranks did not finish within {TIMEOUT_S} s (a hang)")


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(run / "log.jsonl")]


def _assert_close(actual: dict, expected: dict, what: str, rtol: float = 1e-5) -> None:
    """Each tensor equal to `rtol` relative (the norm of the difference over the norm of the expected tensor)."""
    assert actual.keys() == expected.keys()
    for key in expected:
        error = ((actual[key] - expected[key]).norm() / expected[key].norm().clamp_min(1e-12)).item()
        assert error <= rtol, f"{what} {key}: relative error {error:.2e}"


def test_sharded_training_equals_one_process_and_resumes_on_another_world_size(fields, tmp_path):
    train(_config(fields, tmp_path / "one"), progress=False)  # the uninterrupted run of one process
    train(_config(fields, tmp_path / "one_then_two"), max_steps=2, progress=False)
    ema_at_2 = read_state_dict(tmp_path / "one_then_two" / "transformer_ema.safetensors")
    _spawn(_rank, fields, tmp_path)
    assert not (tmp_path / "refused").exists()
    two = tmp_path / "two"
    assert (two / "checkpoint.dcp" / "latest").read_text().strip() == "step_000002"
    assert not (two / "checkpoint.pt").exists()
    expected = _losses(tmp_path / "one")
    assert _losses(two) == pytest.approx(expected[:2], rel=1e-5)
    # the 2-rank run's EMA, gathered on rank 0, is a normal transformer checkpoint
    _assert_close(read_state_dict(two / "transformer_ema.safetensors"), ema_at_2, "2-rank EMA at step 2")

    train(_config(fields, two), resume=True, progress=False)  # 2 ranks -> 1 process
    straight = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    for run in (two, tmp_path / "one_then_two"):
        assert _losses(run) == pytest.approx(expected, rel=1e-5), run.name
        _assert_close(read_state_dict(run / "transformer_ema.safetensors"),
                      read_state_dict(tmp_path / "one" / "transformer_ema.safetensors"), f"{run.name} EMA")
    resumed = load_checkpoint(two / "checkpoint.pt")
    assert resumed["step"] == 4 and not (two / "checkpoint.dcp").exists()
    _assert_close(resumed["model"], straight["model"], "2 -> 1 model")
    for key in ("exp_avg", "exp_avg_sq"):
        _assert_close({i: s[key] for i, s in resumed["optimizer"]["state"].items()},
                      {i: s[key] for i, s in straight["optimizer"]["state"].items()}, f"2 -> 1 optimiser {key}")
    assert (tmp_path / "one_then_two" / "checkpoint.dcp" / "step_000004").is_dir()


def test_accumulated_micro_batches_equal_one_batch(fields, tmp_path):
    train(_config(fields, tmp_path / "whole"), max_steps=2, progress=False)
    train(_config(fields, tmp_path / "accumulated", grad_accum_steps=2), max_steps=2, progress=False)
    assert _losses(tmp_path / "accumulated") == pytest.approx(_losses(tmp_path / "whole"), rel=1e-5)
    whole, accumulated = (load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("whole", "accumulated"))
    # Two half-batch gradients summed round apart from one whole-batch gradient, and AdamW divides by sqrt(v): on the
    # refiner's norm biases, whose gradients are tiny, that shows as up to 1.7e-5 relative after 2 steps on 2 threads.
    _assert_close(accumulated["model"], whole["model"], "accumulated model", rtol=1e-4)
    with pytest.raises(ValueError, match="batch_size 4 does not split over 1 ranks x 3 accumulation steps"):
        train(_config(fields, tmp_path / "three", grad_accum_steps=3), progress=False)
    assert not (tmp_path / "three").exists()


TINY_VAE = {"block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "norm_num_groups": 4,
            "sample_size": 32, "sample_tsize": 16}


@pytest.fixture(scope="module")
def vae_fields(tmp_path_factory):
    from hunyuan_video.tiny.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("fsdp_vae")
    generate(root / "train", 3, seed=0, config=SynthConfig(height=32, width=32, frames=9), progress=False)
    return dict(train_dir=str(root / "train"), vae=TINY_VAE, lpips_weight=0.0, disc_weight=0.0, lr=1e-3,
                warmup_steps=1, log_every=1, checkpoint_every=2, video_per_image=1,
                stages=[{"steps": 3, "size": 16, "frames": 5, "batch_size": 2, "image_batch_size": 2}])


def _vae_rank(rank: int, world: int, fields: dict, root: str) -> None:
    import torch.distributed as dist

    from hunyuan_video.train.vae import VAETrainConfig, train_vae

    root = Path(root)
    dist.init_process_group("gloo", init_method=f"file://{root / 'rendezvous'}", rank=rank, world_size=world)
    try:
        train_vae(VAETrainConfig(**fields, out_dir=str(root / "two"), fsdp=True), max_steps=2, progress=False)
        # the discriminator sharded too, with the adaptive weight taken at the decoder's last layer
        gan = {**fields, "disc_weight": 0.05, "disc_start": 0, "disc_channels": 8, "disc_layers": 2}
        train_vae(VAETrainConfig(**gan, out_dir=str(root / "gan"), fsdp=True), max_steps=2, progress=False)
    finally:
        dist.destroy_process_group()


def test_sharded_vae_training_equals_one_process_and_resumes_on_one(vae_fields, tmp_path):
    """The VAE's convolutions round differently at another batch size (a clip decoded alone and in a batch of 2
    differ by ~1e-5 relative on the CPU), so one process accumulating micro-batches of one row is the reference of
    2 ranks of one row each."""
    from hunyuan_video.train.vae import VAETrainConfig, train_vae

    train_vae(VAETrainConfig(**vae_fields, out_dir=str(tmp_path / "one"), grad_accum_steps=2), progress=False)
    _spawn(_vae_rank, vae_fields, tmp_path)
    two = tmp_path / "two"
    expected = _losses(tmp_path / "one")
    assert _losses(two) == pytest.approx(expected[:2], rel=1e-5)
    assert (two / "checkpoint.dcp" / "latest").is_file()
    resumed_config = VAETrainConfig(**vae_fields, out_dir=str(two), grad_accum_steps=2)
    train_vae(resumed_config, resume=True, progress=False)  # 2 ranks -> 1 process
    assert _losses(two) == pytest.approx(expected, rel=1e-5)
    straight, resumed = (load_checkpoint(run / "checkpoint.pt") for run in (tmp_path / "one", two))
    _assert_close(resumed["model"], straight["model"], "2 -> 1 VAE")
    _assert_close(resumed["ema"]["shadow"], straight["ema"]["shadow"], "2 -> 1 VAE EMA")
    gan = {**vae_fields, "disc_weight": 0.05, "disc_start": 0, "disc_channels": 8, "disc_layers": 2}
    train_vae(VAETrainConfig(**gan, out_dir=str(tmp_path / "gan")), resume=True, progress=False)
    state = load_checkpoint(tmp_path / "gan" / "checkpoint.pt")
    assert state["step"] == 3 and state["disc_optimizer"]["state"] and "d" in read_jsonl(tmp_path / "gan" /
                                                                                         "log.jsonl")[-1]


def test_sharded_checkpoint_round_trip_and_a_misfit_in_one_line(tmp_path):
    from torch import nn

    from hunyuan_video.train.common import EMA
    from hunyuan_video.train.sharded_checkpoint import load_sharded, save_sharded

    def parts(width: int, seed: int) -> dict:
        torch.manual_seed(seed)
        model = nn.Linear(width, 3)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        model(torch.randn(2, width)).sum().backward()
        optimizer.step()
        return {"model": model, "optimizer": optimizer, "ema": EMA(model, 0.5)}

    saved = parts(4, 0)
    save_sharded(tmp_path / "checkpoint.dcp", 7, **saved)  # one process: DCP without a process group
    save_sharded(tmp_path / "checkpoint.dcp", 8, **saved)
    assert sorted(p.name for p in (tmp_path / "checkpoint.dcp").iterdir()) == ["latest", "step_000008"]
    loaded = parts(4, 1)
    assert load_sharded(tmp_path / "checkpoint.dcp", **loaded) == 8
    assert torch.equal(loaded["model"].weight, saved["model"].weight)
    assert torch.equal(loaded["ema"].shadow["bias"], saved["ema"].shadow["bias"])
    state = loaded["optimizer"].state[loaded["model"].weight]
    assert torch.equal(state["exp_avg"], saved["optimizer"].state[saved["model"].weight]["exp_avg"])
    with pytest.raises(ValueError, match="checkpoint does not fit this run") as error:
        load_sharded(tmp_path / "checkpoint.dcp", **parts(5, 0))
    assert "\n" not in str(error.value)
