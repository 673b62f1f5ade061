"""Tiny random components for tests: text encoders with word tokenizers, transformers and VAEs (ours and diffusers'),
a tiny model folder in the official layout, and a helper to randomise weights.

Import from tests as `from tiny_models import ...` (pytest puts tests/ on the path). Sizes match the "test-tiny"
TransformerConfig preset: LLM states 32 wide, CLIP pooled 24 wide.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from random_weights import randomize_, tiny_transformer, tiny_vae
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaModel,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from hunyuan_video.text_encoder import I2V_TEMPLATE, build_word_tokenizer

WORDS = (
    "a cat walks on the grass , realistic . red ball rolls across green floor slowly while blue cube spins "
    "camera pans left right up down bad quality video of dog running in park at sunset"
).split()


def tiny_tokenizers() -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """A Llama-3-like and a CLIP-like word tokenizer over WORDS."""
    return build_word_tokenizer(WORDS, "llm"), build_word_tokenizer(WORDS, "clip")


def tiny_llm(tokenizer: PreTrainedTokenizerFast, hidden: int = 32, layers: int = 4, seed: int = 0) -> LlamaModel:
    """A random Llama model sized for `tokenizer` (float32, eval mode)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return randomize_(LlamaModel(config), seed).eval()


def tiny_llava_tokenizer() -> PreTrainedTokenizerFast:
    """The Llama-3-like word tokenizer over WORDS and the I2V template's words, with LLaVA's `<image>` token added."""
    tokenizer = build_word_tokenizer([*WORDS, re.sub(r"<\|?\w+\|?>", " ", I2V_TEMPLATE)], "llm")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


def tiny_llava(tokenizer: PreTrainedTokenizerFast, hidden: int = 32, layers: int = 4, seed: int = 4
               ) -> LlavaForConditionalGeneration:
    """A random LLaVA (CLIP vision tower, 56 px images in 14 px patches: 16 image tokens; Llama text model) sized for
    `tokenizer` (float32, eval mode)."""
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=56, patch_size=14, projection_dim=16)
    config = LlavaConfig(vision_config=vision, text_config=text, pad_token_id=tokenizer.pad_token_id,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    return randomize_(LlavaForConditionalGeneration(config), seed).eval()


def tiny_image_processor() -> CLIPImageProcessor:
    """CLIP's image processor at the tiny LLaVA's 56 px."""
    return CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})


def tiny_clip(tokenizer: PreTrainedTokenizerFast, hidden: int = 24, layers: int = 2, seed: int = 1) -> CLIPTextModel:
    """A random CLIP text model sized for `tokenizer`, pooling at its end-of-text token (float32, eval mode)."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return randomize_(CLIPTextModel(config), seed).eval()


def save_as_full_clip(clip: CLIPTextModel, path: Path) -> None:
    """Save `clip` inside a full CLIPModel (with a tiny vision tower), as openai/clip-vit-large-patch14 is stored."""
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16)
    full = CLIPModel(CLIPConfig(text_config=clip.config.to_dict(), vision_config=vision, projection_dim=8))
    full.text_model.load_state_dict(clip.state_dict())
    full.save_pretrained(path)


def diffusers_tiny_transformer(seed: int = 2):
    """diffusers' HunyuanVideoTransformer3DModel in the "test-tiny" preset, every weight random (test-only)."""
    from diffusers import HunyuanVideoTransformer3DModel

    from hunyuan_video.checkpoint import transformer_config_to_diffusers
    from hunyuan_video.config import TRANSFORMER_PRESETS

    config = transformer_config_to_diffusers(TRANSFORMER_PRESETS["test-tiny"])
    return randomize_(HunyuanVideoTransformer3DModel(**config), seed).eval()


def diffusers_tiny_vae(seed: int = 3):
    """diffusers' AutoencoderKLHunyuanVideo in the "test-tiny" VAE preset, every weight random (test-only)."""
    from diffusers import AutoencoderKLHunyuanVideo

    from hunyuan_video.config import VAE_PRESETS

    c = VAE_PRESETS["test-tiny"]
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=c.latent_channels, block_out_channels=c.block_out_channels,
        layers_per_block=c.layers_per_block, norm_num_groups=c.norm_num_groups, scaling_factor=c.scaling_factor,
        mid_block_add_attention=c.mid_block_add_attention,
    )
    return randomize_(vae, seed).eval()


def write_official_model(root: Path) -> Path:
    """A tiny random model folder in the official `ckpts/` layout (what `hunyuan-video generate --model` takes)."""
    from hunyuan_video.config import save_config

    model = root / "hunyuan-video-t2v-720p"
    (model / "transformers").mkdir(parents=True)
    transformer = tiny_transformer()
    torch.save({"module": transformer.state_dict()}, model / "transformers" / "mp_rank_00_model_states.pt")
    save_config(transformer.config, model / "transformers" / "config.json")  # head dim 16: shapes can't tell it
    (model / "vae").mkdir()
    vae = tiny_vae()
    torch.save(vae.state_dict(), model / "vae" / "pytorch_model.pt")
    save_config(vae.config, model / "vae" / "config.json")
    tok, tok2 = tiny_tokenizers()
    tiny_llm(tok).save_pretrained(root / "text_encoder")
    tok.save_pretrained(root / "text_encoder")
    save_as_full_clip(tiny_clip(tok2), root / "text_encoder_2")
    tok2.save_pretrained(root / "text_encoder_2")
    return root


def write_official_i2v_model(root: Path, kind: str) -> Path:
    """A tiny random image-to-video model folder in the official `ckpts/` layout: hunyuan-video-i2v-720p/ (its
    transformer's config.json names no kind, as the official checkpoint has no config: the channels tell it; with a
    lora/ folder), text_encoder_i2v/ (LLaVA, tokenizer, image processor) and text_encoder_2/."""
    import dataclasses

    from hunyuan_video.config import TRANSFORMER_PRESETS, save_config
    from hunyuan_video.models.transformer import HunyuanVideoTransformer

    tiny = TRANSFORMER_PRESETS["test-tiny"]
    config = dataclasses.replace(tiny, in_channels=33, guidance_embed=False) if kind == "latent_concat" else tiny
    model = root / "hunyuan-video-i2v-720p"
    (model / "transformers").mkdir(parents=True)
    (model / "lora").mkdir()
    transformer = randomize_(HunyuanVideoTransformer(config), 6)
    torch.save({"module": transformer.state_dict()}, model / "transformers" / "mp_rank_00_model_states.pt")
    save_config(config, model / "transformers" / "config.json")  # head dim 16: shapes can't tell it
    (model / "vae").mkdir()
    vae = tiny_vae()
    torch.save(vae.state_dict(), model / "vae" / "pytorch_model.pt")
    save_config(vae.config, model / "vae" / "config.json")
    tok = tiny_llava_tokenizer()
    tiny_llava(tok).save_pretrained(root / "text_encoder_i2v")
    tok.save_pretrained(root / "text_encoder_i2v")
    tiny_image_processor().save_pretrained(root / "text_encoder_i2v")
    _, tok2 = tiny_tokenizers()
    save_as_full_clip(tiny_clip(tok2), root / "text_encoder_2")
    tok2.save_pretrained(root / "text_encoder_2")
    return root
