"""Transformer training: the curriculum, caption dropout, a loss that goes down, an exact resume, clear errors."""

import json
from pathlib import Path

import pytest
import torch
from test_cache import IMAGE, VIDEO, make_setup

from hunyuan_video.train.cache import build_cache, cache_fingerprint, read_cache
from hunyuan_video.train.common import load_checkpoint, load_config, read_jsonl
from hunyuan_video.train.dit import (
    DiTTrainConfig,
    build_transformer,
    draw_batch,
    flow_matching_loss,
    train,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit")
    fields = make_setup(root)
    build_cache(DiTTrainConfig(**fields), progress=False)
    return fields


def test_stages_pick_their_buckets_and_dropout_uses_the_empty_caption(base):
    config = DiTTrainConfig(**base, caption_dropout=0.5)
    assert config.total_steps == 4 and config.buckets == [IMAGE, VIDEO]
    assert [config.stage_at(s).name for s in range(4)] == ["images", "images", "video", "video"]
    with pytest.raises(ValueError, match="past the end"):
        config.stage_at(4)
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    gen = torch.Generator().manual_seed(0)
    shapes = {tuple(draw_batch(cache, config.stage_at(0), 0.5, gen)["x0"].shape) for _ in range(5)}
    assert shapes == {(2, 16, 1, 4, 4)}
    shapes = [draw_batch(cache, config.stage_at(2), 0.5, gen)["x0"].shape[2] for _ in range(40)]
    assert 20 < shapes.count(3) < 40 and shapes.count(1) > 0  # bucket weights 3:1
    batches = [draw_batch(cache, config.stage_at(0), 0.5, gen) for _ in range(20)]
    pooled = torch.cat([b["text_states_2"] for b in batches])
    dropped = (pooled == cache.text.null_pooled).all(1)
    assert 0.2 < dropped.float().mean() < 0.8
    masks = torch.cat([b["text_mask"] for b in batches])
    assert torch.equal(masks[dropped], cache.text.null_mask.expand(int(dropped.sum()), -1))


def test_row_weights_set_how_often_each_row_is_drawn(base):
    config = DiTTrainConfig(**base)
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    image = cache.buckets[IMAGE]  # row i holds the constant i, without noise, so that a sample names its row
    image.mean = torch.arange(4.0)[:, None, None, None, None].expand_as(image.mean)
    image.std = torch.zeros_like(image.std)
    cache.weights = {b: torch.tensor([0.0, 0.0, 1.0, 3.0]) for b in cache.buckets}
    gen = torch.Generator().manual_seed(0)
    drawn = []
    for _ in range(100):
        drawn += draw_batch(cache, config.stage_at(0), 0.0, gen)["x0"][:, 0, 0, 0, 0].int().tolist()
    assert set(drawn) == {2, 3} and 0.65 < drawn.count(3) / len(drawn) < 0.85  # 3:1, and never the weight-0 rows


def test_pooled_dropout_drops_only_clips_pooled_vector(base):
    config = DiTTrainConfig(**base)
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    off, on = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    kept = draw_batch(cache, config.stage_at(0), 0.0, off)
    assert not (kept["text_states_2"] == cache.text.null_pooled).all(1).any()
    batch = draw_batch(cache, config.stage_at(0), 0.0, on, pooled_dropout=1.0)
    assert (batch["text_states_2"] == cache.text.null_pooled).all(1).all()  # every pooled vector is the empty one
    assert torch.equal(batch["text_states"], kept["text_states"]) and torch.equal(batch["text_mask"], kept["text_mask"])
    # off, it draws nothing more: the generator stops short of where the run with pooled dropout left it
    assert not torch.equal(off.get_state(), on.get_state())
    with pytest.raises(ValueError, match="pooled_dropout"):
        DiTTrainConfig(**base, pooled_dropout=1.5)


def test_loss_decreases_on_a_tiny_run(base, tmp_path):
    stages = [{"name": "video", "steps": 60, "batch_size": 4, "buckets": [VIDEO]}]
    config = DiTTrainConfig(**{**base, "out_dir": str(tmp_path), "stages": stages}, lr=3e-3, warmup_steps=5,
                            caption_dropout=0.0, ema_decay=0.9, log_every=1, checkpoint_every=1000,
                            sample_prompts=["a red circle grows"], sample_steps=2, sample_size=(9, 32, 32))
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)

    def held_out_loss(model) -> float:  # the same batches, times and noise before and after training
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(float(flow_matching_loss(model, draw_batch(cache, config.stages[0], 0.0, gen), config, gen))
                       for _ in range(8)) / 8

    before = held_out_loss(build_transformer(config))
    train(config, progress=False)
    from hunyuan_video.checkpoint import load_transformer

    after = held_out_loss(load_transformer(tmp_path / "transformer_ema.safetensors"))
    assert after < 0.7 * before, (before, after)
    log = read_jsonl(tmp_path / "log.jsonl")
    assert len(log) == 60 and {"loss", "grad_norm", "lr"} <= set(log[0])
    assert (tmp_path / "loss.png").stat().st_size > 0
    from hunyuan_video.video_io import read_video

    assert read_video(tmp_path / "samples" / "step_000060" / "0.mp4").shape == (9, 32, 32, 3)


