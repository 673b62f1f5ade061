import json
import random
from dataclasses import dataclass
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from hunyuan_video.train.common import (
    EMA,
    JsonlLogger,
    autocast_context,
    load_checkpoint,
    load_config,
    plot_losses,
    read_jsonl,
    resolve_device,
    rng_state,
    save_checkpoint,
    set_rng_state,
    stage_at,
    warmup_lambda,
)
from hunyuan_video.train.distributed import check_divisible, shard_rows
from hunyuan_video.train.dit import Stage
from hunyuan_video.train.vae import VAEStage


def test_ema_follows_the_exponential_average_and_copies_back():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    ema = EMA(model, decay=0.75)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    ema.update(model)
    torch.testing.assert_close(ema.shadow["0.weight"], start["0.weight"] + 0.25)
    assert ema.shadow["1.num_batches_tracked"].item() == 5

    other = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    restored = EMA(other, decay=0.1)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.75
    restored.copy_to(other)
    torch.testing.assert_close(other[0].weight, start["0.weight"] + 0.25)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)
    with pytest.raises(ValueError, match="names differ"):
        EMA(nn.Linear(3, 2)).load_state_dict(ema.state_dict())


def _draw() -> tuple:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    state = rng_state()
    first = _draw()
    save_checkpoint(tmp_path / "ck.pt", rng=state, step=7)
    _draw()
    loaded = load_checkpoint(tmp_path / "ck.pt")
    set_rng_state(loaded["rng"])
    assert _draw() == first
    assert loaded["step"] == 7


def test_checkpoint_is_atomic_and_round_trips_state_dicts(tmp_path):
    model = nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "sub" / "ck.pt", model=model.state_dict(), optimizer=opt.state_dict())
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]  # no temporary file left behind
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["model"]["weight"], model.weight.detach())
    opt2 = torch.optim.AdamW(nn.Linear(4, 4).parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_jsonl_logger_and_plot(tmp_path):
    log = JsonlLogger(tmp_path / "log.jsonl")
    log.log(0, loss=torch.tensor(2.0), lr=1e-4)
    log.log(1, loss=1.0)
    log.log(1, loss=0.5)  # a resumed run rewrites step 1
    lines = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines[0]["loss"] == 2.0 and lines[0]["lr"] == 1e-4 and len(lines) == 3
    assert [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "log.jsonl")] == [(0, 2.0), (1, 0.5)]
    png = plot_losses(tmp_path / "log.jsonl", tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_losses(tmp_path / "none.jsonl", tmp_path / "none.png") is None  # nothing logged: no plot, no crash
    assert not (tmp_path / "none.png").exists()


def test_warmup_lambda_and_autocast():
    f = warmup_lambda(4)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_lambda(0)(0) == 1.0
    g = warmup_lambda(2, decay_steps=6, final=0.1)  # up over 2 steps, then a half cosine from 1 to 0.1 at step 6
    assert [round(g(s), 4) for s in (0, 1, 2, 4, 6, 9)] == [0.5, 1.0, 1.0, 0.55, 0.1, 0.1]
    with pytest.raises(ValueError):
        warmup_lambda(1, decay_steps=-1)
    with pytest.raises(ValueError):
        warmup_lambda(-1)
    with autocast_context("cpu"):
        y = nn.Linear(2, 2)(torch.randn(1, 2))
    assert y.dtype == torch.float32


@dataclass
class _Config:
    name: str
    betas: tuple[float, float] = (0.9, 0.999)
    steps: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def test_load_config_refuses_what_it_cannot_read(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "a", "betas": [0.5, 0.9]}))
    assert load_config(_Config, path) == _Config("a", (0.5, 0.9))  # lists become tuples where the field is one
    cases = [({"name": "a", "lr": 1}, r"c.json: unknown config keys \['lr'\]; known keys are \['betas', 'name', "
                                       r"'steps'\]"),
             ({"steps": 2}, r"c.json: missing keys \['name'\]"),
             ({"name": "a", "steps": 0}, r"c.json: steps must be >= 1"),
             ({"name": "a", "steps": "2"}, r"c.json: .*not supported"),  # a wrong type fails in the checks
             ([1, 2], r"c.json: expected a JSON object of _Config fields, got list")]
    for data, message in cases:
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=message):
            load_config(_Config, path)
    path.write_text("{")
    with pytest.raises(ValueError, match="c.json is not valid JSON"):
        load_config(_Config, path)
    with pytest.raises(ValueError, match="config .*nothing.json does not exist"):
        load_config(_Config, tmp_path / "nothing.json")


def test_stage_at_is_one_rule_for_both_trainers():
    dit = [Stage("a", 2, 1, [(1, 8, 8)]), Stage("b", 1, 1, [(1, 8, 8)])]
    vae = [VAEStage(steps=2, size=8, frames=1), VAEStage(steps=1, size=16, frames=1)]
    for stages in (dit, vae):
        assert [stage_at(stages, s) for s in range(3)] == [stages[0], stages[0], stages[1]]
        for past in (3, 10):
            with pytest.raises(ValueError, match=f"step {past} is past the end of the schedule \\(0 .. 2\\)"):
                stage_at(stages, past)


def test_resolve_device():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu' is not a torch device"):
        resolve_device("gpu")
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="'cuda:1' but torch sees no CUDA GPU"):
            resolve_device("cuda:1")
    with mock.patch("torch.cuda.is_available", return_value=True):
        assert resolve_device("auto") == torch.device("cuda")


def test_ranks_split_batches_evenly():
    batch = {"x": torch.arange(6), "name": "kept"}
    assert shard_rows(batch) is batch  # without a process group: the whole batch
    with mock.patch("hunyuan_video.train.distributed.rank_and_world", return_value=(1, 3)):
        part = shard_rows(batch)
        assert part["x"].tolist() == [1, 4] and part["name"] == "kept"
        assert shard_rows(torch.arange(6)).tolist() == [1, 4]
        check_divisible(6, "batch_size")
        with pytest.raises(ValueError, match="batch_size 4 does not split over 3 ranks"):
            check_divisible(4, "batch_size")
