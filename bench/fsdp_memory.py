"""Per-rank memory of the transformer's training state (parameters + gradients + AdamW state) sharded with FSDP2 over
N ranks, against one process holding all of it.

Each run is a set of spawned processes (gloo on the CPU); every rank builds the same random model, shards it as
`hunyuan-video train` does with `"fsdp": true` (`train.distributed.shard_model`, one unit per block), takes one AdamW
step on a tiny input (so that the gradients and the optimiser state exist) and counts the bytes it holds with
`train.distributed.state_bytes`.

    python bench/fsdp_memory.py                                      # bench-mid at hidden 512, 1 vs 2 ranks
    python bench/fsdp_memory.py --hidden-size 1024 --ranks 4         # bench-mid itself (about 10 GB in one process)

Prints a markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hunyuan_video.config import TRANSFORMER_PRESETS
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.train.distributed import shard_model, state_bytes


def _config(args: argparse.Namespace):
    config = TRANSFORMER_PRESETS[args.preset]
    return dataclasses.replace(config, hidden_size=args.hidden_size, heads_num=args.hidden_size // 128)


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, result: str) -> None:
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(minutes=10))
    config = _config(args)
    torch.manual_seed(0)
    model = HunyuanVideoTransformer(config)
    if world > 1:
        shard_model(model, [*model.double_blocks, *model.single_blocks])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, config.in_channels, 1, 4, 4, generator=gen)
    out = model(x, torch.tensor([500.0]), torch.randn(1, 8, config.text_states_dim, generator=gen), None,
                torch.randn(1, config.text_states_dim_2, generator=gen),
                torch.tensor([6000.0]) if config.guidance_embed else None)
    out.float().pow(2).mean().backward()
    optimizer.step()
    counts = state_bytes(model, optimizer)
    if rank == 0:
        Path(result).write_text(json.dumps(counts))
    if world > 1:
        dist.destroy_process_group()


def _run(world: int, args: argparse.Namespace) -> dict[str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        mp.start_processes(_worker, args=(world, port, args, result), nprocs=world, start_method="spawn")
        return json.loads(Path(result).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bench-mid", choices=sorted(TRANSFORMER_PRESETS))
    parser.add_argument("--hidden-size", type=int, default=512, help="a multiple of 128 (heads of 128 channels)")
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    one, sharded = _run(1, args), _run(args.ranks, args)

    def gib(n: int) -> str:
        return f"{n / 2**30:.3f}"

    params = sum(p.numel() for p in HunyuanVideoTransformer(_config(args)).parameters())
    for key in ("params", "grads", "optimizer", "total"):
        print(f"{key:>9}: 1 process {gib(one[key])} GiB, per rank of {args.ranks} {gib(sharded[key])} GiB "
              f"({sharded[key] / one[key]:.3f}x)")
    print(f"| FSDP2 state per rank | {args.preset} hidden {args.hidden_size}, {params / 1e6:.0f}M params, fp32 "
          f"AdamW | {gib(one['total'])} GiB (1 process) | {gib(sharded['total'])} GiB ({args.ranks} ranks, gloo) | "
          f"{sharded['total'] / one['total']:.3f}x | {platform.processor() or platform.machine()}, "
          f"{datetime.date.today()} |")


if __name__ == "__main__":
    main()
