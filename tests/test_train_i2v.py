"""Image-to-video transformer training: the first latent frame as the condition in an `i2v_prob` share of the
batches (token replace: clean, out of the loss; latent concat: the extra channels), a loss that goes down, an exact
resume, clear errors."""

import dataclasses

import pytest
import torch
from test_cache import VIDEO, make_setup
from test_train_dit import assert_same_run

from hunyuan_video.config import TransformerConfig, config_from_dict
from hunyuan_video.train.cache import build_cache, cache_fingerprint, read_cache
from hunyuan_video.train.dit import (
    DiTTrainConfig,
    build_transformer,
    draw_batch,
    draw_noise,
    i2v_share,
    image_condition,
    train,
    velocity_loss,
)

VIDEO_ONLY = [{"name": "video", "steps": 4, "batch_size": 2, "buckets": [VIDEO]}]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit_i2v")
    fields = make_setup(root)
    build_cache(DiTTrainConfig(**fields), progress=False)
    return fields


def with_kind(fields: dict, kind: str, **extra) -> dict:
    transformer = {**fields["transformer"], "i2v_condition_type": kind}
    if kind == "latent_concat":
        transformer["in_channels"] = 33
    else:
        transformer["guidance_embed"] = True
    return {**fields, "transformer": transformer, "stages": VIDEO_ONLY, **extra}


def image_held_out_loss(model, cache, config) -> float:
    """The mean velocity loss of 8 image batches of `config`'s first stage, with the same batches, times and noise at
    every call (before and after training)."""
    gen = torch.Generator().manual_seed(123)
    total = 0.0
    with torch.no_grad():
        for _ in range(8):
            batch = draw_batch(cache, config.stages[0], 0.0, gen)
            total += float(velocity_loss(model, {**batch, **draw_noise(batch["x0"].shape, config, gen),
                                                 "image": True}, config))
    return total / 8


def test_the_condition_and_the_frames_of_the_loss():
    x0, x_t = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 16, 3, 4, 4)
    plain = TransformerConfig()
    assert image_condition(plain, x0, x_t, False) == (x_t, slice(None))
    replaced, frames = image_condition(dataclasses.replace(plain, i2v_condition_type="token_replace"), x0, x_t, True)
    assert torch.equal(replaced[:, :, 0], x0[:, :, 0]) and torch.equal(replaced[:, :, 1:], x_t[:, :, 1:])
    assert frames == slice(1, None)
    concat = dataclasses.replace(plain, in_channels=33, i2v_condition_type="latent_concat")
    image, frames = image_condition(concat, x0, x_t, True)
    assert image.shape == (2, 33, 3, 4, 4) and frames == slice(None)
    assert torch.equal(image[:, :16], x_t) and torch.equal(image[:, 16:32, 0], x0[:, :, 0])
    assert not image[:, 16:32, 1:].any() and torch.equal(image[:, 32], torch.tensor([1.0, 0, 0])[:, None, None]
                                                          .expand(2, 3, 4, 4))
    text_only, _ = image_condition(concat, x0, x_t, False)
    assert not text_only[:, 16:].any()


def test_token_replace_loss_ignores_the_first_frames_noise(base):
    config = DiTTrainConfig(**with_kind(base, "token_replace"))
    model = build_transformer(config)
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    gen = torch.Generator().manual_seed(0)
    batch = draw_batch(cache, config.stages[0], 0.0, gen)
    batch.update(draw_noise(batch["x0"].shape, config, gen))
    other = dict(batch, noise=batch["noise"].clone())
    other["noise"][:, :, 0] = torch.randn_like(other["noise"][:, :, 0])
    with torch.no_grad():
        assert torch.equal(velocity_loss(model, batch, config), velocity_loss(model, other, config))
        other["noise"][:, :, 1] += 1
        assert not torch.equal(velocity_loss(model, batch, config), velocity_loss(model, other, config))


def test_loss_decreases_with_i2v_prob(base, tmp_path):
    stages = [{"name": "video", "steps": 40, "batch_size": 4, "buckets": [VIDEO]}]
    config = DiTTrainConfig(**with_kind(base, "latent_concat", stages=stages, out_dir=str(tmp_path)), i2v_prob=0.5,
                            lr=3e-3, warmup_steps=5, caption_dropout=0.0, ema_decay=0.9, checkpoint_every=1000)
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)

    before = image_held_out_loss(build_transformer(config), cache, config)
    train(config, progress=False)
    from hunyuan_video.checkpoint import load_transformer

    trained = load_transformer(tmp_path / "transformer_ema.safetensors")
    assert trained.config.i2v_condition_type == "latent_concat"
    after = image_held_out_loss(trained, cache, config)
    assert after < 0.7 * before, (before, after)


def test_resume_is_exact_with_i2v_prob(base, tmp_path):
    fields = with_kind(base, "latent_concat", checkpoint_every=2, log_every=1, i2v_prob=0.5)
    straight = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "straight")})
    train(straight, progress=False)
    resumed = DiTTrainConfig(**{**fields, "out_dir": str(tmp_path / "resumed")})
    train(resumed, max_steps=3, progress=False)
    train(resumed, resume=True, progress=False)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed", 4)


def test_i2v_config_errors_are_clear(base):
    def share(fields: dict, **extra) -> float:
        config = DiTTrainConfig(**{**fields, **extra})
        return i2v_share(config, config_from_dict(TransformerConfig, config.transformer))

    assert share(base) == 0 and share(with_kind(base, "token_replace")) == 1
    assert share(with_kind(base, "latent_concat"), i2v_prob=0.25) == 0.25
    with pytest.raises(ValueError, match="i2v_prob needs an image-to-video transformer"):
        share(base, i2v_prob=0.5)
    with pytest.raises(ValueError, match="i2v_prob must be 1, got 0.5"):
        share(with_kind(base, "token_replace"), i2v_prob=0.5)
    with pytest.raises(ValueError, match="drop the one-frame buckets"):
        share(with_kind(base, "token_replace", stages=base["stages"]))
    with pytest.raises(ValueError, match="leave sample_prompts empty"):
        share(with_kind(base, "latent_concat"), sample_prompts=["a red circle"])
    with pytest.raises(ValueError, match="i2v_prob must be in"):
        DiTTrainConfig(**base, i2v_prob=1.5)
