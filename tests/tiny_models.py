"""Tiny random components for tests: text encoders with word tokenizers, and helpers to randomise weights.

Import from tests as `from tiny_models import ...` (pytest puts tests/ on the path). Sizes match the "test-tiny"
TransformerConfig preset: LLM states 32 wide, CLIP pooled 24 wide.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel, PreTrainedTokenizerFast

from hunyuan_video.text_encoder import build_word_tokenizer

WORDS = (
    "a cat walks on the grass , realistic . red ball rolls across green floor slowly while blue cube spins "
    "camera pans left right up down bad quality video of dog running in park at sunset"
).split()


def randomize_(module: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Draw every parameter afresh (scales of norms around 1, the rest around 0), so no layer stays zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            scale = p.ndim == 1 and "norm" in name and name.endswith("weight")
            p.copy_(noise + 1 if scale else noise)
    return module


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


def tiny_clip(tokenizer: PreTrainedTokenizerFast, hidden: int = 24, layers: int = 2, seed: int = 1) -> CLIPTextModel:
    """A random CLIP text model sized for `tokenizer`, pooling at its end-of-text token (float32, eval mode)."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return randomize_(CLIPTextModel(config), seed).eval()
