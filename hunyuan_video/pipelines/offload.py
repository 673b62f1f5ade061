"""CPU offload: the weights stay on the CPU and are brought to the device only while their module works.

Three levels: "model" brings each part whole (as diffusers' `enable_model_cpu_offload`), "blocks" streams a part's
blocks one at a time, and "auto" brings a part whole when its weights fit `memory_budget.auto_budget` of the device
(a share of its free memory at that moment) and streams its blocks when not.

Streamed blocks are prefetched: while block i runs, block i + 1's weights are already on their way. On CUDA the copy
runs on a side stream from pinned host memory (so it overlaps block i's kernels) and block i + 1 waits for it on an
event; elsewhere the same steps run one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from hunyuan_video.memory_budget import auto_budget

OFFLOAD_LEVELS = ("model", "blocks", "auto")


def module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters and buffers of `module` (and of its children)."""
    return [*module.parameters(), *module.buffers()]


class ModelOffload:
    """Brings modules' weights to `device` for the time they work and points them back at their CPU copies after.

    The CPU copies are kept (a prefetched block's pinned on first use when the device is CUDA), so nothing is
    copied back; a module's ModuleLists (the transformer's blocks) can be streamed, each entry brought just for its
    own forward and the next one prefetched meanwhile, so at most two blocks' weights sit on the device.
    """

    def __init__(self, device: torch.device | str, level: str = "blocks") -> None:
        if level not in OFFLOAD_LEVELS:
            raise ValueError(f"the offload level must be one of {', '.join(OFFLOAD_LEVELS)}, got {level!r}")
        self.device, self.level = torch.device(device), level
        self.copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def streams(self, module: nn.Module) -> bool:
        """Whether `on_device(module, stream_blocks=True)` streams `module`'s blocks: always at level "blocks",
        never at "model", and at "auto" when its weights take more than `auto_budget` of the device."""
        if self.level == "auto":
            return sum(t.nbytes for t in module_tensors(module)) > auto_budget(self.device)
        return self.level == "blocks"

    def bring(self, tensors: list[torch.Tensor], pin: bool = False) -> list[torch.Tensor]:
        """Point `tensors` at copies on the device (issued on the current stream); return their CPU data, for
        `send_back`. With `pin` (CUDA) the CPU data is first moved to pinned memory and kept there, so that this
        copy and every later one is asynchronous."""
        originals = []
        for t in tensors:
            cpu = t.data
            if pin and self.copy_stream is not None and not cpu.is_pinned():
                cpu = cpu.pin_memory()
            originals.append(cpu)
            t.data = cpu.to(self.device, non_blocking=True)
        return originals

    def prefetch(self, tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.cuda.Event | None]:
        """`bring` on the side stream (CUDA) with an event to wait for before use; elsewhere `bring` and None."""
        if self.copy_stream is None:
            return self.bring(tensors), None
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.copy_stream):
            originals, done = self.bring(tensors, pin=True), torch.cuda.Event()
            done.record()
        for t in tensors:  # the copies are used, then freed, on the compute stream
            t.data.record_stream(compute)
        return originals, done

    @staticmethod
    def send_back(tensors: list[torch.Tensor], originals: list[torch.Tensor]) -> None:
        """Point `tensors` at their CPU data again (what `bring` returned)."""
        for t, original in zip(tensors, originals):
            t.data = original

    @contextmanager
    def on_device(self, module: nn.Module, stream_blocks: bool = False) -> Iterator[None]:
        """`module`'s weights on the device inside the block, on the CPU again after it. With `stream_blocks`, where
        the level streams `module` (`streams`), the entries of its ModuleLists come one at a time, each just for
        its own forward, the next one prefetched while it runs."""
        blocks = [b for child in module.children() if isinstance(child, nn.ModuleList) for b in child]
        blocks = blocks if stream_blocks and self.streams(module) else []
        following = dict(zip(blocks, blocks[1:]))
        on_loan: dict[nn.Module, list[torch.Tensor]] = {}
        pending: dict[nn.Module, torch.cuda.Event] = {}

        def bring_block(block: nn.Module, args: tuple) -> None:
            if block not in on_loan:
                on_loan[block] = self.bring(module_tensors(block))
            elif (done := pending.pop(block, None)) is not None:
                torch.cuda.current_stream(self.device).wait_event(done)
            upcoming = following.get(block)
            if upcoming is not None and upcoming not in on_loan:
                on_loan[upcoming], done = self.prefetch(module_tensors(upcoming))
                if done is not None:
                    pending[upcoming] = done

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
            if self.copy_stream is not None:
                self.copy_stream.synchronize()
            self.send_back(resident, originals)
            for block, block_originals in on_loan.items():  # left over when a forward failed
                self.send_back(module_tensors(block), block_originals)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
