"""Scale-out on `torch.distributed`: Ulysses and ring sequence parallelism (USP) and CFG parallelism, wrapped around
the transformer's stages from outside (the model sees only the attention layout it is given), and the VAE's tiles
decoded across ranks (`parallel.vae.decode_shared`). The Ulysses exchanges are differentiable
(`parallel.collectives`), so that training splits the video tokens the same way (`train.dit`'s `ulysses_degree`)."""

from hunyuan_video.parallel.config import ParallelConfig
from hunyuan_video.parallel.groups import ParallelGroups
from hunyuan_video.parallel.transformer import ParallelTransformer

__all__ = ["ParallelConfig", "ParallelGroups", "ParallelTransformer"]
