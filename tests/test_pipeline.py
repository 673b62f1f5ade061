import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_models import (
    diffusers_tiny_transformer,
    diffusers_tiny_vae,
    tiny_clip,
    tiny_llm,
    tiny_tokenizers,
    write_official_model,
)

from hunyuan_video.checkpoint import load_transformer, read_state_dict, save_transformer
from hunyuan_video.config import TransformerConfig, config_to_dict
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.pipelines import (
    NEGATIVE_PROMPT,
    GenerationDefaults,
    HunyuanVideoPipeline,
    describe_model_folder,
    find_model_folder,
)
from hunyuan_video.text_encoder import VIDEO_TEMPLATE

# latents (1, 16, 3, 6, 4): up to 4 latent frames diffusers' VAE decodes in one piece, as ours (and the official
# enable_tiling(), 64-frame tiles) does; beyond that diffusers cuts 16-frame tiles by default.
SIZE = dict(height=48, width=32, num_frames=9)
PROMPT, NEGATIVE = "a red ball rolls across the green floor", "bad quality video"


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    """diffusers' own pipeline over tiny random parts, saved by diffusers in its layout."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers import HunyuanVideoPipeline as DiffusersPipeline

    tok, tok2 = tiny_tokenizers()
    ref = DiffusersPipeline(text_encoder=tiny_llm(tok), tokenizer=tok, transformer=diffusers_tiny_transformer(),
                            vae=diffusers_tiny_vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                            text_encoder_2=tiny_clip(tok2), tokenizer_2=tok2)
    ref.set_progress_bar_config(disable=True)
    path = tmp_path_factory.mktemp("diffusers_model")
    ref.save_pretrained(path)
    return ref, path


@pytest.fixture(scope="module")
def pipe(diffusers_folder):
    ours = HunyuanVideoPipeline.from_pretrained(diffusers_folder[1], dtype=torch.float32, device="cpu")
    ours.progress = False
    return ours


def _final_latents(store: list):
    """A diffusers step-end callback keeping the latents after the last step."""

    def keep(pipe, i, t, tensors):
        store[:] = [tensors["latents"]]
        return {}

    return keep


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_video_matches_diffusers(diffusers_folder, pipe, cfg):
    ref, _ = diffusers_folder
    latents = torch.randn(1, 16, 3, 6, 4, generator=torch.Generator().manual_seed(0))
    ref_cfg = dict(negative_prompt=NEGATIVE, true_cfg_scale=cfg) if cfg > 1 else {}
    want_latents, got_latents = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ref(PROMPT, **SIZE, num_inference_steps=3, latents=latents.clone(), output_type="np",
                   prompt_template={"template": VIDEO_TEMPLATE, "crop_start": None},
                   callback_on_step_end=_final_latents(want_latents), **ref_cfg).frames
    want = torch.from_numpy(want)  # (B, T, H, W, 3) in [0, 1]
    ours_cfg = dict(negative_prompt=NEGATIVE, cfg_scale=cfg) if cfg > 1 else {}
    out = pipe(PROMPT, **SIZE, num_inference_steps=3, latents=latents, output_type="pt", **ours_cfg,
               callback=lambda i, x: got_latents.append(x))
    torch.testing.assert_close(got_latents[-1], want_latents[0], rtol=1e-4, atol=1e-5)
    assert out.frames.shape == want.shape == (1, 9, 48, 32, 3) and out.seed is None
    assert (out.frames - want).abs().max() / want.abs().max() < 1e-4
    assert want.std() > 0.01  # a real video, not a constant
    if cfg == 1.0:
        frames = pipe(PROMPT, **SIZE, num_inference_steps=3, latents=latents).frames
        assert frames.dtype == np.uint8 and np.abs(frames / 255.0 - want.numpy()).max() <= 0.5 / 255 + 1e-4


def test_seed_gives_the_same_video_and_is_reported(pipe):
    run = lambda **kw: pipe(PROMPT, **SIZE, num_inference_steps=1, output_type="latent", **kw)
    a, b = run(seed=7), run(generator=torch.Generator().manual_seed(7))
    assert a.seed == b.seed == 7 and torch.equal(a.frames, b.frames)
    noise = torch.randn(1, 16, 3, 6, 4, generator=torch.Generator().manual_seed(7))  # CPU, float32
    assert torch.equal(run(latents=noise).frames, a.frames)
    c = run()
    assert isinstance(c.seed, int) and torch.equal(run(seed=c.seed).frames, c.frames)


def test_true_cfg_defaults_to_the_official_negative_prompt(pipe):
    run = lambda **kw: pipe(PROMPT, **SIZE, num_inference_steps=1, seed=3, cfg_scale=2.0, output_type="latent",
                            **kw).frames
    default = run()
    assert torch.equal(default, run(negative_prompt=NEGATIVE_PROMPT))
    assert not torch.allclose(default, run(negative_prompt="red ball"))


def test_callback_sees_every_step(pipe):
    steps = []
    pipe(PROMPT, **SIZE, num_inference_steps=4, seed=0, output_type="latent",
         callback=lambda i, latents: steps.append((i, tuple(latents.shape))))
    assert steps == [(i, (1, 16, 3, 6, 4)) for i in range(4)]


def test_bad_sizes_name_the_nearest_valid(pipe):
    with pytest.raises(ValueError, match="4k \\+ 1.* 9 or 13"):
        pipe(PROMPT, height=48, width=32, num_frames=11)
    with pytest.raises(ValueError, match="height must be a multiple of 16.* 48 or 64"):
        pipe(PROMPT, height=50, width=32, num_frames=9)
    with pytest.raises(ValueError, match="width.* 16"):
        pipe(PROMPT, height=48, width=8, num_frames=9)
    with pytest.raises(ValueError, match="latents must be shaped"):
        pipe(PROMPT, **SIZE, latents=torch.zeros(1, 16, 2, 6, 4))
    with pytest.raises(ValueError, match="output_type"):
        pipe(PROMPT, **SIZE, output_type="pil")
    with pytest.raises(ValueError, match="no prompt"):
        pipe([], **SIZE)
    with pytest.raises(ValueError, match="at least 1"):
        pipe(PROMPT, **SIZE, num_inference_steps=0)
    with pytest.raises(ValueError, match="2 negative prompts for 1"):
        pipe(PROMPT, **SIZE, cfg_scale=2.0, negative_prompt=["a", "b"])
    with pytest.warns(UserWarning, match="cfg_scale > 1"):
        pipe(PROMPT, **SIZE, num_inference_steps=1, negative_prompt=NEGATIVE, output_type="latent")


def test_offload_gives_the_same_video_and_streams_the_blocks(pipe):
    latents = torch.randn(1, 16, 3, 6, 4, generator=torch.Generator().manual_seed(1))
    want = pipe(PROMPT, **SIZE, num_inference_steps=2, latents=latents, output_type="pt").frames
    pipe.enable_model_cpu_offload("cpu")  # no GPU here: record what is brought to the device, and when
    loans, bring = [], pipe.offload.bring
    pipe.offload.bring = lambda tensors: loans.append({id(t) for t in tensors}) or bring(tensors)
    try:
        got = pipe(PROMPT, **SIZE, num_inference_steps=2, latents=latents, output_type="pt").frames
    finally:
        del pipe.offload.bring
        pipe.to("cpu")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    ids = lambda module: {id(t) for t in [*module.parameters(), *module.buffers()]}
    tr = pipe.transformer
    blocks = [ids(b) for b in [*tr.double_blocks, *tr.single_blocks]]
    rest = ids(tr) - set().union(*blocks)
    assert loans == [ids(pipe.text_encoder), ids(pipe.text_encoder_2), rest, *blocks, *blocks, ids(pipe.vae)]
    assert all(not b._forward_pre_hooks and not b._forward_hooks for b in tr.double_blocks)


def test_layout_detection(diffusers_folder, pipe, tmp_path):
    folder = find_model_folder(diffusers_folder[1])
    assert folder.layout == "diffusers" and folder.tokenizer_2.name == "tokenizer_2"
    info = describe_model_folder(diffusers_folder[1])
    n = sum(p.numel() for p in pipe.transformer.parameters())
    assert info["parts"]["transformer"]["parameters"] == {"float32": n}
    assert info["parts"]["text_encoder"]["config"]["model_type"] == "llama"
    official = find_model_folder(write_official_model(tmp_path / "ckpts").parent)  # the parent of ckpts/ works too
    assert official.layout == "official" and official.tokenizer == official.text_encoder
    assert official.transformer.name == "mp_rank_00_model_states.pt" and official.transformer_config is not None
    assert find_model_folder(tmp_path / "ckpts" / "hunyuan-video-t2v-720p") == official
    info = describe_model_folder(tmp_path / "ckpts")
    n = sum(p.numel() for p in HunyuanVideoPipeline.from_pretrained(tmp_path, torch.float32, "cpu").transformer
            .parameters())
    assert info["parts"]["transformer"]["parameters"] == {"float32": n}
    assert info["parts"]["vae"]["config"]["latent_channels"] == 16
    # Without a config.json the official checkpoint's config is read from its shapes (heads of 128, as released).
    config = TransformerConfig(hidden_size=128, heads_num=1, mm_double_blocks_depth=1, mm_single_blocks_depth=2,
                               text_states_dim=32, text_states_dim_2=24, refiner_depth=1)
    transformers = tmp_path / "ckpts" / "hunyuan-video-t2v-720p" / "transformers"
    torch.save({"module": HunyuanVideoTransformer(config).state_dict()}, transformers / "mp_rank_00_model_states.pt")
    (transformers / "config.json").unlink()
    assert describe_model_folder(tmp_path)["parts"]["transformer"]["config"] == config_to_dict(config)
    # save_transformer's safetensors carry their config in the metadata.
    (transformers / "mp_rank_00_model_states.pt").unlink()
    save_transformer(pipe.transformer, transformers / "mp_rank_00_model_states.safetensors")
    assert describe_model_folder(tmp_path)["parts"]["transformer"]["config"] == config_to_dict(pipe.transformer.config)
    (tmp_path / "ckpts" / "text_encoder_2").rename(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="lacks text_encoder_2"):
        find_model_folder(tmp_path)
    with pytest.raises(ValueError, match="expected one of these layouts.*mp_rank_00_model_states.pt.*tokenizer_2"):
        find_model_folder(tmp_path / "elsewhere")


def test_guidance_scale_needs_a_guidance_embedding(pipe):
    plain = HunyuanVideoPipeline(HunyuanVideoTransformer(replace(pipe.transformer.config, guidance_embed=False)),
                                 pipe.vae, pipe.text_encoder, pipe.text_encoder_2)
    with pytest.raises(ValueError, match="no guidance embedding: use cfg_scale > 1"):
        plain(PROMPT, **SIZE, num_inference_steps=1, guidance_scale=4.0)
    run = lambda p, **kw: p(PROMPT, **SIZE, num_inference_steps=1, seed=0, output_type="latent", **kw).frames
    assert run(plain).shape == (1, 16, 3, 6, 4)  # the defaults' guidance is not the caller's: no error
    assert not torch.equal(run(pipe, guidance_scale=1.0), run(pipe, guidance_scale=9.0))


def test_the_defaults_fill_what_a_call_leaves_out(diffusers_folder, pipe):
    explicit = dict(**SIZE, num_inference_steps=2, cfg_scale=2.0, negative_prompt="red ball", flow_shift=3.0,
                    guidance_scale=4.0)
    want = pipe(PROMPT, seed=5, output_type="latent", **explicit).frames
    assert pipe.defaults == GenerationDefaults()  # no generate.json in the folder: the official settings
    settings = dict(height=48, width=32, frames=9, steps=2, cfg_scale=2.0, negative_prompt="red ball", shift=3.0,
                    guidance=4.0, dtype="float32")
    folder_file = diffusers_folder[1] / "generate.json"
    folder_file.write_text(json.dumps(settings))
    try:
        configured = HunyuanVideoPipeline.from_pretrained(diffusers_folder[1], device="cpu")
        folder_file.write_text(json.dumps({**settings, "num_frames": 9}))
        with pytest.raises(ValueError, match="unknown settings num_frames"):
            HunyuanVideoPipeline.from_pretrained(diffusers_folder[1], device="cpu")
    finally:
        folder_file.unlink()
    configured.progress = False
    assert configured.defaults == GenerationDefaults(**settings) and configured.dtype == torch.float32
    torch.testing.assert_close(configured(PROMPT, seed=5, output_type="latent").frames, want, rtol=0, atol=0)


def test_load_transformer_reads_the_config_the_layout_does(tmp_path):
    official = find_model_folder(write_official_model(tmp_path / "ckpts"))
    config = describe_model_folder(official.root)["parts"]["transformer"]["config"]
    assert config_to_dict(load_transformer(official.transformer).config) == config  # head dim 16: from config.json
    # A config.json of something else beside the weights (a training config) is not the transformer's.
    weights = tmp_path / "run" / "transformer.pt"
    weights.parent.mkdir()
    released = TransformerConfig(hidden_size=128, heads_num=1, mm_double_blocks_depth=1, mm_single_blocks_depth=1,
                                 text_states_dim=32, text_states_dim_2=24, refiner_depth=1)
    torch.save(HunyuanVideoTransformer(released).state_dict(), weights)
    (weights.parent / "config.json").write_text(json.dumps({"lr": 1e-3, "transformer": {"hidden_size": 64}}))
    assert load_transformer(weights).config == released


def test_unreadable_weights_name_the_file(tmp_path):
    for name in ("model.safetensors", "model.pt"):
        (tmp_path / name).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
        with pytest.raises(ValueError, match=f"{tmp_path / name}.* (incomplete or corrupt|incomplete, corrupt)"):
            read_state_dict(tmp_path / name)
