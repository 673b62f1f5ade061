"""Forward time of the transformer on 1 rank and on N ranks with sequence parallelism, the same threads per rank.

Each run is a set of spawned processes (gloo on the CPU; NCCL with one GPU per rank when `--device cuda`); the
weights are random (the same on every rank), the input one sample of `--grid` latent tokens and `--text` text
tokens. The N-rank forward is checked against the 1-rank one before it is timed.

    python bench/distributed.py                                  # bench-mid, 4x32x32 = 4096 tokens, 1 vs 2 ranks
    python bench/distributed.py --ranks 2 --ring                 # ring attention instead of Ulysses
    python bench/distributed.py --device cuda --ranks 4          # 4 GPUs, bfloat16

Prints a markdown row for BENCHMARKS.md, with the machine's load average (1 minute) before and after: on a shared
machine, other processes on the cores slow the N-rank run most.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hunyuan_video.config import TRANSFORMER_PRESETS
from hunyuan_video.models.transformer import HunyuanVideoTransformer
from hunyuan_video.parallel import ParallelConfig, ParallelGroups, ParallelTransformer


def _inputs(config, grid: tuple[int, int, int], text: int, device: str, dtype: torch.dtype) -> dict:
    gen = torch.Generator().manual_seed(0)
    t, h, w = grid
    x = torch.randn(1, config.in_channels, t, 2 * h, 2 * w, generator=gen)
    inputs = dict(x=x, t=torch.tensor([500.0]), text_states=torch.randn(1, text, config.text_states_dim, generator=gen),
                  text_mask=None, text_states_2=torch.randn(1, config.text_states_dim_2, generator=gen),
                  guidance=torch.tensor([6000.0]) if config.guidance_embed else None)
    states = ("x", "text_states", "text_states_2")  # in the model's dtype, as the pipeline passes them
    return {k: None if v is None else v.to(device, dtype if k in states else v.dtype) for k, v in inputs.items()}


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, result: str) -> None:
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    device, dtype = (f"cuda:{rank}", torch.bfloat16) if cuda else ("cpu", torch.float32)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=10))
    config = TRANSFORMER_PRESETS[args.preset]
    torch.manual_seed(0)
    model = HunyuanVideoTransformer(config).eval().to(device, dtype)
    if world > 1:
        degrees = dict(ring_degree=world) if args.ring else dict(ulysses_degree=world)
        model = ParallelTransformer(model, ParallelGroups.build(ParallelConfig(**degrees)))
    inputs = _inputs(config, tuple(args.grid), args.text, device, dtype)
    times = []
    with torch.no_grad():
        for i in range(args.repeats + 1):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = model(**inputs)
            if cuda:
                torch.cuda.synchronize()
            if i:  # the first forward warms up
                times.append(time.perf_counter() - start)
    if rank == 0:
        torch.save((statistics.median(times), out.float().cpu()), result)
    if world > 1:
        dist.destroy_process_group()


def _run(world: int, args: argparse.Namespace) -> tuple[float, torch.Tensor]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        result = f"{tmp}/rank0.pt"
        mp.start_processes(_worker, args=(world, port, args, result), nprocs=world, start_method="spawn")
        return torch.load(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="bench-mid", choices=sorted(TRANSFORMER_PRESETS))
    parser.add_argument("--grid", type=int, nargs=3, default=[4, 32, 32], metavar=("T", "H", "W"),
                        help="latent tokens per axis (after the 1x2x2 patch)")
    parser.add_argument("--text", type=int, default=256, help="text tokens")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--ring", action="store_true", help="ring attention instead of Ulysses")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards (after one warm-up)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    one, reference = _run(1, args)
    many, out = _run(args.ranks, args)
    load_after = os.getloadavg()[0]
    error = ((out - reference).abs().max() / reference.abs().max()).item()
    kind = "ring" if args.ring else "Ulysses"
    machine = torch.cuda.get_device_name() if args.device == "cuda" else (
        f"{platform.processor() or 'CPU'}, {os.cpu_count()} cores, load {load_before:.1f} -> {load_after:.1f}")
    tokens = args.grid[0] * args.grid[1] * args.grid[2]
    print("| date | machine | config | 1 rank | ranks | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {datetime.date.today()} | {machine}, {args.threads} thread(s)/rank | {args.preset}, {tokens} video + "
          f"{args.text} text tokens | {one:.2f} s | {args.ranks} ({kind}): {many:.2f} s | {one / many:.2f}x "
          f"| {error:.1e} |")


if __name__ == "__main__":
    main()
