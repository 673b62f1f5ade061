"""Free memory of a device, and the chunk sizes that keep a computation's activations under a budget.

The `auto` chunk settings (`HunyuanVideoTransformer.set_ffn_chunk("auto")`, `CausalVAE.set_decode_chunk("auto")`)
and `--offload auto` take `AUTO_FRACTION` of the device's free memory as their budget: on CUDA the free bytes of
`torch.cuda.mem_get_info`, on the CPU the kernel's `MemAvailable` (`/proc/meminfo`), and `CPU_FALLBACK_BYTES` where
that file does not exist.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

AUTO_FRACTION = 0.5  # the share of the free memory one automatic choice may plan for
CPU_FALLBACK_BYTES = 8 * 2**30  # the free memory assumed for a CPU without /proc/meminfo


def free_memory_bytes(device: torch.device | str) -> int:
    """The bytes free on `device` now: `torch.cuda.mem_get_info` on CUDA, `MemAvailable` on a Linux CPU,
    `CPU_FALLBACK_BYTES` elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return CPU_FALLBACK_BYTES


def auto_budget(device: torch.device | str) -> int:
    """The budget of an automatic choice on `device`: `AUTO_FRACTION` of its free memory."""
    return int(free_memory_bytes(device) * AUTO_FRACTION)


def chunk_for_budget(per_item_bytes: int, items: int, budget: int, fixed_bytes: int = 0) -> int | None:
    """The most items per chunk such that `fixed_bytes + chunk * per_item_bytes <= budget`: None when all `items`
    fit at once (no chunking needed), 1 (the smallest chunk) when not even one item fits."""
    if per_item_bytes <= 0:
        raise ValueError(f"per_item_bytes must be positive, got {per_item_bytes}")
    chunk = (budget - fixed_bytes) // per_item_bytes
    if chunk >= items:
        return None
    return max(int(chunk), 1)


class TensorBytesPeak(TorchDispatchMode):
    """Counts the bytes of the tensors created inside it that are alive at once (on any device, the CPU included):
    `peak` is the largest total seen. Tensors made before it (weights, inputs) do not count, nor do views and
    in-place results (an output sharing an input's storage); a new storage counts once, with all its views.

        with TensorBytesPeak() as meter:
            model(x)
        meter.peak
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.bytes = self.peak = 0

    def __torch_dispatch__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> object:
        out = func(*args, **(kwargs or {}))
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.bytes -= self.live.pop(key)[1]
        inputs = {StorageWeakRef(t.untyped_storage()).cdata for t in tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor) and not t.is_meta}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and not tensor.is_meta:
                storage = tensor.untyped_storage()
                ref = StorageWeakRef(storage)
                if ref.cdata not in self.live and ref.cdata not in inputs and storage.nbytes():  # not a view
                    self.live[ref.cdata] = (ref, storage.nbytes())
                    self.bytes += storage.nbytes()
        self.peak = max(self.peak, self.bytes)
        return out
