"""The latent cache of an image-to-video model: with a LLaVA text encoder folder, each clip's caption is cached as
`LLaVATextEncoder` reads it with the clip's first frame (fitted to the bucket's size), the empty caption with the same
frame; a cache built with the other kind of encoder is refused and rebuilt; I2V training on it learns."""

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
from test_cache import VIDEO, make_setup
from test_train_i2v import image_held_out_loss
from tiny_models import tiny_image_processor, tiny_llava

from hunyuan_video.checkpoint import load_transformer
from hunyuan_video.data.buckets import Bucket
from hunyuan_video.data.dataset import VideoDataset
from hunyuan_video.text_encoder import I2V_TEMPLATE, CLIPTextEncoder, LLaVATextEncoder, build_word_tokenizer
from hunyuan_video.tiny.synth import caption_vocabulary
from hunyuan_video.train.cache import build_cache, cache_fingerprint, first_frame, read_cache
from hunyuan_video.train.dit import (
    DiTTrainConfig,
    build_transformer,
    draw_batch,
    i2v_share,
    train,
)

WIDE = (1, 32, 48)  # a second frame size: the same clips' first frames cropped otherwise


def write_llava(folder: Path) -> None:
    """A tiny random LLaVA in the official `text_encoder_i2v/` layout: model, tokenizer and image processor."""
    tokenizer = build_word_tokenizer([*caption_vocabulary(), re.sub(r"<\|?\w+\|?>", " ", I2V_TEMPLATE)], "llm")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tiny_llava(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny_image_processor().save_pretrained(folder)


def token_replace(fields: dict, **extra) -> dict:
    transformer = {**fields["transformer"], "i2v_condition_type": "token_replace", "guidance_embed": True}
    stages = [{"name": "video", "steps": 4, "batch_size": 2, "buckets": [VIDEO]}]
    return {**fields, "transformer": transformer, "stages": stages, **extra}


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_i2v")
    fields = make_setup(root)
    write_llava(root / "text_encoder_i2v")
    return token_replace(fields, text_encoder=str(root / "text_encoder_i2v"))


@pytest.fixture(scope="module")
def two_sizes(fields):
    """A cache of the video bucket and a one-frame bucket of another size."""
    stages = [{"name": "all", "steps": 1, "batch_size": 2, "buckets": [VIDEO, WIDE]}]
    config = DiTTrainConfig(**{**fields, "stages": stages, "cache_dir": fields["cache_dir"] + "_two"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny tokenizer's unknown words
        build_cache(config, batch_size=3, progress=False)
    return config


def test_cached_states_are_the_llava_encoders_with_the_first_frame(two_sizes):
    config = two_sizes
    fingerprint = cache_fingerprint(config)
    assert fingerprint["text_encoder_kind"] == "llava" and fingerprint["image_embed_interleave"] == 4
    cache = read_cache(config.cache_dir, fingerprint, config.buckets)
    text = cache.text
    assert text.states.shape[0] == text.null_states.shape[0] == 8  # 4 clips at 2 frame sizes
    dataset = VideoDataset(config.data, [Bucket(*b) for b in config.buckets])
    llava = LLaVATextEncoder.from_pretrained(config.text_encoder, max_length=config.text_max_length)
    clip_encoder = CLIPTextEncoder.from_pretrained(config.text_encoder_2)
    seen = set()
    for bucket in config.buckets:
        latents = cache.buckets[bucket]
        for clip, row in zip(VideoDataset(config.data, [Bucket(*bucket)]).groups[Bucket(*bucket)], latents.clip):
            row = int(row)
            seen.add(row)
            frame = first_frame(dataset.load(clip, Bucket(1, *bucket[1:])))
            caption = dataset.samples[clip].caption
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for states, mask, prompt in ((text.states, text.mask, caption), (text.null_states, text.null_mask, "")):
                    want, want_mask = llava([prompt], [frame])
                    n = int(want_mask.sum())
                    assert torch.equal(mask[row], want_mask[0, :mask.shape[1]]) and int(mask[row].sum()) == n
                    torch.testing.assert_close(states[row, :n], want[0, :n], rtol=0, atol=1e-6)
                torch.testing.assert_close(text.pooled[row], clip_encoder([caption])[0], rtol=0, atol=1e-6)
    assert seen == set(range(8))
    video, wide = cache.buckets[VIDEO].clip, cache.buckets[WIDE].clip
    assert (text.states[video[0], :2] - text.states[wide[0], :2]).abs().max() > 1e-3  # the image states differ


def test_caption_dropout_keeps_the_image(two_sizes):
    config = two_sizes
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)
    stage = config.stages[0]
    dropped = draw_batch(cache, stage, 0.999, torch.Generator().manual_seed(1))
    kept = draw_batch(cache, stage, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(dropped["x0"], kept["x0"])  # the same rows of the cache
    for i in range(stage.batch_size):
        row = next(r for r in range(8) if torch.equal(kept["text_states"][i], cache.text.states[r]))
        # the empty caption with the row's own image, not one shared empty caption
        assert torch.equal(dropped["text_states"][i], cache.text.null_states[row])
        assert torch.equal(dropped["text_mask"][i], cache.text.null_mask[row])
    assert not torch.equal(cache.text.null_states[0], cache.text.null_states[1])


def test_a_cache_of_the_other_encoder_kind_is_refused_and_rebuilt(fields, tmp_path):
    text_only = {**fields, "text_encoder": str(Path(fields["text_encoder"]).parent / "text_encoder"),
                 "transformer": {**fields["transformer"], "i2v_condition_type": None, "guidance_embed": False},
                 "cache_dir": str(tmp_path / "cache")}
    plain = DiTTrainConfig(**text_only)
    build_cache(plain, progress=False)
    i2v = DiTTrainConfig(**{**fields, "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ValueError, match="stale: .*text_encoder_kind"):
        read_cache(i2v.cache_dir, cache_fingerprint(i2v), i2v.buckets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_cache(i2v, progress=False)
    cache = read_cache(i2v.cache_dir, cache_fingerprint(i2v), i2v.buckets)
    assert cache.text.null_states.shape[0] == cache.text.states.shape[0] == 4
    with pytest.raises(ValueError, match="stale: .*text_encoder_kind"):
        read_cache(plain.cache_dir, cache_fingerprint(plain), plain.buckets)
    with pytest.raises(ValueError, match="is LLaVA .* but the transformer is text-to-video"):
        build_cache(DiTTrainConfig(**{**text_only, "text_encoder": fields["text_encoder"]}), progress=False)


def test_a_bucket_no_clip_fits_is_refused_before_encoding(fields, tmp_path):
    stages = [{"name": "long", "steps": 1, "batch_size": 2, "buckets": [VIDEO, (33, 32, 32)]}]
    config = DiTTrainConfig(**{**fields, "stages": stages, "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ValueError, match=r"no sample of .* fits buckets \['33x32x32'\]: change the stages"):
        build_cache(config, progress=False)
    assert not (tmp_path / "cache").exists()


def test_llava_cache_trains_image_batches_only(fields):
    def share(**extra) -> float:
        config = DiTTrainConfig(**{**fields, **extra})
        return i2v_share(config, build_transformer(config).config)

    assert share() == 1
    concat = {**fields["transformer"], "i2v_condition_type": "latent_concat", "in_channels": 33,
              "guidance_embed": False}
    with pytest.raises(ValueError, match="is LLaVA: .*i2v_prob 1"):
        share(transformer=concat, i2v_prob=0.5)
    with pytest.raises(ValueError, match="is LLaVA: .*no one-frame buckets"):
        share(transformer=concat, stages=[{"name": "s", "steps": 1, "batch_size": 2, "buckets": [VIDEO, WIDE]}])


def test_i2v_training_on_a_llava_cache_learns(fields, tmp_path):
    stages = [{"name": "video", "steps": 30, "batch_size": 4, "buckets": [VIDEO]}]
    config = DiTTrainConfig(**{**fields, "stages": stages, "out_dir": str(tmp_path)}, lr=3e-3, warmup_steps=5,
                            caption_dropout=0.1, ema_decay=0.9, checkpoint_every=1000, log_every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_cache(config, progress=False)
    cache = read_cache(config.cache_dir, cache_fingerprint(config), config.buckets)

    before = image_held_out_loss(build_transformer(config), cache, config)
    train(config, progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    after = image_held_out_loss(load_transformer(tmp_path / "transformer_ema.safetensors"), cache, config)
    assert after < 0.85 * before, (before, after)
