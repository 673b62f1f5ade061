"""The latent cache: what it stores equals what the VAE and encoders give; a stale or partial cache is refused."""

import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_clip, tiny_llm, tiny_vae

from hunyuan_video.checkpoint import load_vae, save_vae
from hunyuan_video.text_encoder import CLIPTextEncoder, LLMTextEncoder, build_word_tokenizer
from hunyuan_video.tiny.synth import SynthConfig, caption_vocabulary, generate
from hunyuan_video.train.cache import build_cache, cache_fingerprint, read_cache, read_sources
from hunyuan_video.train.dit import DiTTrainConfig

VIDEO, IMAGE = (9, 32, 32), (1, 32, 32)


def make_setup(root: Path, clips: int = 4) -> dict:
    """A tiny synthetic dataset (9 frames, 32x32), a random tiny VAE, a random encoder pair over the captions' words,
    and a config dict over them."""
    generate(root / "data", clips, seed=0, config=SynthConfig(height=32, width=32, frames=9), progress=False)
    save_vae(tiny_vae(), root / "vae.safetensors")
    tok, tok2 = (build_word_tokenizer(caption_vocabulary(), kind) for kind in ("llm", "clip"))
    for name, model, tokenizer in (("text_encoder", tiny_llm(tok), tok), ("text_encoder_2", tiny_clip(tok2), tok2)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return {
        "data": str(root / "data"), "vae": str(root / "vae.safetensors"), "text_encoder": str(root / "text_encoder"),
        "text_encoder_2": str(root / "text_encoder_2"), "cache_dir": str(root / "cache"), "out_dir": str(root / "out"),
        "transformer": {"hidden_size": 64, "heads_num": 4, "mm_double_blocks_depth": 1, "mm_single_blocks_depth": 1,
                        "rope_dim_list": [4, 6, 6], "text_states_dim": 32, "text_states_dim_2": 24,
                        "refiner_depth": 1, "guidance_embed": False},
        "stages": [{"name": "images", "steps": 2, "batch_size": 2, "buckets": [IMAGE]},
                   {"name": "video", "steps": 2, "batch_size": 2, "buckets": [VIDEO, IMAGE],
                    "bucket_weights": [3, 1]}],
        "text_max_length": 32,
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    config = DiTTrainConfig(**make_setup(root))
    build_cache(config, batch_size=3, progress=False)
    return config


def test_cache_holds_the_vae_posterior_and_the_text_states(setup):
    from hunyuan_video.data.dataset import VideoDataset

    cache = read_cache(setup.cache_dir, cache_fingerprint(setup), setup.buckets)
    assert set(cache.buckets) == {VIDEO, IMAGE}
    video, image = cache.buckets[VIDEO], cache.buckets[IMAGE]
    assert video.mean.shape == (4, 16, 3, 4, 4) and image.mean.shape == (4, 16, 1, 4, 4)
    assert (video.std > 0).all() and sorted(video.clip.tolist()) == [0, 1, 2, 3]

    vae = load_vae(setup.vae, dtype=torch.float32)
    dataset = VideoDataset(setup.data, [VIDEO, IMAGE])
    row = 2
    clip = int(video.clip[row])
    posterior = vae.encode(dataset.load(clip, dataset.buckets[1])[None])
    scale = vae.config.scaling_factor
    torch.testing.assert_close(video.mean[row], posterior.mean[0] * scale, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(video.std[row], posterior.std[0] * scale, atol=1e-5, rtol=1e-4)
    first = vae.encode(dataset.load(clip, dataset.buckets[0])[None]).mean[0] * scale  # the image: frame 0 alone
    torch.testing.assert_close(image.mean[image.clip.tolist().index(clip)], first, atol=1e-5, rtol=1e-4)

    llm = LLMTextEncoder.from_pretrained(setup.text_encoder, max_length=setup.text_max_length)
    clip_encoder = CLIPTextEncoder.from_pretrained(setup.text_encoder_2)
    caption = dataset.samples[clip].caption
    states, mask = llm([caption])
    n = int(mask.sum())
    assert cache.text.mask[clip].sum() == n and cache.text.states.shape[1] < setup.text_max_length  # cut padding
    torch.testing.assert_close(cache.text.states[clip, :n], states[0, :n])
    torch.testing.assert_close(cache.text.pooled[clip], clip_encoder([caption])[0])
    null_states, null_mask = llm([""])
    n = int(null_mask.sum())
    torch.testing.assert_close(cache.text.null_states[0, :n], null_states[0, :n])


def test_a_stale_cache_is_refused_with_the_reason(setup, tmp_path):
    fingerprint = cache_fingerprint(setup)
    config = DiTTrainConfig(**{**vars(setup), "stages": [{"name": "s", "steps": 1, "batch_size": 1,
                                                          "buckets": [[5, 32, 32]]}]})
    with pytest.raises(ValueError, match="no samples in buckets \\['5x32x32'\\]"):
        read_cache(setup.cache_dir, cache_fingerprint(config), config.buckets)
    assert set(read_cache(setup.cache_dir, fingerprint, [VIDEO]).buckets) == {VIDEO}  # a subset reads
    other_vae = tmp_path / "vae.safetensors"
    save_vae(tiny_vae(seed=9), other_vae)
    config = DiTTrainConfig(**{**vars(setup), "vae": str(other_vae)})
    with pytest.raises(ValueError, match="stale: vae changed.*hunyuan-video cache"):
        read_cache(setup.cache_dir, cache_fingerprint(config), setup.buckets)
    tuned = load_vae(setup.vae)  # a decoder-only fine-tune keeps the latents, so the cache stays valid
    with torch.no_grad():
        tuned.decoder.conv_out.conv.weight.add_(0.1)
    save_vae(tuned, tmp_path / "decoder_tuned.safetensors")
    config = DiTTrainConfig(**{**vars(setup), "vae": str(tmp_path / "decoder_tuned.safetensors")})
    assert read_cache(setup.cache_dir, cache_fingerprint(config), setup.buckets).meta["clips"] == 4
    config = DiTTrainConfig(**{**vars(setup), "text_encoder_2": setup.text_encoder})
    with pytest.raises(ValueError, match="stale: text_encoder_2 changed"):
        read_cache(setup.cache_dir, cache_fingerprint(config), setup.buckets)
    assert read_cache(setup.cache_dir, fingerprint, setup.buckets).meta["clips"] == 4  # the original still reads


def test_a_missing_or_half_written_cache_is_refused(setup, tmp_path):
    with pytest.raises(ValueError, match="no complete latent cache"):
        read_cache(tmp_path, cache_fingerprint(setup), setup.buckets)
    meta = json.loads((Path(setup.cache_dir) / "cache.json").read_text())
    (tmp_path / "cache.json").write_text(json.dumps({**meta, "format": 0}))
    with pytest.raises(ValueError, match="format 0"):
        read_cache(tmp_path, cache_fingerprint(setup), setup.buckets)


def test_new_text_encoders_re_encode_only_the_captions(setup, tmp_path):
    import shutil

    cache_dir = tmp_path / "cache"
    shutil.copytree(setup.cache_dir, cache_dir)
    shard = cache_dir / "9x32x32" / "00000.safetensors"
    before = shard.stat().st_mtime_ns, shard.read_bytes()
    tok2 = build_word_tokenizer(caption_vocabulary(), "clip")
    tiny_clip(tok2, seed=7).save_pretrained(tmp_path / "clip")
    tok2.save_pretrained(tmp_path / "clip")
    config = DiTTrainConfig(**{**vars(setup), "text_encoder_2": str(tmp_path / "clip"), "cache_dir": str(cache_dir)})
    build_cache(config, batch_size=3, progress=False)
    assert (shard.stat().st_mtime_ns, shard.read_bytes()) == before  # the latents were kept, not re-encoded
    cache = read_cache(cache_dir, cache_fingerprint(config), config.buckets)
    captions = [json.loads(line)["caption"] for line in (Path(setup.data) / "metadata.jsonl").read_text().split("\n")
                if line]
    new_pooled = CLIPTextEncoder.from_pretrained(tmp_path / "clip")(captions)
    torch.testing.assert_close(cache.text.pooled, new_pooled)
    with pytest.raises(ValueError, match="stale: text_encoder_2 changed"):
        read_cache(cache_dir, cache_fingerprint(setup), setup.buckets)

    save_vae(tiny_vae(seed=9), tmp_path / "vae.safetensors")  # a new encoder: everything is encoded again
    config = DiTTrainConfig(**{**vars(config), "vae": str(tmp_path / "vae.safetensors")})
    build_cache(config, batch_size=3, progress=False)
    assert shard.read_bytes() != before[1]
    assert read_cache(cache_dir, cache_fingerprint(config), config.buckets).meta["clips"] == 4


def test_extra_data_has_its_own_cache_and_merges_with_offset_clips_and_weights(setup, tmp_path, capsys):
    extra = tmp_path / "extra"
    generate(extra, 3, seed=0, first=4, config=SynthConfig(height=32, width=32, frames=9, two_object_prob=1),
             progress=False)
    config = DiTTrainConfig(**{**vars(setup), "extra_data": [
        {"data": str(extra), "cache_dir": str(tmp_path / "extra_cache"), "repeats": 3}]})
    assert config.sources[1] == (str(extra), str(tmp_path / "extra_cache"), 3.0)
    build_cache(config, batch_size=3, progress=False)
    assert f"{setup.cache_dir}: up to date" in capsys.readouterr().out  # the first dataset's cache is not redone
    own = read_cache(tmp_path / "extra_cache", cache_fingerprint(config, str(extra)), config.buckets)
    base = read_cache(setup.cache_dir, cache_fingerprint(setup), setup.buckets)
    merged = read_sources(config)
    assert merged.meta["clips"] == 7 and merged.text.states.shape[0] == 7
    video = merged.buckets[VIDEO]
    assert sorted(video.clip.tolist()) == list(range(7))
    torch.testing.assert_close(video.mean[4:], own.buckets[VIDEO].mean)
    assert torch.equal(merged.weights[VIDEO], torch.tensor([1.0] * 4 + [3.0] * 3))
    assert torch.equal(merged.source, torch.tensor([0] * 4 + [1] * 3))  # which dataset each text row came from
    for row in range(7):  # each row's clip index finds its own caption's states, padded with masked zeros
        source, clip = (base, int(video.clip[row])) if row < 4 else (own, int(own.buckets[VIDEO].clip[row - 4]))
        n = source.text.states.shape[1]
        merged_clip = int(video.clip[row])
        torch.testing.assert_close(merged.text.states[merged_clip, :n], source.text.states[clip])
        assert torch.equal(merged.text.mask[merged_clip, :n], source.text.mask[clip])
        assert not merged.text.mask[merged_clip, n:].any()
        torch.testing.assert_close(merged.text.pooled[merged_clip], source.text.pooled[clip])
    assert read_sources(setup).weights is None  # one dataset: drawn uniformly, as before

    with pytest.raises(ValueError, match="its own cache_dir"):
        DiTTrainConfig(**{**vars(setup), "extra_data": [{"data": str(extra), "cache_dir": setup.cache_dir}]})
    with pytest.raises(ValueError, match="repeats must be positive"):
        DiTTrainConfig(**{**vars(setup), "extra_data": [{"data": str(extra), "cache_dir": "c", "repeats": 0}]})
    with pytest.raises(ValueError, match="unknown keys \\['repeat'\\]"):
        DiTTrainConfig(**{**vars(setup), "extra_data": [{"data": str(extra), "cache_dir": "c", "repeat": 2}]})
    missing = DiTTrainConfig(**{**vars(setup), "extra_data": [{"data": str(extra), "cache_dir": str(tmp_path / "no")}]})
    with pytest.raises(ValueError, match="no complete latent cache"):
        read_sources(missing)
