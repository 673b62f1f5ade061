"""Our tiny random models, with nothing but torch and hunyuan_video imported (spawned test ranks load fast).

`tiny_models` holds the rest (text encoders, diffusers references) and re-uses these.
"""

from __future__ import annotations

import torch
from torch import nn


def randomize_(module: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Draw every parameter afresh (scales of norms around 1, the rest around 0), so no layer stays zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            scale = p.ndim == 1 and "norm" in name and name.endswith("weight")
            p.copy_(noise + 1 if scale else noise)
    return module


def tiny_transformer(seed: int = 2):
    """Our HunyuanVideoTransformer in the "test-tiny" preset, every weight random."""
    from hunyuan_video.config import TRANSFORMER_PRESETS
    from hunyuan_video.models.transformer import HunyuanVideoTransformer

    return randomize_(HunyuanVideoTransformer(TRANSFORMER_PRESETS["test-tiny"]), seed).eval()


def tiny_vae(seed: int = 3):
    """Our CausalVAE in the "test-tiny" preset, every weight random."""
    from hunyuan_video.config import VAE_PRESETS
    from hunyuan_video.models.vae import CausalVAE

    return randomize_(CausalVAE(VAE_PRESETS["test-tiny"]), seed).eval()
