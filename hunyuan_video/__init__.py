"""hunyuan-video: a fast, trainable PyTorch implementation of HunyuanVideo."""

import importlib

from hunyuan_video.config import TRANSFORMER_PRESETS, VAE_PRESETS, TransformerConfig, VAEConfig

__version__ = "0.1.0"

# Names that need torch load on first use, so that importing the package (and `hunyuan-video --help`) stays light.
_LAZY = {
    "HunyuanVideoTransformer": "hunyuan_video.models.transformer",
    "load_transformer": "hunyuan_video.checkpoint",
    "save_transformer": "hunyuan_video.checkpoint",
    "LLMTextEncoder": "hunyuan_video.text_encoder",
    "CLIPTextEncoder": "hunyuan_video.text_encoder",
    "LLaVATextEncoder": "hunyuan_video.text_encoder",
    "HunyuanVideoPipeline": "hunyuan_video.pipelines",
    "HunyuanVideoImageToVideoPipeline": "hunyuan_video.pipelines",
    "GenerationDefaults": "hunyuan_video.pipelines",
    "VideoOutput": "hunyuan_video.pipelines",
    "CausalVAE": "hunyuan_video.models.vae",
    "load_vae": "hunyuan_video.checkpoint",
    "save_vae": "hunyuan_video.checkpoint",
    "load_lora": "hunyuan_video.lora",
    "ParallelConfig": "hunyuan_video.parallel",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hunyuan_video' has no attribute {name!r}")


__all__ = [
    "CausalVAE",
    "CLIPTextEncoder",
    "GenerationDefaults",
    "LLMTextEncoder",
    "LLaVATextEncoder",
    "HunyuanVideoImageToVideoPipeline",
    "HunyuanVideoPipeline",
    "HunyuanVideoTransformer",
    "ParallelConfig",
    "TRANSFORMER_PRESETS",
    "VAE_PRESETS",
    "TransformerConfig",
    "VAEConfig",
    "VideoOutput",
    "__version__",
    "load_lora",
    "load_transformer",
    "load_vae",
    "save_transformer",
    "save_vae",
]
