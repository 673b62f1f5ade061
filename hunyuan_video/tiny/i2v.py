"""The tools that turn the embedded text-to-video tiny model into a token-replace image-to-video one.

- `make_tiny_llava`: the tiny Llama (`text_encoder/`) inside a LLaVA (`text_encoder_i2v/`): its weights unchanged,
  its vocabulary extended by `<image>` and the I2V template's words it lacks, and a small seeded CLIP vision tower
  and projector (64 px images in 8 px patches: 64 image states, 16 after the token-replace interleave of 4).
- `token_replace_transformer`: the text-to-video transformer as a `token_replace` one (the guidance embedding that
  kind needs, its output layer zero), which computes what the text-to-video model computes with the first latent
  frame modulated from t = 0, for any guidance value.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from hunyuan_video.checkpoint import load_transformer, save_transformer
from hunyuan_video.config import save_config
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.text_encoder import I2V_TEMPLATE, IMAGE_TOKEN, LLAMA3_SPECIAL_TOKENS
from hunyuan_video.tiny.text_encoders import add_words

SCALE_IMAGES = 8  # first frames of the synthetic world's train clips that set the projector's output scale


def template_words_missing(tokenizer: PreTrainedTokenizerFast) -> list[str]:
    """The words of I2V_TEMPLATE (its special tokens and `<image>` left out), as the word-level `tokenizer` splits
    them, that its vocabulary lacks."""
    text = I2V_TEMPLATE.replace(IMAGE_TOKEN, " ")
    for special in LLAMA3_SPECIAL_TOKENS:
        text = text.replace(special, " ")
    pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text.lower())
    vocab = tokenizer.get_vocab()
    return sorted({piece for piece, _ in pieces if piece not in vocab})


def make_tiny_llava(llama_dir: str | Path, out_dir: str | Path, image_size: int = 64, patch_size: int = 8,
                    seed: int = 0) -> LlavaForConditionalGeneration:
    """Write a LLaVA text encoder folder (model, tokenizer, CLIP image processor; the official `text_encoder_i2v/`
    layout) to `out_dir` whose language model is the word-level Llama of `llama_dir`, weight for weight; returns it.

    The I2V template's words the Llama lacks are appended (`add_words`; each new row the mean of every known word's
    row), then `<image>` (its row zero: LLaVA puts the image's states in its place and never reads it). The vision
    tower (2 layers, width 32, `image_size` px in `patch_size` px patches) and the projector are random (`seed`).
    """
    llama_dir, out_dir = Path(llama_dir), Path(out_dir)
    if out_dir.resolve() == llama_dir.resolve():
        raise ValueError(f"make_tiny_llava writes a new folder: OUT_DIR must differ from {llama_dir}")
    if image_size % patch_size:
        raise ValueError(f"--image-size {image_size} is not a multiple of --patch-size {patch_size}")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(llama_dir)
    vocab = tokenizer.get_vocab()
    known = sorted(w for w in vocab if w not in LLAMA3_SPECIAL_TOKENS)
    with tempfile.TemporaryDirectory() as extended:
        add_words(llama_dir, extended, {word: known for word in template_words_missing(tokenizer)})
        llama = LlamaForCausalLM.from_pretrained(extended).eval()
        tokenizer = PreTrainedTokenizerFast.from_pretrained(extended)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_token = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token != llama.config.vocab_size:
        raise ValueError(f"{IMAGE_TOKEN} got id {image_token}, expected the next free id {llama.config.vocab_size}")
    llama.resize_token_embeddings(image_token + 1, mean_resizing=False)
    with torch.no_grad():
        llama.get_input_embeddings().weight[image_token] = 0.0
        llama.get_output_embeddings().weight[image_token] = 0.0
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=patch_size, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=llama.config, image_token_index=image_token,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    llava = LlavaForConditionalGeneration(config).eval()
    llava.model.language_model.load_state_dict(llama.model.state_dict())
    llava.lm_head.load_state_dict(llama.lm_head.state_dict())
    processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                   crop_size={"height": image_size, "width": image_size})
    _scale_projector(llava, processor, known_rows=llama.get_input_embeddings().weight[[vocab[w] for w in known]])
    llava.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' notice that the slow processor class is saved
        processor.save_pretrained(out_dir)
    return llava


@torch.no_grad()
def _scale_projector(llava: LlavaForConditionalGeneration, processor: CLIPImageProcessor,
                     known_rows: torch.Tensor) -> None:
    """Scale the projector's last layer so that the image states LLaVA puts in place of `<image>` have, on average,
    the norm of a word's input embedding (`known_rows`) on first frames of the synthetic world.

    The transformer's token refiner pools the mean of every state it reads, the image's included, and the Llama's
    residual stream carries each input embedding up to the layer read: image states far larger than the words'
    would swamp that mean and the text states beside them, and ones far smaller would be a condition the
    transformer barely sees. A word's norm puts the image on the footing of the prompt."""
    from hunyuan_video.tiny.synth import render_clip, sample_clip

    frames = [render_clip(sample_clip(i, 0, "train"))[0] for i in range(SCALE_IMAGES)]
    pixels = processor(frames, return_tensors="pt")["pixel_values"]
    features = llava.model.get_image_features(pixel_values=pixels)
    features = getattr(features, "pooler_output", features)  # transformers 5: an output whose pooler_output it is
    features = torch.cat(list(features)) if isinstance(features, (list, tuple)) else features
    scale = known_rows.norm(dim=-1).mean() / features.flatten(0, -2).norm(dim=-1).mean()
    projector = llava.model.multi_modal_projector.linear_2
    projector.weight.mul_(scale)
    projector.bias.mul_(scale)


def token_replace_transformer(src: str | Path, dst: str | Path) -> HunyuanVideoTransformer:
    """Write the text-to-video transformer of `src` as a `token_replace` image-to-video one to `dst` (.safetensors,
    its config in the metadata and in a config.json beside it); returns it.

    Every weight is copied; the guidance embedding token replace needs is new: its first layer a copy of the
    timestep embedder's, its output layer zero, so that it adds nothing. The model then computes, for any guidance
    value, what `src` computes with `first_frame_t = 0` (the first latent frame modulated from t = 0), and at t = 0
    exactly what `src` does; fine-tuning moves it from there.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"DST must be a .safetensors file, got {dst}")
    t2v = load_transformer(src, dtype=torch.float32, device="cpu")
    if t2v.config.i2v_condition_type is not None or t2v.config.guidance_embed:
        raise ValueError(f"{src} is not a text-to-video transformer without a guidance embedding "
                         f"(i2v_condition_type {t2v.config.i2v_condition_type}, "
                         f"guidance_embed {t2v.config.guidance_embed})")
    config = replace(t2v.config, i2v_condition_type="token_replace", guidance_embed=True)
    model = HunyuanVideoTransformer(config).eval()
    missing, unexpected = model.load_state_dict(t2v.state_dict(), strict=False)
    if unexpected or any(not key.startswith("guidance_in.") for key in missing):
        raise ValueError(f"{src}: unexpected keys {unexpected}, missing {missing}")
    with torch.no_grad():
        model.guidance_in.mlp[0].load_state_dict(model.time_in.mlp[0].state_dict())
        model.guidance_in.mlp[2].weight.zero_()
        model.guidance_in.mlp[2].bias.zero_()
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_transformer(model, dst)
    save_config(config, dst.parent / "config.json")
    return model
