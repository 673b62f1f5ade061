"""hunyuan-video: a fast, trainable PyTorch implementation of HunyuanVideo."""

from hunyuan_video.config import TRANSFORMER_PRESETS, VAE_PRESETS, TransformerConfig, VAEConfig

__version__ = "0.1.0"

__all__ = [
    "TRANSFORMER_PRESETS",
    "VAE_PRESETS",
    "TransformerConfig",
    "VAEConfig",
    "__version__",
]
