"""Neural network modules of HunyuanVideo."""

from hunyuan_video.models.transformer import HunyuanVideoTransformer

__all__ = ["HunyuanVideoTransformer"]
