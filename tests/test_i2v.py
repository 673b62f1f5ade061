"""Image-to-video: the LLaVA text encoder and the I2V pipeline against diffusers' HunyuanVideoImageToVideoPipeline
(test-only) on tiny random parts, the layouts' I2V folders, images fitted to sizes and buckets."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from random_weights import randomize_
from tiny_models import (
    diffusers_tiny_vae,
    tiny_clip,
    tiny_image_processor,
    tiny_llava,
    tiny_llava_tokenizer,
    tiny_tokenizers,
)

from hunyuan_video.checkpoint import transformer_config_to_diffusers
from hunyuan_video.config import TRANSFORMER_PRESETS
from hunyuan_video.pipelines import HunyuanVideoImageToVideoPipeline, HunyuanVideoPipeline, describe_model_folder
from hunyuan_video.pipelines.image_to_video import closest_bucket, fit_image, load_image, official_buckets
from hunyuan_video.text_encoder import I2V_TEMPLATE, IMAGE_TOKEN, LLaVATextEncoder

SIZE = dict(height=48, width=32, num_frames=9)
PROMPT, NEGATIVE = "a red ball rolls across the green floor", "bad quality video"
TINY = TRANSFORMER_PRESETS["test-tiny"]
I2V_CONFIGS = {
    "latent_concat": dataclasses.replace(TINY, in_channels=33, guidance_embed=False,
                                         i2v_condition_type="latent_concat"),
    "token_replace": dataclasses.replace(TINY, guidance_embed=True, i2v_condition_type="token_replace"),
}


def diffusers_template(tokenizer, image_tokens: int) -> dict:
    """diffusers' prompt_template dict for I2V_TEMPLATE under `tokenizer` (its defaults are Llama-3's numbers)."""
    start = len(tokenizer(I2V_TEMPLATE.split(IMAGE_TOKEN)[0])["input_ids"])
    return {"template": I2V_TEMPLATE, "crop_start": len(tokenizer(I2V_TEMPLATE.split("{}")[0])["input_ids"]),
            "image_emb_start": start, "image_emb_end": start + image_tokens, "image_emb_len": image_tokens}


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def diffusers_pipeline(kind: str):
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoImageToVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )

    tok = tiny_llava_tokenizer()
    _, tok2 = tiny_tokenizers()
    transformer = HunyuanVideoTransformer3DModel(**transformer_config_to_diffusers(I2V_CONFIGS[kind]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the image processor's note about torchvision
        processor = tiny_image_processor()
    ref = HunyuanVideoImageToVideoPipeline(
        text_encoder=tiny_llava(tok), tokenizer=tok, transformer=randomize_(transformer, 5).eval(),
        vae=diffusers_tiny_vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=tiny_clip(tok2),
        tokenizer_2=tok2, image_processor=processor)
    ref.set_progress_bar_config(disable=True)
    return ref


@pytest.fixture(scope="module", params=list(I2V_CONFIGS))
def pipes(request, tmp_path_factory):
    """diffusers' I2V pipeline of one kind, saved in its layout, and ours loaded from that folder."""
    ref = diffusers_pipeline(request.param)
    path = tmp_path_factory.mktemp(f"diffusers_i2v_{request.param}")
    ref.save_pretrained(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = HunyuanVideoImageToVideoPipeline.from_pretrained(path, dtype=torch.float32, device="cpu")
    ours.progress = False
    return request.param, ref, ours, path


@pytest.mark.parametrize("interleave", [4, 2])
def test_llava_encoder_matches_diffusers(interleave):
    """Prompt + image states and mask equal diffusers' encode_prompt: a batch of two prompt lengths, and a prompt cut
    short by max_length (its assistant header lost)."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE

    assert I2V_TEMPLATE == DEFAULT_PROMPT_TEMPLATE["template"]
    ref = diffusers_pipeline("token_replace")
    tok = ref.tokenizer
    ours = LLaVATextEncoder(ref.text_encoder, tok, ref.image_processor, image_embed_interleave=interleave)
    assert ours.image_tokens == 16
    template = diffusers_template(tok, ours.image_tokens)
    image = random_image(40, 56)
    long_prompt = " ".join(["red ball rolls"] * 100)
    for prompts in ([PROMPT, "a cat walks"], [long_prompt]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want, _, want_mask = ref.encode_prompt(image=[image] * len(prompts), prompt=prompts,
                                                   prompt_template=template, device="cpu",
                                                   image_embed_interleave=interleave)
            got, got_mask = ours(prompts, [image] * len(prompts))
        assert got.shape == want.shape == (len(prompts), 16 // interleave + 256 - 4, 32)
        assert torch.equal(got_mask, want_mask.to(got_mask.dtype))
        real = want_mask.bool()
        torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-6)
    other = ours([PROMPT], [random_image(40, 56, seed=1)])[0]
    assert (other[0, :4] - got[0, :4]).abs().max() > 1e-3  # the image's states follow the image


def _final_latents(store: list):
    def keep(pipe, i, t, tensors):
        store[:] = [tensors["latents"]]
        return {}

    return keep


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_video_matches_diffusers(pipes, cfg):
    """Both kinds, given the same starting latents, give diffusers' final latents and video (to 1e-4), with and
    without true CFG (the negatives read with a black image; diffusers' own call would read a token replace model's
    negatives with image_embed_interleave 2, so its negatives are encoded here as the prompt is)."""
    kind, ref, ours, _ = pipes
    image = random_image(SIZE["height"], SIZE["width"])
    latents = torch.randn(1, 16, 3, 6, 4, generator=torch.Generator().manual_seed(0))
    guidance = dict(guidance_scale=6.0) if kind == "token_replace" else {}
    template = diffusers_template(ref.tokenizer, 16)
    want_latents, got_latents = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_cfg, ours_cfg = {}, {}
        if cfg > 1:
            black = Image.new("RGB", (SIZE["width"], SIZE["height"]), 0)
            interleave = ours.text_encoder.image_embed_interleave
            states, pooled, mask = ref.encode_prompt(image=black, prompt=[NEGATIVE], prompt_template=template,
                                                     device="cpu", image_embed_interleave=interleave)
            ref_cfg = dict(negative_prompt_embeds=states, negative_pooled_prompt_embeds=pooled,
                           negative_prompt_attention_mask=mask, true_cfg_scale=cfg)
            ours_cfg = dict(negative_prompt=NEGATIVE, cfg_scale=cfg)
        want = ref(image=image, prompt=PROMPT, **SIZE, num_inference_steps=3, latents=latents.clone(),
                   output_type="np", prompt_template=template, **guidance,
                   callback_on_step_end=_final_latents(want_latents), **ref_cfg).frames
        out = ours(image, PROMPT, **SIZE, num_inference_steps=3, latents=latents, output_type="pt", **guidance,
                   i2v_stability=True, callback=lambda i, x: got_latents.append(x), **ours_cfg)
    want = torch.from_numpy(want)
    torch.testing.assert_close(got_latents[-1], want_latents[0], rtol=1e-4, atol=1e-5)
    frames = 9 - 4 if kind == "latent_concat" else 9  # a latent-concat video drops its first latent frame's frames
    assert out.frames.shape == want.shape == (1, frames, 48, 32, 3)
    assert (out.frames - want).abs().max() / want.abs().max() < 1e-4
    assert want.std() > 0.01
    if kind == "token_replace":  # the first latent frame stays the image's
        image_latent = ours.vae.encode(fit_image(image, 48, 32)[None, :, None]).mode() * ours.vae.config.scaling_factor
        torch.testing.assert_close(got_latents[-1][:, :, :1], image_latent)


def test_stability_and_seed(pipes):
    kind, _, ours, _ = pipes
    image = random_image(SIZE["height"], SIZE["width"])
    a = ours(image, PROMPT, **SIZE, num_inference_steps=2, seed=3, output_type="latent")
    b = ours(image, PROMPT, **SIZE, num_inference_steps=2, seed=3, output_type="latent")
    c = ours(image, PROMPT, **SIZE, num_inference_steps=2, seed=3, output_type="latent", i2v_stability=True)
    assert a.seed == 3 and torch.equal(a.frames, b.frames)
    assert 0 < (a.frames - c.frames).abs().max() < 0.1


def test_offload_and_a_step_cache_keep_the_image_path_exact(pipes):
    """CPU offload (blocks streamed, the VAE brought for the image's encode) and a first-block cache that never
    skips give the same latents as the plain run."""
    _, _, ours, _ = pipes
    image = random_image(SIZE["height"], SIZE["width"])
    plain = ours(image, PROMPT, **SIZE, num_inference_steps=2, seed=3, output_type="latent").frames
    ours.enable_model_cpu_offload("cpu").enable_step_cache("fbcache", 0.0)
    try:
        cached = ours(image, PROMPT, **SIZE, num_inference_steps=2, seed=3, output_type="latent")
    finally:
        ours.disable_step_cache().to("cpu")
    assert cached.cache_steps == {"full": 2, "skipped": 0} and torch.equal(cached.frames, plain)


def test_kinds_refuse_the_other_task(pipes, tmp_path):
    from tiny_models import write_official_model

    kind, _, ours, path = pipes
    assert describe_model_folder(path)["kind"] == f"image-to-video ({kind})"
    with pytest.raises(ValueError, match="needs an image"):
        HunyuanVideoPipeline.from_pretrained(path, dtype=torch.float32, device="cpu")
    with pytest.raises(ValueError, match="text-to-video model: it takes no image"):
        HunyuanVideoImageToVideoPipeline.from_pretrained(write_official_model(tmp_path / "ckpts"), device="cpu")
    with pytest.raises(ValueError, match="both height and width"):
        ours(random_image(48, 32), PROMPT, height=48)
    with pytest.raises(ValueError, match="width must be a multiple of 16"):
        ours(random_image(48, 32), PROMPT, height=48, width=40, num_frames=9)


def test_images_are_read_fitted_and_bucketed(tmp_path):
    assert (768, 1280) not in official_buckets(960)
    assert closest_bucket(720, 1280, 960) == (704, 1280)  # 16:9 at 720p
    assert closest_bucket(1000, 1000, 960) == (960, 960)
    assert all(h % 32 == 0 and w % 32 == 0 and h * w <= 960**2 for h, w in official_buckets(960))
    picture = Image.new("RGB", (100, 50), (255, 0, 0))
    picture.paste((0, 0, 255), (0, 0, 25, 50))  # a blue band on the left, cropped off when the width is cut
    fitted = fit_image(picture, 32, 32)
    assert fitted.shape == (3, 32, 32) and fitted.min() >= -1 and fitted.max() <= 1
    torch.testing.assert_close(fitted[:, :, 16], torch.tensor([1.0, -1.0, -1.0])[:, None].expand(3, 32))
    assert fitted[2, :, 0].mean() < 0  # the band is cropped off: red at the left edge too
    path = tmp_path / "frame.png"
    picture.save(path)
    assert load_image(path).size == (100, 50)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read .*broken.png as an image"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="no image file at"):
        load_image(tmp_path / "missing.png")