def test_resume_is_exact(base, tmp_path):
    fields = {**base, "checkpoint_every": 2, "log_every": 1, "gradient_checkpointing": True}
    straight = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "straight")})
    train(straight, progress=False)
    export = tmp_path / "export" / "transformer.safetensors"
    resumed = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "resumed"), "export": str(export)})
    train(resumed, max_steps=3, progress=False)  # stops in the second stage, after a checkpoint at step 2... and 3
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 3
    assert (tmp_path / "resumed" / "transformer_ema.safetensors").exists()  # a stopped run: its own out_dir only
    assert not export.exists()
    with pytest.raises(ValueError, match="--resume"):
        train(resumed, progress=False)
    train(resumed, resume=True, progress=False)
    assert export.exists()  # the finished run writes `export`
    assert_same_run(tmp_path / "straight", tmp_path / "resumed", 4)


def test_fine_tune_starts_from_the_given_weights(base, tmp_path):
    first = DiTTrainConfig(**{**base, "out_dir": str(tmp_path / "first")})
    train(first, progress=False)
    weights = tmp_path / "first" / "transformer_ema.safetensors"
    fields = {k: v for k, v in base.items() if k != "transformer"}
    tuned = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "tuned")}, init_from=str(weights))
    from hunyuan_video.checkpoint import load_transformer

    start, trained = build_transformer(tuned).state_dict(), load_transformer(weights).state_dict()
    assert all(torch.equal(start[k], trained[k]) for k in trained)
    train(tuned, max_steps=1, progress=False)
    assert load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")["step"] == 1
    with pytest.raises(ValueError, match="not both"):
        DiTTrainConfig(**base, init_from=str(weights))
    with pytest.raises(ValueError, match="one of `transformer`"):
        DiTTrainConfig(**fields)


def test_config_errors_are_clear(base, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**base, "learning_rate": 1}))
    with pytest.raises(ValueError, match="unknown config keys \\['learning_rate'\\]"):
        load_config(DiTTrainConfig, path)
    path.write_text(json.dumps(base))
    assert load_config(DiTTrainConfig, path).stages[1].buckets == (VIDEO, IMAGE)
    with pytest.raises(ValueError, match="time_sampling"):
        DiTTrainConfig(**base, time_sampling="cosine")
    with pytest.raises(ValueError, match="lr_schedule"):
        DiTTrainConfig(**base, lr_schedule="linear")
    with pytest.raises(ValueError, match="one non-negative weight per bucket"):
        DiTTrainConfig(**{**base, "stages": [{"name": "x", "steps": 1, "batch_size": 1, "buckets": [VIDEO],
                                               "bucket_weights": [1, 2]}]})
    with pytest.raises(ValueError, match="stale"):
        train(DiTTrainConfig(**{**base, "text_max_length": 16}), progress=False)


