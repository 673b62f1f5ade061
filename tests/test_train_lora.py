"""LoRA training of the transformer: the loss goes down, the base stays as it was, resume is exact, the saved adapter
reloads to the same output, the config's errors are clear."""

import pytest
import torch
from test_cache import VIDEO, make_setup
from test_train_dit import assert_same_run

import hunyuan_video.train.dit as dit
from hunyuan_video import load_lora
from hunyuan_video.checkpoint import save_transformer
from hunyuan_video.lora import linear_shapes, set_lora_scale, target_modules
from hunyuan_video.lora_formats import read_lora
from hunyuan_video.quant import FP8_DTYPE
from hunyuan_video.train.cache import LatentCache, TextStates, build_cache, cache_fingerprint, merge_caches, read_cache
from hunyuan_video.train.common import load_checkpoint, read_jsonl
from hunyuan_video.train.dit import (
    LORA_NAME,
    DiTTrainConfig,
    Stage,
    build_transformer,
    draw_batch,
    draw_noise,
    flow_matching_loss,
    train,
    trained_part,
    velocity_loss,
)

LORA = {"rank": 4, "alpha": 8, "targets": ["img_attn_qkv", "img_mlp.fc1", "linear1", "linear2"]}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_train")
    fields = make_setup(root)
    build_cache(DiTTrainConfig(**fields), progress=False)
    return fields


@pytest.fixture
def trained_models(monkeypatch):
    """The transformers `train` builds, kept to look at after the run."""
    models = []

    def keep(config):
        models.append(build_transformer(config))
        return models[-1]

    monkeypatch.setattr(dit, "build_transformer", keep)
    return models


def held_out_loss(model, config: DiTTrainConfig) -> float:
    """The mean flow-matching loss of `model` on 8 batches of the first stage, the same draws every call."""
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        return sum(float(flow_matching_loss(model, draw_batch(cache, config.stages[0], 0.0, gen), config, gen))
                   for _ in range(8)) / 8


def fast_lora_run(fields: dict, out_dir, lora: dict) -> DiTTrainConfig:
    """25 steps of 4 videos at lr 1e-2, the last weights exported (EMA decay 0)."""
    stages = [{"name": "video", "steps": 25, "batch_size": 4, "buckets": [VIDEO]}]
    return DiTTrainConfig(**{**fields, "out_dir": str(out_dir), "stages": stages, "lora": lora}, lr=1e-2,
                          warmup_steps=5, caption_dropout=0.0, ema_decay=0.0, log_every=1, checkpoint_every=1000)


def train_frozen(config: DiTTrainConfig, trained_models: list) -> tuple:
    """Train `config`'s LoRA: the model as built before training, the trained one and the held-out loss before. The
    trained model's base weights are the fresh model's, bit for bit and dtype for dtype; only the adapter trained."""
    fresh = build_transformer(config)
    before = held_out_loss(fresh, config)
    train(config, progress=False)
    model = trained_models[-1].eval()
    fresh_state = fresh.state_dict()
    for key, value in model.state_dict().items():
        if ".adapters." not in key:
            assert value.dtype == fresh_state[key].dtype and torch.equal(value, fresh_state[key]), key
    return fresh, model, before


def assert_reloads_learnt(fresh, model, saved, before: float, config: DiTTrainConfig) -> None:
    """The saved adapter (EMA decay 0: the last weights) loads onto the fresh model to the trained model's loss,
    well below the loss before training."""
    load_lora(fresh, saved)
    after = held_out_loss(fresh, config)
    assert after < 0.9 * before, (before, after)  # a rank-4 adapter on a frozen random model
    assert abs(after - held_out_loss(model, config)) < 1e-6 * before


def test_lora_training_lowers_the_loss_and_leaves_the_base_alone(base, tmp_path, trained_models):
    config = fast_lora_run(base, tmp_path, LORA)
    fresh, model, before = train_frozen(config, trained_models)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    modules = target_modules(fresh, LORA["targets"])
    assert sorted(checkpoint["model"]) == sorted(f"{m}.{p}" for m in modules for p in ("down", "up"))
    assert checkpoint["ema"]["shadow"].keys() == checkpoint["model"].keys()
    assert sum(p.numel() for group in checkpoint["optimizer"]["state"].values() for p in [group["exp_avg"]]) == \
        sum(t.numel() for t in checkpoint["model"].values())
    saved = tmp_path / "lora_ema.safetensors"
    pairs = read_lora(saved, linear_shapes(fresh))
    assert sorted(pairs) == sorted(modules) and {(p.rank, p.alpha) for p in pairs.values()} == {(4, 8.0)}
    assert_reloads_learnt(fresh, model, saved, before, config)
    assert len(read_jsonl(tmp_path / "log.jsonl")) == 25


def test_lora_trains_on_a_float8_base(base, tmp_path, trained_models):
    """`lora.fp8_base`: the frozen base's block linears stay float8 and untouched while the float32 adapter learns;
    the saved adapter reloads onto the float8 base to the trained output."""
    weights = tmp_path / "base.safetensors"
    save_transformer(build_transformer(DiTTrainConfig(**base)), weights)
    fields = {**{k: v for k, v in base.items() if k != "transformer"}, "init_from": str(weights)}
    config = fast_lora_run(fields, tmp_path / "run", {**LORA, "fp8_base": True})
    fresh, model, before = train_frozen(config, trained_models)
    layer = model.single_blocks[0].linear1
    assert layer.weight.dtype == FP8_DTYPE and layer.adapters[LORA_NAME].down.dtype == torch.float32
    assert_reloads_learnt(fresh, model, tmp_path / "run" / "lora_ema.safetensors", before, config)


