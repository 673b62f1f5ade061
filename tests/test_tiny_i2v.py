"""The embedded tiny image-to-video model: its LLaVA built around the tiny Llama (`tiny make-llava`), its
token-replace transformer made from the text-to-video one (`tiny to-i2v`), its folder beside the text-to-video
model, and `generate --image` without --model."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlamaForCausalLM, LlavaForConditionalGeneration, PreTrainedTokenizerFast

from hunyuan_video import cli
from hunyuan_video.checkpoint import load_transformer
from hunyuan_video.data.dataset import frames_to_tensor
from hunyuan_video.pipelines import GenerationDefaults, HunyuanVideoImageToVideoPipeline, find_model_folder
from hunyuan_video.text_encoder import LLaVATextEncoder
from hunyuan_video.tiny.i2v import make_tiny_llava, template_words_missing
from hunyuan_video.tiny.synth import SynthConfig, render_clip, sample_clip
from hunyuan_video.video_io import to_uint8

TINY = Path(cli.__file__).parent / cli.TINY_MODEL
T2V_WEIGHTS = TINY / "hunyuan-video-t2v-720p" / "transformers" / "mp_rank_00_model_states.safetensors"
CLIP = sample_clip(0, 0, "test")  # a held-out clip of the synthetic world
LIGHT = SynthConfig(light_prob=1.0)  # the same clip on a light background (white, light gray or light blue)
# dB: the generated first frame against the VAE's own round trip of the image. Not exact: the decoder's GroupNorm
# pools its statistics over every frame, so the later frames shift the first one (25 to 38 dB on held-out clips
# with the untrained I2V weights); a video that does not start from the image scores 10 to 20 dB.
FIRST_FRAME_PSNR = 22.0
# dB: the generated first frame against the image itself; BENCHMARKS.md's 100 held-out clips average 32.4 on the
# world's backgrounds and 29.7 on light ones (a VAE that draws light pictures grey: 8.5).
IMAGE_PSNR = 24.0


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("llava") / "text_encoder_i2v"
    make_tiny_llava(TINY / "text_encoder", out)
    return out


def test_make_llava_keeps_the_llama_and_reproduces_the_shipped_encoder(llava_dir):
    llama = LlamaForCausalLM.from_pretrained(TINY / "text_encoder").eval()
    llava = LlavaForConditionalGeneration.from_pretrained(llava_dir).eval()
    old = llama.config.vocab_size
    new = llava.model.language_model.state_dict()
    for key, value in llama.model.state_dict().items():
        torch.testing.assert_close(new[key][:old] if key == "embed_tokens.weight" else new[key], value, rtol=0,
                                   atol=0)
    torch.testing.assert_close(llava.lm_head.weight[:old], llama.lm_head.weight, rtol=0, atol=0)
    # The template's missing words and <image> were appended; every text of the old words reads as before.
    missing = template_words_missing(PreTrainedTokenizerFast.from_pretrained(TINY / "text_encoder"))
    assert missing and llava.config.text_config.vocab_size == old + len(missing) + 1
    ids = torch.tensor([[0, *range(6, old)]])  # BOS and every ordinary word
    with torch.no_grad():
        want = llama.model(input_ids=ids, output_hidden_states=True).hidden_states
        got = llava.model.language_model(input_ids=ids, output_hidden_states=True).hidden_states
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # `tiny make-llava` on the shipped Llama with its defaults writes the shipped text_encoder_i2v (float32's default
    # tolerance: the projector's scale comes from a forward pass, whose last bits may differ between CPUs).
    shipped = LlavaForConditionalGeneration.from_pretrained(TINY / "text_encoder_i2v").state_dict()
    assert shipped.keys() == llava.state_dict().keys()
    for key, value in llava.state_dict().items():
        torch.testing.assert_close(shipped[key], value, msg=key)
    assert json.loads((TINY / "text_encoder_i2v" / "tokenizer.json").read_text()) == json.loads(
        (llava_dir / "tokenizer.json").read_text())


def test_the_llava_encoder_reads_16_image_states_then_the_prompt_at_a_words_scale(llava_dir):
    encoder = LLaVATextEncoder.from_pretrained(llava_dir, dtype=torch.float32, device="cpu")
    assert encoder.image_tokens == 64 and encoder.image_embed_interleave == 4
    captions = [CLIP.caption, "a red circle moves to the right"]
    frame = render_clip(CLIP)[0]
    states, mask = encoder(captions, [frame, frame])
    words = [len(c.split()) for c in captions]
    assert mask[:, :16].all() and mask.sum(1).tolist() == [16 + n for n in words]
    image, text = states[0, :16].norm(dim=-1).mean(), states[0, 16:16 + words[0]].norm(dim=-1).mean()
    assert 0.5 < image / text < 2  # the projector's scale: image states on the footing of the words
    # Image states go in front: a different image changes them (and, through attention, the text's states).
    other, _ = encoder(captions[:1], [np.full_like(frame, 255)])
    assert not torch.allclose(other[0, :16], states[0, :16])


def test_make_llava_refuses_bad_input(tmp_path):
    with pytest.raises(SystemExit, match="^hunyuan-video tiny make-llava: --image-size 60 is not a multiple"):
        cli.main(["tiny", "make-llava", str(TINY / "text_encoder"), str(tmp_path / "x"), "--image-size", "60"])
    with pytest.raises(SystemExit, match="OUT_DIR must differ"):
        cli.main(["tiny", "make-llava", str(TINY / "text_encoder"), str(TINY / "text_encoder")])
    assert not (tmp_path / "x").exists()


def test_to_i2v_computes_the_text_to_video_model_with_the_first_frame_at_t0(tmp_path, capsys):
    out = tmp_path / "transformers" / "mp_rank_00_model_states.safetensors"
    assert cli.main(["tiny", "to-i2v", str(T2V_WEIGHTS), str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    t2v = load_transformer(T2V_WEIGHTS, dtype=torch.float32, device="cpu")
    i2v = load_transformer(out)
    assert i2v.config.i2v_condition_type == "token_replace" and i2v.config.guidance_embed
    assert json.loads((out.parent / "config.json").read_text())["i2v_condition_type"] == "token_replace"
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 3, 4, 4, generator=generator)  # three latent frames
    states, pooled = torch.randn(2, 7, 128, generator=generator), torch.randn(2, 64, generator=generator)
    mask = torch.ones(2, 7)
    mask[1, 5:] = 0
    t, zero = torch.tensor([300.0, 800.0]), torch.zeros(2)
    with torch.no_grad():
        first_at_0 = t2v.head(t2v.blocks(t2v.embed(x, t, states, mask, pooled, first_frame_t=zero)))
        for guidance in (1000.0, 6000.0):  # the guidance embedding adds nothing yet, whatever its value
            g = torch.full((2,), guidance)
            torch.testing.assert_close(i2v(x, t, states, mask, pooled, g), first_at_0, rtol=0, atol=1e-6)
            torch.testing.assert_close(i2v(x, zero, states, mask, pooled, g), t2v(x, zero, states, mask, pooled),
                                       rtol=0, atol=1e-6)
        assert (i2v(x, t, states, mask, pooled, g) - t2v(x, t, states, mask, pooled)).abs().max() > 0.1
    with pytest.raises(SystemExit, match="^hunyuan-video tiny to-i2v: .* is not a text-to-video transformer"):
        cli.main(["tiny", "to-i2v", str(out), str(tmp_path / "again.safetensors")])
    with pytest.raises(SystemExit, match="DST must be a .safetensors file"):
        cli.main(["tiny", "to-i2v", str(T2V_WEIGHTS), str(tmp_path / "x.pt")])
    assert not (tmp_path / "again.safetensors").exists()


def test_the_embedded_folder_holds_both_models_with_their_own_settings(capsys):
    t2v, i2v = find_model_folder(TINY, image=False), find_model_folder(TINY, image=True)
    assert not t2v.image_to_video and i2v.image_to_video and i2v.text_encoder.name == "text_encoder_i2v"
    assert i2v.vae.is_dir() and not i2v.vae.is_symlink() and i2v.vae.resolve() != t2v.vae.resolve()  # its own VAE
    root = json.loads((TINY / "generate.json").read_text())
    own = json.loads((TINY / "hunyuan-video-i2v-720p" / "generate.json").read_text())
    assert GenerationDefaults.read(*t2v.settings_folders) == GenerationDefaults(**root)
    assert GenerationDefaults.read(*i2v.settings_folders) == GenerationDefaults(**{**root, **own})
    own_weights = [p for p in (*i2v.transformer.parent.iterdir(), *i2v.text_encoder.iterdir())
                   if p.suffix == ".safetensors"]
    assert sum(p.stat().st_size for p in own_weights) <= 24 * 2**20  # beside the text-to-video model's 56 MiB
    assert cli.main(["info", str(TINY)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{TINY} holds two models: text-to-video (generate PROMPT) and image-to-video "
                              "(token_replace) (generate --image PATH PROMPT)")
    assert "text_encoder_i2v" in printed and "i2v_condition_type: token_replace" in printed


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-12)))


@pytest.mark.parametrize("config", [SynthConfig(), LIGHT], ids=["world", "light background"])
def test_generate_with_an_image_and_no_model_starts_from_the_image(tmp_path, capsys, config):
    clip = sample_clip(CLIP.index, 0, "test", config)
    frame = render_clip(clip, config)[0]
    Image.fromarray(frame).save(tmp_path / "first.png")
    frames = tmp_path / "frames"
    assert cli.main(["generate", "--image", str(tmp_path / "first.png"), clip.caption, "-o", str(frames),
                     "--seed", "0", "--device", "cpu"]) == 0
    assert str(frames) in capsys.readouterr().out
    video = np.stack([np.asarray(Image.open(p)) for p in sorted(frames.glob("*.png"))])
    defaults = GenerationDefaults.read(*find_model_folder(TINY, image=True).settings_folders)
    assert video.shape == (defaults.frames, defaults.height, defaults.width, 3)
    pipe = HunyuanVideoImageToVideoPipeline.from_pretrained(TINY, device="cpu")
    with torch.no_grad():
        image = frames_to_tensor(frame[None])[None]
        round_trip = to_uint8(pipe.vae.decode(pipe.vae.encode(image).mode())[0].permute(1, 2, 3, 0).numpy())[0]
    assert _psnr(video[0], round_trip) >= FIRST_FRAME_PSNR
    assert _psnr(video[0], frame) >= IMAGE_PSNR  # the picture itself, light or not (a grey video: ~8 dB)
    assert _psnr(video[-1], round_trip) < _psnr(video[0], round_trip)  # a video, not the image repeated


def test_a_text_only_call_to_the_embedded_folder_is_the_text_to_video_model(tmp_path):
    from hunyuan_video.pipelines import HunyuanVideoPipeline

    pipe = HunyuanVideoPipeline.from_pretrained(TINY, device="cpu")
    assert pipe.transformer.config.i2v_condition_type is None
    with pytest.raises(SystemExit, match="^hunyuan-video generate: no image file at"):
        cli.main(["generate", "x", "-o", str(tmp_path / "a.mp4"), "--image", str(tmp_path / "none.png")])
    assert not (tmp_path / "a.mp4").exists()
