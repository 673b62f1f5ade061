"""CPU offload: the weights stay on the CPU and are brought to the device only while their module works."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters and buffers of `module` (and of its children)."""
    return [*module.parameters(), *module.buffers()]


class ModelOffload:
    """Brings modules' weights to `device` for the time they work and points them back at their CPU copies after.

    The CPU copies are kept, so nothing is copied back; a module's ModuleLists (the transformer's blocks) can be
    streamed, each entry brought just for its own forward, so only one block's weights sit on the device.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)

    def bring(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Point `tensors` at copies on the device; return their CPU data, for `send_back`."""
        originals = [t.data for t in tensors]
        for t in tensors:
            t.data = t.data.to(self.device, non_blocking=True)
        return originals

    @staticmethod
    def send_back(tensors: list[torch.Tensor], originals: list[torch.Tensor]) -> None:
        """Point `tensors` at their CPU data again (what `bring` returned)."""
        for t, original in zip(tensors, originals):
            t.data = original

    @contextmanager
    def on_device(self, module: nn.Module, stream_blocks: bool = False) -> Iterator[None]:
        """`module`'s weights on the device inside the block, on the CPU again after it. With `stream_blocks` the
        entries of its ModuleLists come one at a time, each just for its own forward."""
        blocks = [b for child in module.children() if isinstance(child, nn.ModuleList) for b in child]
        blocks = blocks if stream_blocks else []
        on_loan: dict[nn.Module, list[torch.Tensor]] = {}

        def bring_block(block: nn.Module, args: tuple) -> None:
            on_loan[block] = self.bring(module_tensors(block))

        def send_block_back(block: nn.Module, args: tuple, out: object) -> None:
            self.send_back(module_tensors(block), on_loan.pop(block))

        streamed = {id(t) for block in blocks for t in module_tensors(block)}
        resident = [t for t in module_tensors(module) if id(t) not in streamed]
        hooks = [h for b in blocks
                 for h in (b.register_forward_pre_hook(bring_block), b.register_forward_hook(send_block_back))]
        originals = self.bring(resident)
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            self.send_back(resident, originals)
            for block, block_originals in on_loan.items():  # left over when a forward failed
                self.send_back(module_tensors(block), block_originals)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
