"""Regional compilation: `torch.compile` on each transformer block's `forward`, not on the whole model.

All double blocks share one compiled graph and all single blocks another (PyTorch inlines the module, so its
weights are graph inputs rather than constants), so compiling costs two graphs whatever the depth, and a new
denoising step (new timestep, same shapes) reuses them. The stages around the blocks (embed, head) stay eager.
Module hooks (the CPU offload's, which bring each block's weights to the device) run outside the compiled code.
"""

from __future__ import annotations

import torch
from torch import nn

from hunyuan_video.models.transformer import HunyuanVideoTransformer


def compile_blocks(model: HunyuanVideoTransformer, backend: str = "inductor", mode: str | None = None) -> None:
    """Compile the `forward` of every double and single block of `model` in place with `torch.compile` (`backend`,
    `mode` as there; shapes are static: a new video size compiles once more)."""
    blocks: list[nn.Module] = [*model.double_blocks, *model.single_blocks]
    for block in blocks:
        block.forward = torch.compile(block.forward, backend=backend, mode=mode, dynamic=False)