def test_lora_resume_is_exact(base, tmp_path):
    fields = {**base, "checkpoint_every": 2, "log_every": 1, "gradient_checkpointing": True, "lora": LORA}
    train(DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "straight")}), progress=False)
    resumed = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "resumed")})
    train(resumed, max_steps=3, progress=False)
    train(resumed, resume=True, progress=False)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed", 4)


def test_preserved_rows_learn_the_frozen_base_prediction(base, tmp_path):
    """`extra_data` with `preserve`: its rows are flagged by source, and their target is the model's own prediction
    with the adapter off, the other rows' the clip's velocity."""
    config = DiTTrainConfig(**{**base, "out_dir": str(tmp_path), "lora": LORA})
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    marked = LatentCache(cache.buckets, TextStates(**{**vars(cache.text), "pooled": cache.text.pooled + 100}),
                         cache.meta)  # the second source's rows are told apart by their pooled vector
    merged = merge_caches([cache, marked], [1.0, 1.0])
    stage = Stage(name="video", steps=1, batch_size=8, buckets=[VIDEO])
    gen = torch.Generator().manual_seed(0)
    batch = draw_batch(merged, stage, 0.0, gen, preserve=torch.tensor([False, True]))
    assert torch.equal(batch["preserve"], batch["text_states_2"][:, 0] > 50)
    assert 0 < int(batch["preserve"].sum()) < 8
    batch.update(draw_noise(batch["x0"].shape, config, gen))

    model = build_transformer(config)
    trained_part(model, config)
    with torch.no_grad():  # a fresh adapter leaves the model as it is: preserved rows have nothing to learn
        assert float(velocity_loss(model, {**batch, "preserve": torch.ones(8, dtype=torch.bool)}, config)) == 0.0
        for name, param in model.named_parameters():
            if name.endswith(".up"):
                param.normal_(0, 0.05, generator=gen)

        def predict(scale: float) -> torch.Tensor:
            set_lora_scale(model, LORA_NAME, scale)
            x_t = (1 - batch["t"][:, None, None, None, None]) * batch["x0"] + batch["t"][:, None, None, None, None] * \
                batch["noise"]
            return model(x_t, batch["t"] * 1000.0, batch["text_states"], batch["text_mask"], batch["text_states_2"])

        adapted, frozen = predict(1.0), predict(0.0)
        set_lora_scale(model, LORA_NAME, 1.0)
        rows = batch["preserve"][:, None, None, None, None]
        expected = torch.nn.functional.mse_loss(adapted, torch.where(rows, frozen, batch["noise"] - batch["x0"]))
        torch.testing.assert_close(velocity_loss(model, batch, config), expected, rtol=1e-5, atol=0)
        assert abs(float(velocity_loss(model, {k: v for k, v in batch.items() if k != "preserve"}, config)) -
                   float(expected)) > 1e-3  # the flags change the loss
    assert model.double_blocks[0].img_attn_qkv.adapters[LORA_NAME].scale == 1.0  # put back after the base's pass

    # A run with a preserved extra dataset trains; preserve without LoRA is refused.
    extra = {"data": base["data"], "cache_dir": str(tmp_path / "extra_cache"), "preserve": True}
    build_cache(DiTTrainConfig(**{**base, "lora": LORA, "extra_data": [extra]}), progress=False)
    run = DiTTrainConfig(**{**base, "out_dir": str(tmp_path / "run"), "lora": LORA, "extra_data": [extra],
                            "log_every": 1})
    train(run, progress=False)
    assert len(read_jsonl(tmp_path / "run" / "log.jsonl")) == 4
    with pytest.raises(ValueError, match="preserve .*needs a LoRA run"):
        DiTTrainConfig(**{**base, "extra_data": [extra]})


def test_lora_config_errors_are_clear(base, tmp_path):
    fields = {**base, "out_dir": str(tmp_path)}
    with pytest.raises(ValueError, match="lora: unknown keys.*rnak"):
        DiTTrainConfig(**fields, lora={"rnak": 4})
    with pytest.raises(ValueError, match="rank must be at least 1"):
        DiTTrainConfig(**fields, lora={"rank": 0})
    with pytest.raises(ValueError, match="img_attn_qvk name no linear layer"):
        train(DiTTrainConfig(**fields, lora={"targets": ["img_attn_qvk"]}), progress=False)
    with pytest.raises(ValueError, match="the model has 1 double_blocks"):
        train(DiTTrainConfig(**fields, lora={"blocks": ["double_blocks.1"]}), progress=False)
    with pytest.raises(ValueError, match="fp8_base quantises the frozen base of init_from"):
        DiTTrainConfig(**fields, lora={"fp8_base": True})


def test_training_reports_trainable_parameters_and_memory(base, tmp_path, capsys):
    counts = {}
    for name, lora in (("full", None), ("lora", LORA)):
        out = tmp_path / name
        train(DiTTrainConfig(**{**base, "out_dir": str(out), "lora": lora, "log_every": 1}), progress=False)
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("trainable parameters:"))
        trainable, total = (int(n.replace(",", "")) for n in line.split(":")[1].split(" of "))
        counts[name] = trainable, total
        log = read_jsonl(out / "log.jsonl")
        peaks = [r["rss_peak_mib"] for r in log]  # the CPU's peak resident set: never falls, a process's size
        assert len(peaks) == 4 and 10 < peaks[0] <= peaks[-1] < 1e6
        assert "cuda_peak_mib" not in log[0]
    # Full training trains every weight; LoRA only the adapter, on the same model.
    assert counts["full"][0] == counts["full"][1] == counts["lora"][1] - counts["lora"][0]
    assert 0 < counts["lora"][0] < counts["full"][0]
