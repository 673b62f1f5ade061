"""Parallel VAE decode: the tiles of a tiled decode shared out among ranks and blended into the same video.

The tiles are listed by running the tiling once over placeholders; rank i decodes tiles i, i + P, ...; each tile is
then sent from its rank to all (a broadcast, which every backend provides), and the tiling blends the decoded tiles
in its usual order: every rank returns the video one process makes. All decoded tiles are held at once.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup

from hunyuan_video.models.tiling import tiled_decode
from hunyuan_video.models.vae import CausalVAE


def decode_shared(vae: CausalVAE, latents: Tensor, group: ProcessGroup | None = None) -> Tensor:
    """`vae.decode(latents)` (with `vae.tiling`) with the tiles decoded across the ranks of `group` (None: all
    ranks); every rank of the group calls it with the same latents and gets the whole video."""
    c, spec = vae.config, vae.tiling
    r, rt = c.spatial_compression_ratio, c.time_compression_ratio
    if spec is None:
        return vae.decode(latents)
    spec.check(r, rt)
    tiles: list[Tensor] = []

    def placeholder(z: Tensor) -> Tensor:
        """An uninitialised tensor shaped like the decode of tile `z`."""
        return z.new_empty(z.shape[0], c.out_channels, 1 + (z.shape[2] - 1) * rt, z.shape[3] * r, z.shape[4] * r)

    tiled_decode(lambda z: tiles.append(z) or placeholder(z), latents, spec, r, rt)
    if len(tiles) == 1:
        return vae.decode(latents)
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    decoded = [vae.decode_tile(z) if i % size == rank else placeholder(z) for i, z in enumerate(tiles)]
    for i, tile in enumerate(decoded):
        owner = i % size if group is None else dist.get_global_rank(group, i % size)
        dist.broadcast(tile, src=owner, group=group)
    ready = iter(decoded)
    return tiled_decode(lambda z: next(ready), latents, spec, r, rt)