def test_export_writes_the_ema_weights_in_the_asked_dtype(base, tmp_path):
    config = DiTTrainConfig(**{**base, "out_dir": str(tmp_path / "run")}, export=str(tmp_path / "export.safetensors"),
                            export_dtype="float16")
    train(config, progress=False)
    from hunyuan_video.checkpoint import load_transformer, read_state_dict

    assert {t.dtype for t in read_state_dict(tmp_path / "export.safetensors").values()} == {torch.float16}
    exported = load_transformer(tmp_path / "export.safetensors", dtype=torch.float32)
    kept = load_transformer(tmp_path / "run" / "transformer_ema.safetensors")
    assert next(kept.parameters()).dtype == torch.float32
    c = kept.config
    gen = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, c.in_channels, 3, 4, 4, generator=gen), torch.tensor([300.0, 800.0]),
              torch.randn(2, 5, c.text_states_dim, generator=gen), torch.tensor([[1] * 5, [1] * 3 + [0] * 2]).bool(),
              torch.randn(2, c.text_states_dim_2, generator=gen), None)
    with torch.no_grad():
        ref = kept(*inputs)
        torch.testing.assert_close(exported(*inputs), ref, rtol=0, atol=2e-2 * ref.abs().max().item())
    with pytest.raises(ValueError, match="export_dtype"):
        DiTTrainConfig(**{**base, "export_dtype": "int8"})


def _train_as_rank(rank: int, world: int, fields: dict, out_dirs: list[str], rendezvous: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        train(DiTTrainConfig(**{**fields, "out_dir": out_dirs[rank]}), progress=False)
    finally:
        dist.destroy_process_group()


def test_two_ranks_of_half_the_batch_train_as_one_and_only_rank_0_writes(base, tmp_path):
    import torch.multiprocessing as mp

    fields = {**base, "log_every": 1, "checkpoint_every": 2}
    train(DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "one")}), progress=False)
    out_dirs = [str(tmp_path / "rank0"), str(tmp_path / "rank1")]  # rank 1 is told another folder: it must write none
    context = mp.start_processes(_train_as_rank, args=(2, fields, out_dirs, str(tmp_path / "rendezvous")), nprocs=2,
                                 join=False, start_method="spawn")
    deadline = 300  # seconds: a hung collective fails the test instead of blocking the suite
    import time

    start = time.monotonic()
    while not context.join(timeout=5):
        if time.monotonic() - start > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("two-rank training did not finish in time")
    assert not (tmp_path / "rank1").exists()
    one, two = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("one", "rank0"))
    assert one["step"] == two["step"] == 4
    for key in one["model"]:
        torch.testing.assert_close(two["model"][key], one["model"][key], rtol=1e-4, atol=1e-6, msg=key)
    log_one, log_two = (read_jsonl(tmp_path / name / "log.jsonl") for name in ("one", "rank0"))
    assert [r["loss"] for r in log_two] == pytest.approx([r["loss"] for r in log_one], rel=1e-5)


def test_cli_config_errors_are_one_line(base, tmp_path, capsys):
    from hunyuan_video.cli import main

    path = tmp_path / "c.json"
    for text, message in ((json.dumps({**base, "learning_rate": 1}), "unknown config keys \\['learning_rate'\\]"),
                          ("{", "is not valid JSON"),
                          (json.dumps({k: v for k, v in base.items() if k != "cache_dir"}),
                           "missing keys \\['cache_dir'\\]"),
                          (json.dumps({**base, "stages": [{"name": "x", "steps": 1, "batch_size": 1,
                                                           "buckets": [VIDEO], "batch": 2}]}),
                           "stages\\[0\\]: unknown keys \\['batch'\\]")):
        path.write_text(text)
        for command in ("train", "cache"):
            with pytest.raises(SystemExit, match=f"^hunyuan-video {command}: .*{message}") as error:
                main([command, str(path)])
            assert "\n" not in str(error.value.code) and error.value.__suppress_context__  # no traceback
    path.write_text(json.dumps({**base, "device": "gpu0"}))
    with pytest.raises(SystemExit, match="^hunyuan-video train: device 'gpu0' is not a torch device"):
        main(["train", str(path)])
    with pytest.raises(SystemExit, match="config .*missing.json does not exist"):
        main(["train", str(tmp_path / "missing.json")])
    assert not Path(base["out_dir"]).exists()  # nothing was written


def assert_same_run(straight: Path, resumed: Path, steps: int) -> None:
    """Two runs' checkpoints (model and EMA) are equal bit for bit at `steps`, and so are their logged losses."""
    a, b = (load_checkpoint(run / "checkpoint.pt") for run in (straight, resumed))
    assert a["step"] == b["step"] == steps
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key]), key
    log_a, log_b = (read_jsonl(run / "log.jsonl") for run in (straight, resumed))
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
