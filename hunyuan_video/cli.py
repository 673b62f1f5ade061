"""The `hunyuan-video` command: each subcommand lives in the module that does its job."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hunyuan_video.parallel import ParallelConfig


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="hunyuan-video", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_generate, _add_calibrate_cache, _add_calibrate_sta, _add_info, _add_data, _add_train_vae,
                _add_cache, _add_train, _add_lora, _add_tiny):
        add(sub)
    return parser


# Each `_add_*` adds one subcommand's parser and sets `func`; heavy imports happen inside `func` only.


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print what a model folder holds")
    p.add_argument("model", help="a model folder (official ckpts/ or diffusers layout)")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from hunyuan_video.pipelines import describe_model_folder, model_choices

    try:
        infos = [describe_model_folder(args.model, image) for image in model_choices(args.model)]
    except (OSError, ValueError) as error:
        raise SystemExit(f"hunyuan-video info: {error}") from None
    if len(infos) > 1:
        print(f"{infos[0]['root']} holds two models: {infos[0]['kind']} (generate PROMPT) and {infos[1]['kind']} "
              "(generate --image PATH PROMPT)\n")
    for n, info in enumerate(infos):
        print(("\n" if n else "") + f"{info['root']}: {info['layout']} layout, {info['kind']} model")
        for name, part in info["parts"].items():
            total = sum(part["parameters"].values())
            dtypes = ", ".join(f"{dtype} {count:,}" for dtype, count in part["parameters"].items())
            print(f"\n{name}: {part['path']}\n  parameters: {total:,} ({dtypes or 'no weight files'})")
            for key, value in (part["config"] or {}).items():
                if not isinstance(value, dict):
                    print(f"  {key}: {value}")
    return 0


TINY_MODEL = "assets/tiny"  # the embedded tiny model, inside the package, in the layout of a real model
# The pipeline's argument names as `generate` spells them, so that its errors name the option to change.
_GENERATE_OPTIONS = {"num_frames": "--frames", "num_inference_steps": "--steps", "guidance_scale": "--guidance",
                     "cfg_scale": "--cfg-scale", "negative_prompt": "--negative-prompt", "flow_shift": "--shift",
                     "the cache threshold": "--cache-threshold", "the sliding tile window": "--sta-window",
                     "full_steps": "--sta-full-steps", "fp8_matmul": "--fp8-matmul"}


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="make a video from a prompt",
                       description="Sample a video with HunyuanVideo and write it as an mp4 (-o NAME.mp4), a GIF "
                                   "(NAME.gif; suffixes in any case) or a folder of png frames (a NAME without a "
                                   "suffix, or ending in /). The file is written whole or not at all: an earlier "
                                   "file at that path is replaced only by a complete one; Ctrl-C stops with exit "
                                   "status 130 and writes nothing. Options left out take the model folder's "
                                   "generate.json values, else the official ones.")
    p.add_argument("prompt", help="what the video shows")
    p.add_argument("--image", metavar="PATH",
                   help="image-to-video: the video starts from this picture (PNG, JPEG...), scaled to cover the size "
                        "and centre-cropped (no --height/--width: the official bucket of its aspect); needs an "
                        "image-to-video model folder (no --model: the embedded tiny one)")
    p.add_argument("--i2v-stability", action="store_true",
                   help="with --image: start from 0.999 noise + 0.001 image latent (the official --i2v-stability)")
    p.add_argument("-o", "--output", default="outputs/video.mp4",
                   help="out.mp4, out.gif, or a name without a suffix (or ending in /): a folder of png frames "
                        "00000.png, 00001.png... (same-named frames in it are replaced); another suffix is refused")
    p.add_argument("--model", help="model folder (official ckpts/ or diffusers layout); default: the embedded tiny one")
    p.add_argument("--height", type=int, help="pixels, a multiple of 16 (official: 720)")
    p.add_argument("--width", type=int, help="pixels, a multiple of 16 (official: 1280)")
    p.add_argument("--frames", type=int, help="number of frames, 4k + 1 (official: 129)")
    p.add_argument("--steps", type=int, help="sampling steps (official: 50)")
    p.add_argument("--guidance", type=float,
                   help="embedded guidance scale, for a model with a guidance embedding (official: 6)")
    p.add_argument("--cfg-scale", type=float, help="true classifier-free guidance when > 1 (2x compute; official: 1)")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from with --cfg-scale > 1")
    p.add_argument("--shift", type=float, help="flow shift of the sigmas (17 for few steps; official: 7)")
    p.add_argument("--seed", type=int, default=None,
                   help="noise seed, 0 .. 2**64-1 (random when omitted; the seed used is printed at the end; "
                        "a negative seed is refused)")
    p.add_argument("--fps", type=float, help="frames per second of the written video (official: 24)")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"),
                   help="weights dtype (official: bfloat16); on the CPU float16 is many times slower (a warning says "
                        "so): use float32 or bfloat16 there")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[:SCALE]",
                   help="a LoRA file (diffusers, original-key or kohya layout) at a scale (default 1); repeatable")
    p.add_argument("--lora-ignore-unknown", action="store_true",
                   help="warn about LoRA keys that match no layer instead of failing")
    p.add_argument("--cache", choices=("teacache", "fbcache"), default=None,
                   help="skip the transformer's blocks on steps that change little (faster, slightly different video)")
    p.add_argument("--cache-threshold", type=float, default=None,
                   help="how much change a skipped step may hide (teacache: 0.1 ~1.6x on the real model, 0.15 ~2.1x; "
                        "fbcache default 0.05; 0: never skip)")
    _add_sparse_attention_options(p)
    _add_speed_memory_options(p)
    _add_parallel_options(p)
    p.set_defaults(func=_run_generate)


def _add_sparse_attention_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sparse-attention", choices=("sta",), default=None,
                   help="sta: sliding tile attention, each video tile attends to a window of tiles around it plus "
                        "the text (faster, slightly different video; off by default)")
    p.add_argument("--sta-window", type=int, nargs=3, metavar=("T", "H", "W"),
                   help="the sliding tile window in tiles per axis (tiles: the largest divisor of the latent token "
                        "grid up to 6 x 8 x 8); default: the windows per block and head searched by `calibrate-sta` "
                        "(the model folder's sliding_tile.json)")
    p.add_argument("--sta-full-steps", type=int, default=None,
                   help="the first sampling steps that run full attention (default: the searched plan's, else 0)")


def _check_sparse_attention_options(args: argparse.Namespace) -> None:
    """A ValueError when `--sparse-attention`, `--sta-window` and `--sta-full-steps` do not go together."""
    if args.sparse_attention is None and (args.sta_window is not None or args.sta_full_steps is not None):
        raise ValueError("--sta-window and --sta-full-steps need --sparse-attention sta")


def _apply_sparse_attention_options(pipe, args: argparse.Namespace) -> None:
    """`--sparse-attention sta [--sta-window T H W] [--sta-full-steps K]` on the pipeline (without a window, the
    model folder's searched plan)."""
    if args.sparse_attention is None:
        return
    if args.sta_window is None and pipe.sliding_tile_plan is None:
        raise ValueError("--sparse-attention sta needs --sta-window T H W (tiles per axis), or a searched plan in the "
                         "model folder (`hunyuan-video calibrate-sta`)")
    pipe.enable_sliding_tile_attention(None if args.sta_window is None else tuple(args.sta_window),
                                       full_steps=args.sta_full_steps)


def _add_parallel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ulysses-degree", type=int, default=1,
                   help="ranks that split the video tokens with an all-to-all of heads (divides the heads)")
    p.add_argument("--ring-degree", type=int, default=1,
                   help="ranks that split the video tokens with ring attention")
    p.add_argument("--cfg-parallel", action="store_true",
                   help="run the two halves of true CFG (--cfg-scale > 1) on two rank groups")


def _start_parallel(args: argparse.Namespace, device: str) -> tuple[ParallelConfig, str]:
    """The `ParallelConfig` of the options, checked against the torchrun world (WORLD_SIZE) before any model loads,
    and the device of this rank; starts the process group when the world has more than one rank."""
    from hunyuan_video.parallel import ParallelConfig

    config = ParallelConfig(args.ulysses_degree, args.ring_degree, args.cfg_parallel)
    config.check_world_size(int(os.environ.get("WORLD_SIZE", "1")))
    return config, _start_process_group(device)


def _start_process_group(device: str) -> str:
    """Under torchrun with more than one process (WORLD_SIZE > 1), start the default process group (NCCL for a CUDA
    device, one GPU per local rank; else gloo) and return this rank's device; otherwise return `device` as it is."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return device
    if device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def _add_speed_memory_options(p: argparse.ArgumentParser) -> None:
    """`generate`'s kernels, weights, memory and VAE options, in their own groups of --help."""
    speed = p.add_argument_group("speed and memory (exact unless noted)")
    speed.add_argument("--attention", default="auto", metavar="NAME",
                       help="attention kernel: auto, sdpa, flash (flash-attn), flash3 (FlashAttention-3, Hopper), "
                            "sage (SageAttention, approximate), flex (default: auto, the fastest exact one here)")
    speed.add_argument("--fp8", action="store_true",
                       help="keep the blocks' linear weights in float8 (half of bf16's memory; weight-only "
                            "quantisation, not exact); an official *_fp8.pt checkpoint loads so by itself")
    speed.add_argument("--fp8-matmul", action="store_true",
                       help="with float8 weights, multiply in fp8 on the tensor cores (GPUs of compute capability "
                            "8.9+: L4, RTX 4090, H100; the activations rounded to float8 too, not exact)")
    speed.add_argument("--compile", action="store_true", help="torch.compile each transformer block (regional)")
    speed.add_argument("--chunk-ffn", type=_count_or_auto, metavar="TOKENS|auto",
                       help="run the blocks' MLPs this many tokens at a time (lower peak memory); auto: the largest "
                            "chunk that fits half of the free device memory")
    speed.add_argument("--offload", nargs="?", const="blocks", choices=("model", "blocks", "auto"),
                       metavar="model|blocks|auto",
                       help="keep the weights on the CPU and move each part to the GPU only while it works: blocks "
                            "(the default) the transformer block by block, the next one prefetched; model each part "
                            "whole; auto whole when it fits half of the free GPU memory, else block by block")
    speed.add_argument("--free-text-encoders", action="store_true",
                       help="drop the text encoders once the prompt is encoded (frees their memory before denoising)")
    vae = p.add_argument_group("VAE decode")
    vae.add_argument("--vae-dtype", choices=("bfloat16", "float16", "float32"), help="VAE dtype (default: --dtype)")
    vae.add_argument("--vae-tile-size", type=int, metavar="PX",
                     help="decode in square tiles of this many pixels (official: 256; 0: no tiling)")
    vae.add_argument("--vae-tile-frames", type=int, metavar="N", help="frames per temporal tile (official: 64)")
    vae.add_argument("--vae-tile-overlap", type=float, metavar="F", help="tile overlap fraction (official: 0.25)")
    vae.add_argument("--vae-chunk", type=_count_or_auto, metavar="FRAMES|auto",
                     help="run each decoder layer this many frames at a time (same video, lower peak memory); auto: "
                          "the largest chunk that fits half of the free device memory")


def _count_or_auto(value: str) -> int | str:
    """An option's value: "auto" or an integer (checked to be positive by `_check_speed_memory_options`)."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None


def _check_speed_memory_options(args: argparse.Namespace) -> None:
    """Raise a ValueError naming the option for a value of `_add_speed_memory_options` that cannot be right."""
    if args.chunk_ffn not in (None, "auto") and args.chunk_ffn < 1:
        raise ValueError(f"--chunk-ffn must be a positive number of tokens, got {args.chunk_ffn}")
    if args.vae_chunk not in (None, "auto") and args.vae_chunk < 1:
        raise ValueError(f"--vae-chunk must be a positive number of frames, got {args.vae_chunk}")
    for name, value in (("--vae-tile-size", args.vae_tile_size), ("--vae-tile-frames", args.vae_tile_frames)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be positive (or --vae-tile-size 0 for no tiling), got {value}")
    if args.vae_tile_overlap is not None and not 0 <= args.vae_tile_overlap < 1:
        raise ValueError(f"--vae-tile-overlap must be in [0, 1), got {args.vae_tile_overlap}")


def _apply_speed_memory_options(pipe, args: argparse.Namespace) -> None:
    """Set the options of `_add_speed_memory_options` that act on a loaded pipeline; a ValueError for bad values."""
    from dataclasses import replace

    from hunyuan_video.models.regional_compile import compile_blocks

    pipe.transformer.set_ffn_chunk(args.chunk_ffn)
    pipe.vae.set_decode_chunk(args.vae_chunk)
    pipe.release_text_encoders = args.free_text_encoders
    if args.vae_tile_size == 0:
        pipe.vae.tiling = None
    elif any(v is not None for v in (args.vae_tile_size, args.vae_tile_frames, args.vae_tile_overlap)):
        spec = pipe.vae.tiling or pipe.vae.official_tiling()
        given = dict(sample_size=args.vae_tile_size, sample_tsize=args.vae_tile_frames, overlap=args.vae_tile_overlap)
        spec = replace(spec, **{k: v for k, v in given.items() if v is not None})
        c = pipe.vae.config
        try:
            spec.check(c.spatial_compression_ratio, c.time_compression_ratio)
        except ValueError as error:
            raise ValueError(f"--vae-tile-*: {error}") from None
        pipe.vae.tiling = spec
    if args.compile:
        compile_blocks(pipe.transformer)


def _check_output(output: str) -> str:
    """Fail before sampling when the video could not be written to `output`; returns what it will be written as
    (see `video_io.output_kind`)."""
    from hunyuan_video.video_io import output_kind

    try:
        kind = output_kind(output)
    except ValueError as error:
        raise ValueError(f"--output {error}") from None
    path = Path(output)
    if kind != "png frames" and path.is_dir():
        raise ValueError(f"--output {path} is a folder: name a file, or drop the suffix to write png frames")
    if kind == "png frames" and path.exists() and not path.is_dir():
        raise ValueError(f"--output {path} is a file: png frames go to a folder (or use a .mp4 or .gif name)")
    # The writer fills a temporary beside the target (in its parent), then renames it in (into it, for frames).
    for folder in [path.parent] + ([path] if kind == "png frames" and path.is_dir() else []):
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--output {path}: cannot write there ({existing} is not a writable folder)")
    return kind


def _run_generate(args: argparse.Namespace) -> int:
    import sys
    import time

    import torch

    from hunyuan_video.pipelines import HunyuanVideoImageToVideoPipeline, HunyuanVideoPipeline
    from hunyuan_video.pipelines.image_to_video import load_image
    from hunyuan_video.video_io import check_fps, write_output

    def fail(message: object) -> SystemExit:
        message = re.sub("|".join(_GENERATE_OPTIONS), lambda m: _GENERATE_OPTIONS[m[0]], str(message))
        return SystemExit(f"hunyuan-video generate: {message}")

    model = args.model or Path(__file__).parent / TINY_MODEL
    if args.model is None and not Path(model).is_dir():
        raise fail(f"no --model given and this package holds no embedded tiny model ({TINY_MODEL}): pass "
                   "--model PATH, a folder in the official ckpts/ or diffusers layout")
    path = Path(args.output)
    start = time.perf_counter()
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        _quiet()
    try:
        if not args.prompt.strip():
            raise ValueError("the prompt is empty: describe the video to make")
        if args.fps is not None:
            check_fps(args.fps, "--fps")
        kind = _check_output(args.output)
        _check_speed_memory_options(args)
        _check_sparse_attention_options(args)
        if args.cache_threshold is not None and args.cache is None:
            raise ValueError("--cache-threshold needs --cache teacache or --cache fbcache")
        if args.i2v_stability and args.image is None:
            raise ValueError("--i2v-stability needs --image PATH")
        if (args.height is None) != (args.width is None) and args.image is not None:
            raise ValueError("with --image give both --height and --width, or neither (the image's official bucket)")
        image = None if args.image is None else load_image(args.image)
        parallel, device = _start_parallel(args, args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = getattr(torch, args.dtype) if args.dtype else None
        vae_dtype = getattr(torch, args.vae_dtype) if args.vae_dtype else None
        pipeline = HunyuanVideoPipeline if image is None else HunyuanVideoImageToVideoPipeline
        pipe = pipeline.from_pretrained(model, dtype=dtype, device=device, offload=args.offload or False,
                                        attention_backend=args.attention, vae_dtype=vae_dtype,
                                        quantize="fp8" if args.fp8 else None, fp8_matmul=args.fp8_matmul)
        for spec in args.lora:
            lora_path, scale = _lora_spec(spec)
            pipe.load_lora_weights(lora_path, scale, ignore_unknown=args.lora_ignore_unknown)
        _apply_speed_memory_options(pipe, args)
        if pipe.dtype == torch.float16 and torch.device(pipe.device).type == "cpu":
            print("hunyuan-video generate: warning: float16 on the CPU is many times slower than float32 or bfloat16 "
                  "(the VAE decode most): pass --dtype float32 or --dtype bfloat16", file=sys.stderr)
        if args.cache:
            pipe.enable_step_cache(args.cache, args.cache_threshold)
        _apply_sparse_attention_options(pipe, args)
        if parallel.world_size > 1:
            pipe.enable_parallel(parallel)
        load_s = time.perf_counter() - start
        sampling = dict(negative_prompt=args.negative_prompt, height=args.height, width=args.width,
                        num_frames=args.frames, num_inference_steps=args.steps, guidance_scale=args.guidance,
                        cfg_scale=args.cfg_scale, flow_shift=args.shift, seed=args.seed)
        if image is None:
            out = pipe(args.prompt, **sampling)
        else:
            out = pipe(image, args.prompt, i2v_stability=args.i2v_stability, **sampling)
        frames, fps = out.frames[0], pipe.defaults.fps if args.fps is None else args.fps
        if rank != 0:
            return 0
        write_output(args.output, frames, fps)
    except (OSError, ValueError) as error:
        raise fail(error if rank == 0 else f"rank {rank}: {error}") from None
    except KeyboardInterrupt:
        print(f"hunyuan-video generate: interrupted; nothing written to {path}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        _end_parallel()
    times = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in {"load_s": load_s, **out.timings}.items())
    what = f"a folder of {frames.shape[0]} png frames" if kind == "png frames" else f"{kind}, {frames.shape[0]} frames"
    print(f"wrote {path} ({what}, {frames.shape[2]}x{frames.shape[1]})\nseed: {out.seed}\ntime: {times}")
    if out.cache_steps is not None:
        print(f"steps: {out.cache_steps['full']} full, {out.cache_steps['skipped']} skipped "
              f"({args.cache}, threshold {pipe.step_cache.threshold:g})")
    return 0


def _add_calibration_options(p: argparse.ArgumentParser, several_steps: bool = False) -> None:
    """The options `calibrate-cache` and `calibrate-sta` share: the model, the prompts and how they are sampled
    (`several_steps`: `--steps` takes one or more step counts)."""
    p.add_argument("--model", help="model folder (official ckpts/ or diffusers layout); default: the embedded tiny one")
    p.add_argument("--prompt", action="append", dest="prompts", metavar="PROMPT",
                   help="a calibration prompt (repeat the option for more)")
    p.add_argument("--prompts-file", help="a text file of calibration prompts, one a line")
    p.add_argument("--steps", type=int, nargs="+" if several_steps else None,
                   help=("sampling step counts, each prompt sampled at each" if several_steps else "sampling steps")
                   + " (default: the folder's generate.json)")
    p.add_argument("--height", type=int, help="pixels (default: the folder's generate.json)")
    p.add_argument("--width", type=int, help="pixels (default: the folder's generate.json)")
    p.add_argument("--frames", type=int, help="number of frames (default: the folder's generate.json)")
    p.add_argument("--seed", type=int, default=0, help="noise seed of the first prompt (the next ones count up)")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="weights dtype (default: the folder's)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu... (default: cuda when present)")


def _add_calibrate_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate-cache", help="fit the TeaCache polynomial of a model and store it in its folder",
                       description="Sample a few prompts with every step in full, fit the polynomial from the relative "
                                   "change of the first block's modulated input to that of the transformer's output, "
                                   "and write it to MODEL/teacache.json, which `generate --cache teacache` then uses. "
                                   "Fit it on every step count you sample at (e.g. --steps 20 50): outside the "
                                   "changes it was fitted on the polynomial can fall to 0 and skip nearly every step.")
    _add_calibration_options(p, several_steps=True)
    p.add_argument("--degree", type=int, default=4, help="degree of the polynomial")
    p.set_defaults(func=_run_calibrate_cache)


def _calibration_prompts(args: argparse.Namespace) -> list[str]:
    """The prompts of `--prompt` (repeatable) and `--prompts-file` (one a line); a ValueError when there are none."""
    prompts = list(args.prompts or [])
    if args.prompts_file:
        prompts += [line.strip() for line in Path(args.prompts_file).read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError("no calibration prompt: pass --prompt (repeatable) or --prompts-file")
    return prompts


def _run_calibrate_cache(args: argparse.Namespace) -> int:
    import torch

    from hunyuan_video.pipelines import HunyuanVideoPipeline, find_model_folder
    from hunyuan_video.step_cache import calibrate_teacache, write_teacache_coefficients

    def fail(message: object) -> SystemExit:
        message = re.sub("|".join(_GENERATE_OPTIONS), lambda m: _GENERATE_OPTIONS[m[0]], str(message))
        return SystemExit(f"hunyuan-video calibrate-cache: {message}")

    model = args.model or Path(__file__).parent / TINY_MODEL
    try:
        prompts = _calibration_prompts(args)
        if args.degree < 1:
            raise ValueError(f"--degree must be at least 1, got {args.degree}")
        folder = find_model_folder(model, image=False)  # a text-to-video model (the embedded folder holds both)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        pipe = HunyuanVideoPipeline.from_pretrained(model, dtype=getattr(torch, args.dtype) if args.dtype else None,
                                                    device=device)
        call = {"height": args.height, "width": args.width, "num_frames": args.frames}
        steps = args.steps or [pipe.defaults.steps]
        coefficients, pairs = calibrate_teacache(pipe, prompts, args.seed, args.degree, steps, **call)
        path = write_teacache_coefficients(folder.root, coefficients,
                                           {"prompts": len(prompts), "steps": steps, "pairs": pairs})
    except (OSError, ValueError) as error:
        raise fail(error) from None
    print(f"wrote {path}: {', '.join(f'{c:.6g}' for c in coefficients)} (fitted on {pairs} step pairs of "
          f"{len(prompts)} prompts)")
    return 0


def _add_calibrate_sta(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate-sta", help="search the sliding tile windows of a model and store them in its folder",
                       description="Sample a few prompts with full attention and, per block and head, pick the "
                                   "candidate window of fewest tiles whose attention output stays within --tolerance "
                                   "(relative L2) of full attention on the steps after --full-steps; write the plan to "
                                   "MODEL/sliding_tile.json, which `generate --sparse-attention sta` then uses.")
    _add_calibration_options(p)
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="the largest relative error of a head's attention output against full attention (default "
                        "0.05)")
    p.add_argument("--window", type=int, nargs=3, action="append", dest="windows", metavar=("T", "H", "W"),
                   help="a candidate window in tiles (repeat for more; default: every window that fits; the full "
                        "window is always one)")
    p.add_argument("--tile", type=int, nargs=3, metavar=("T", "H", "W"),
                   help="tokens per tile (default: the largest divisor of the token grid up to 6 x 8 x 8)")
    p.add_argument("--full-steps", type=int, default=0,
                   help="the first sampling steps that run full attention, in the search and in the plan (default 0)")
    p.set_defaults(func=_run_calibrate_sta)


def _run_calibrate_sta(args: argparse.Namespace) -> int:
    import torch

    from hunyuan_video.pipelines import HunyuanVideoPipeline, find_model_folder
    from hunyuan_video.sparse_attention import write_sliding_tile_plan
    from hunyuan_video.sta_search import search_sliding_tile_windows

    options = {**_GENERATE_OPTIONS, "full_steps": "--full-steps", "the sliding tile window": "--window",
               "the tile": "--tile"}

    def fail(message: object) -> SystemExit:
        message = re.sub("|".join(options), lambda m: options[m[0]], str(message))
        return SystemExit(f"hunyuan-video calibrate-sta: {message}")

    model = args.model or Path(__file__).parent / TINY_MODEL
    try:
        prompts = _calibration_prompts(args)
        folder = find_model_folder(model, image=False)  # a text-to-video model (the embedded folder holds both)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        pipe = HunyuanVideoPipeline.from_pretrained(model, dtype=getattr(torch, args.dtype) if args.dtype else None,
                                                    device=device)
        pipe.progress = False
        call = {"num_inference_steps": args.steps, "height": args.height, "width": args.width,
                "num_frames": args.frames}
        plan, errors = search_sliding_tile_windows(pipe, prompts, args.tolerance, args.windows,
                                                   None if args.tile is None else tuple(args.tile), args.full_steps,
                                                   args.seed, **call)
        steps = pipe.defaults.steps if args.steps is None else args.steps
        path = write_sliding_tile_plan(folder.root, plan, {"tolerance": args.tolerance, "prompts": len(prompts),
                                                           "steps": steps, "max_error": round(errors.max().item(), 5)})
    except (OSError, ValueError) as error:
        raise fail(error) from None
    windows = [w for heads in plan.windows for w in heads]
    tiles = sum(w[0] * w[1] * w[2] for w in windows) / len(windows)
    print(f"wrote {path}: {len(plan.windows)} blocks x {len(plan.windows[0])} heads, tile "
          f"{' x '.join(map(str, plan.tile))}, {tiles:.1f} tiles per window on average, largest error "
          f"{errors.max().item():.4f} (tolerance {args.tolerance:g}, {len(prompts)} prompts)")
    return 0


def _lora_spec(spec: str) -> tuple[Path, float]:
    """`PATH[:SCALE]` of `--lora` (a path that exists is taken whole, so a colon in it is fine)."""
    path, _, scale = spec.rpartition(":")
    if Path(spec).exists() or not path:
        return Path(spec), 1.0
    try:
        return Path(path), float(scale)
    except ValueError:
        raise ValueError(f"--lora {spec}: expected PATH or PATH:SCALE with a number as SCALE") from None


def _quiet() -> None:
    """Silence this rank's warnings and loading bars (rank 0 alone reports; every rank still prints its error, since
    torchrun may end the others before rank 0 prints)."""
    import warnings

    from transformers.utils import logging

    warnings.simplefilter("ignore")
    logging.disable_progress_bar()


def _end_parallel() -> None:
    """Close the process group `_start_process_group` opened (every rank, also after an error)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make and check datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write captioned synthetic clips (mp4 + metadata.jsonl)")
    s.add_argument("out", help="output folder")
    s.add_argument("--clips", type=int, default=1000, help="number of clips")
    s.add_argument("--first", type=int, default=0,
                   help="index of the first clip (a later one extends a dataset with clips it does not hold)")
    s.add_argument("--seed", type=int, default=0, help="world seed: picks the clips and the held-out combinations")
    s.add_argument("--split", choices=("train", "test"), default="train",
                   help="test: only (colour, shape, motion) combinations that train never shows")
    s.add_argument("--size", type=int, nargs="+", default=[64], metavar="PX", help="frame size: S or H W")
    s.add_argument("--frames", type=int, default=17, help="frames per clip")
    s.add_argument("--fps", type=float, default=8.0, help="frames per second")
    s.add_argument("--two-object-prob", type=float, default=0.25,
                   help="chance that a clip gets a second object (clip i's first object does not depend on it)")
    s.add_argument("--new-concepts", action="store_true",
                   help="the new-concept world: every main object has a colour (pink), shape (heart) or motion "
                        "(moves in a circle) the default world never shows")
    s.add_argument("--light-prob", type=float, default=0.0,
                   help="share of clips on a light background (white, light gray, light blue; default 0)")
    s.add_argument("--scenes", type=float, default=0.0, metavar="SHARE",
                   help="share of clips that are scenes outside the world's templates, for a VAE: any colour, "
                        "gradients, textures, photographs (needs scikit-image; default 0)")
    s.set_defaults(func=_run_data_synth)
    e = data_sub.add_parser("eval", help="score videos against their captions (colour and motion of the main object)")
    e.add_argument("videos", help="folder of videos")
    e.add_argument("--manifest", help="metadata.jsonl naming the videos and captions (default: the folder's own)")
    e.add_argument("--out", help="where to write the JSON report (default: VIDEOS/eval.json)")
    e.add_argument("--new-concepts", action="store_true",
                   help="tell the new-concept world's colours (pink) apart too (captions of `synth --new-concepts`)")
    e.set_defaults(func=_run_data_eval)
    c = data_sub.add_parser("check", help="decode every file; list the samples per bucket and what is skipped")
    c.add_argument("root", help="dataset folder (metadata.jsonl or .txt captions)")
    c.add_argument("--buckets", default="17x64x64,1x64x64", help="FRAMESxHEIGHTxWIDTH, comma separated")
    c.add_argument("--out", help="write the skipped files as JSON here")
    c.set_defaults(func=_run_data_check)
    u = data_sub.add_parser("curate", help="cut raw videos into filtered, captioned clips: a training dataset folder",
                            description="Probe, cut into shots, pick start frames, crop black bars, measure motion "
                                        "and the camera's movement, remove near-duplicates, score, caption and sort "
                                        "into tiers every video under RAW; writes OUT/metadata.jsonl, clips/, "
                                        "clips.parquet, tiers/ and a report. A run again does only what is not done.")
    u.add_argument("raw", help="folder of raw video files (any length, codec, resolution, fps)")
    u.add_argument("out", help="output dataset folder (read by cache, train and train-vae)")
    u.add_argument("--config", help="a JSON file with fields of hunyuan_video.curate.CurateConfig (default: defaults)")
    u.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
    engine = u.add_mutually_exclusive_group()
    engine.add_argument("--ray", action="store_true", help="run the stages as a Ray Data pipeline on a local Ray")
    engine.add_argument("--ray-address", metavar="HOST:PORT", help="run them on the Ray cluster at this address")
    u.add_argument("--quiet", action="store_true", help="no progress bars")
    u.set_defaults(func=_run_data_curate)


def _run_data_synth(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.scenes import generate_mixed
    from hunyuan_video.tiny.synth import SynthConfig, generate

    if len(args.size) > 2:
        raise SystemExit(f"--size takes one or two numbers (S or H W), got {args.size}")
    height, width = args.size if len(args.size) == 2 else args.size * 2
    try:
        cfg = SynthConfig(height=height, width=width, frames=args.frames, fps=args.fps,
                          two_object_prob=args.two_object_prob, light_prob=args.light_prob)
        if args.scenes > 0 and (args.new_concepts or args.first):
            raise ValueError("--scenes makes a folder of its own: it takes neither --new-concepts nor --first")
        if args.scenes > 0:
            out = generate_mixed(args.out, args.clips, seed=args.seed, split=args.split, config=cfg,
                                 scene_share=args.scenes)
        else:
            out = generate(args.out, args.clips, seed=args.seed, split=args.split, config=cfg, first=args.first,
                           new_concepts=args.new_concepts)
    except (ValueError, ImportError) as e:
        raise SystemExit(f"hunyuan-video data synth: {e}") from e
    print(f"wrote {args.clips} {args.split} clips to {out} (manifest: {out / 'metadata.jsonl'})")
    return 0


def _run_data_curate(args: argparse.Namespace) -> int:
    try:
        from hunyuan_video.curate import CurateConfig, curate
        from hunyuan_video.train.common import load_config

        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        config = load_config(CurateConfig, args.config) if args.config else CurateConfig()
        result = curate(args.raw, args.out, config, workers=args.workers, ray=args.ray, ray_address=args.ray_address,
                        progress=not args.quiet)
    except ImportError as e:
        raise SystemExit(f"hunyuan-video data curate: {e.name or e} is missing: pip install 'hunyuan-video[curate]' "
                         "(and [ray] for --ray)") from None
    except (ValueError, OSError) as e:
        raise SystemExit(f"hunyuan-video data curate: {e}") from None
    report = result.report
    print(f"{report['videos']['in']} videos ({result.analyzed} analysed, {result.analysis_cached} cached), "
          f"{report['clips']['found']} clips found, {result.kept} kept ({result.exported} written); "
          f"rejected: {report['clips']['rejected'] or 'none'}; tiers: {report['tiers']}")
    for problem in report["problems"]:
        print(f"  {problem['file']}: {problem['status']}: {problem['reason']}")
    print(f"dataset: {result.out / 'metadata.jsonl'} (report: {result.out / 'report.json'})")
    return 0

def _add_run_dir_options(p: argparse.ArgumentParser) -> None:
    """The trainers' `--resume` and `--overwrite`: what a run may do to an OUT_DIR that holds one."""
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT_DIR/checkpoint.pt, bit-exact; the config must match the run's "
                        "OUT_DIR/config.json except in its logging, checkpoint, sample or validation settings, device, "
                        "gradient_checkpointing, out_dir and export (other differences are named, and refused)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an OUT_DIR that holds a run: the earlier run is moved, whole, to "
                        "OUT_DIR.old-YYYYmmdd-HHMMSS (nothing is deleted). Without --resume or --overwrite a "
                        "non-empty OUT_DIR is refused before anything is written")


def _add_train_vae(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-vae", help="train or fine-tune the 3D causal VAE from a JSON config",
                       description="Train the VAE (L1 or MSE + KL + LPIPS + GAN, progressive stages, tiling-aware "
                                   "fine-tune). Writes checkpoint.pt, log.jsonl, loss.png, val/*.mp4 and vae/ to the "
                                   "out_dir.")
    p.add_argument("config", help="a JSON file with the fields of hunyuan_video.train.vae.VAETrainConfig")
    _add_run_dir_options(p)
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps and export that step's EMA weights to OUT_DIR/vae (resume later)")
    p.add_argument("--out-dir", default=None, help="override the config's out_dir")
    p.set_defaults(func=_run_train_vae)


def _run_train_vae(args: argparse.Namespace) -> int:
    from hunyuan_video.train.common import load_config
    from hunyuan_video.train.distributed import start_from_env
    from hunyuan_video.train.vae import VAETrainConfig, train_vae

    try:
        cfg = load_config(VAETrainConfig, args.config)
        if args.out_dir:
            cfg.out_dir = args.out_dir
        start_from_env()  # under torchrun: every rank trains its share (see train.distributed)
        out = train_vae(cfg, resume=args.resume, max_steps=args.max_steps, overwrite=args.overwrite)
    except (ValueError, OSError) as e:  # a config, data or weights file that is missing or wrong
        raise SystemExit(f"hunyuan-video train-vae: {e}") from None
    finally:
        _end_parallel()
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
        written = ", ".join(name for name in ("log.jsonl", "loss.png", "checkpoint.pt", "checkpoint.dcp")
                            if (out / name).exists())
        print(f"done: {out} ({written}; the EMA weights of the last step in {out / 'vae'})")
    return 0


def _run_data_check(args: argparse.Namespace) -> int:
    import warnings

    from tqdm import tqdm

    from hunyuan_video.data import DataWarning, parse_buckets
    from hunyuan_video.data.dataset import VideoDataset
    from hunyuan_video.video_io import read_video

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the summary below lists them all
        try:
            dataset = VideoDataset(args.root, parse_buckets(args.buckets), verify=True)
        except ValueError as e:
            raise SystemExit(f"hunyuan-video data check: {e}") from e
        for sample in tqdm(dataset.samples, desc="decoding"):
            try:
                frames = 1 if sample.is_image else len(read_video(sample.file))
            except ValueError as e:
                dataset.report.add(sample.file, f"decode failed: {e}")
                continue
            if frames < sample.frames:
                dataset.report.add(sample.file, f"truncated: {frames} of {sample.frames} frames decode")
    skipped = {file for file, _ in dataset.report.skipped}  # truncated or undecodable: in no bucket's total
    whole = {i for i, sample in enumerate(dataset.samples) if str(sample.file) not in skipped}
    print(f"{len(dataset)} samples listed, {len(whole)} decode in full")
    for bucket, group in sorted(dataset.groups.items()):
        print(f"  bucket {bucket}: {len(whole.intersection(group))}")
    print(dataset.report.summary())
    if args.out:
        dataset.report.save(args.out)
    return 0


def _run_data_eval(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.evaluate import NEW_CONCEPT_PALETTE, evaluate_folder
    from hunyuan_video.tiny.synth import COLOURS

    out = Path(args.out or Path(args.videos) / "eval.json")
    try:
        if not Path(args.videos).is_dir():
            raise ValueError(f"videos folder {args.videos} does not exist")
        manifest = Path(args.manifest or Path(args.videos) / "metadata.jsonl")
        if not manifest.is_file():
            raise ValueError(f"no manifest at {manifest}: pass --manifest, the metadata.jsonl naming the videos")
        report = evaluate_folder(args.videos, args.manifest, out, NEW_CONCEPT_PALETTE if args.new_concepts else COLOURS)
    except (OSError, ValueError) as e:
        raise SystemExit(f"hunyuan-video data eval: {e}") from None
    speed = report["speed_accuracy"]
    print(f"{report['n']} videos: colour {report['colour_accuracy']:.1%}, motion {report['motion_accuracy']:.1%}"
          + (f", speed {speed:.1%}" if speed is not None else "") + f" (report: {out})")
    return 0


def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="encode a dataset once for transformer training (VAE latents + text states)",
                       description="Encode every clip of the config's dataset (and of each of its extra_data) into "
                                   "every bucket of its curriculum with the VAE, and every caption with both text "
                                   "encoders, into safetensors files in the config's cache_dir (each extra dataset "
                                   "in its own). An up-to-date cache is left as it is. `train` refuses a cache built "
                                   "from other inputs.")
    p.add_argument("config", help="a JSON file with the fields of hunyuan_video.train.dit.DiTTrainConfig")
    p.set_defaults(func=_run_cache)


def _run_cache(args: argparse.Namespace) -> int:
    from hunyuan_video.train.cache import build_cache
    from hunyuan_video.train.common import load_config, resolve_device
    from hunyuan_video.train.dit import DiTTrainConfig

    rank = int(os.environ.get("RANK", "0"))
    try:
        config = load_config(DiTTrainConfig, args.config)
        config.device = _start_process_group(str(resolve_device(config.device)))  # torchrun: ranks share the clips
        out = build_cache(config, progress=rank == 0)
    except (ValueError, OSError) as e:  # a config, data or weights file that is missing or wrong
        raise SystemExit(f"hunyuan-video cache: {e}" if rank == 0 else f"hunyuan-video cache: rank {rank}: {e}"
                         ) from None
    finally:
        _end_parallel()
    if rank == 0:
        print(f"wrote the latent cache to {', '.join(map(str, out))}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune the transformer (flow matching) from a JSON config",
                       description="Flow-matching training over the latent cache (run `cache` first): progressive "
                                   "stages of buckets, caption dropout, AdamW, warm-up, clipping, EMA. Writes "
                                   "checkpoint.pt, log.jsonl, loss.png, samples/ and transformer_ema.safetensors.")
    p.add_argument("config", help="a JSON file with the fields of hunyuan_video.train.dit.DiTTrainConfig")
    _add_run_dir_options(p)
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps and write that step's EMA weights to OUT_DIR only (resume later); "
                        "the config's `export` is written by a finished run")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from hunyuan_video.train.common import load_config
    from hunyuan_video.train.distributed import start_from_env
    from hunyuan_video.train.dit import DiTTrainConfig, train

    try:
        config = load_config(DiTTrainConfig, args.config)
        start_from_env()  # under torchrun: every rank trains its share (see train.distributed)
        out = train(config, resume=args.resume, max_steps=args.max_steps, overwrite=args.overwrite)
    except (ValueError, OSError) as e:  # a config, data or weights file that is missing or wrong
        raise SystemExit(f"hunyuan-video train: {e}") from None
    finally:
        _end_parallel()
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
        print(f"training output in {out}")
    return 0


# The tiny world's commands (with `data synth` and `data eval`): the only part of the CLI that imports
# hunyuan_video.tiny, and only inside their `_run_*` functions.


def _add_lora(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lora", help="convert LoRA files between layouts, merge one into a transformer")
    lora_sub = p.add_subparsers(dest="lora_command", required=True)
    c = lora_sub.add_parser("convert", help="rewrite a LoRA file in another layout (the same update)")
    c.add_argument("src", metavar="IN", help="a LoRA file: diffusers, original-key PEFT or kohya layout")
    c.add_argument("dst", metavar="OUT", help="where to write the converted file (.safetensors)")
    c.add_argument("--to", required=True, choices=("kohya", "diffusers", "original"), help="the layout to write")
    c.set_defaults(func=_run_lora_convert)
    m = lora_sub.add_parser("merge", help="write a transformer with a LoRA merged into its weights")
    m.add_argument("base", metavar="BASE", help="transformer weights (.safetensors, official .pt or diffusers folder)")
    m.add_argument("lora", metavar="LORA", help="a LoRA file in any layout `convert` reads")
    m.add_argument("dst", metavar="OUT", help="where to write the merged transformer (.safetensors, official keys)")
    m.add_argument("--scale", type=float, default=1.0, help="the LoRA's scale (default 1)")
    m.set_defaults(func=_run_lora_merge)


def _lora_fail(command: str, dst: str, error: Exception) -> SystemExit:
    Path(dst).unlink(missing_ok=True)
    return SystemExit(f"hunyuan-video lora {command}: {error}")


def _run_lora_convert(args: argparse.Namespace) -> int:
    from hunyuan_video.lora_formats import convert_lora

    if not args.dst.endswith(".safetensors"):
        raise SystemExit(f"hunyuan-video lora convert: OUT {args.dst} must end in .safetensors")
    try:
        convert_lora(args.src, args.dst, args.to)
    except (OSError, ValueError) as error:
        raise _lora_fail("convert", args.dst, error) from None
    print(f"wrote {args.dst} ({args.to} layout)")
    return 0


def _run_lora_merge(args: argparse.Namespace) -> int:
    from hunyuan_video.checkpoint import load_transformer, save_transformer
    from hunyuan_video.lora import bake_lora, load_lora

    if not args.dst.endswith(".safetensors"):
        raise SystemExit(f"hunyuan-video lora merge: OUT {args.dst} must end in .safetensors")
    try:
        transformer = load_transformer(args.base)
        load_lora(transformer, args.lora, args.scale)
        bake_lora(transformer)
        save_transformer(transformer, args.dst)
    except (OSError, ValueError) as error:
        raise _lora_fail("merge", args.dst, error) from None
    print(f"wrote {args.dst} ({args.lora} merged at scale {args.scale})")
    return 0


def _add_tiny(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny", help="tools of the embedded tiny model: grow or narrow trained weights",
                       description="Write a grown (or narrowed) copy of trained weights that computes the same "
                                   "function; a training config then starts from it with init_from.")
    tiny_sub = p.add_subparsers(dest="tiny_command", required=True)
    t = tiny_sub.add_parser("grow-transformer", help="deepen and/or widen a transformer (the same function)")
    t.add_argument("src", metavar="IN", help="transformer weights (.safetensors, official .pt or diffusers folder)")
    t.add_argument("dst", metavar="OUT", help="where to write the grown transformer (.safetensors)")
    t.add_argument("--depth", type=int, nargs=2, metavar=("DOUBLE", "SINGLE"),
                   help="block counts after growing; new blocks start as the identity")
    t.add_argument("--width", type=int, nargs=2, metavar=("HIDDEN", "HEADS"),
                   help="hidden size and heads after growing (the head size stays), applied after --depth")
    t.add_argument("--seed", type=int, default=0, help="initialisation of the new channels of --width")
    t.set_defaults(func=_run_tiny_grow_transformer)
    v = tiny_sub.add_parser("grow-vae", help="widen a VAE's blocks by one factor (the same encode and decode)")
    v.add_argument("src", metavar="IN", help="VAE weights (a model folder or file)")
    v.add_argument("dst", metavar="OUT_DIR", help="model folder to write (model.safetensors + config.json)")
    v.add_argument("--widths", type=int, nargs="+", required=True, metavar="C",
                   help="block_out_channels after growing: the old ones times one factor")
    v.add_argument("--part", choices=("both", "encoder", "decoder"), default="both", help="which side to widen")
    v.add_argument("--seed", type=int, default=0, help="initialisation of the new channels")
    v.set_defaults(func=_run_tiny_grow_vae)
    n = tiny_sub.add_parser("narrow-vae-encoder",
                            help="drop the channels a widened, untrained encoder added (exact; refused otherwise)")
    n.add_argument("src", metavar="IN", help="VAE weights (a model folder or file)")
    n.add_argument("dst", metavar="OUT_DIR", help="model folder to write (model.safetensors + config.json)")
    n.add_argument("--widths", type=int, nargs="+", required=True, metavar="C",
                   help="the encoder's block_out_channels after narrowing")
    n.set_defaults(func=_run_tiny_narrow_vae_encoder)
    w = tiny_sub.add_parser("add-words", help="append words to a tiny text encoder's vocabulary (old ids unchanged)")
    w.add_argument("src", metavar="IN", help="a word-level text encoder folder (tiny text_encoder or text_encoder_2)")
    w.add_argument("dst", metavar="OUT", help="the folder to write the extended encoder to")
    w.add_argument("words", nargs="+", metavar="WORD=LIKE[,LIKE...]",
                   help="a new word and the known words whose mean embedding it starts from, e.g. pink=red,purple")
    w.set_defaults(func=_run_tiny_add_words)
    _add_tiny_i2v(tiny_sub)


def _run_tiny_grow_transformer(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.grow import grow_transformer_file

    if not args.dst.endswith(".safetensors"):
        raise SystemExit(f"hunyuan-video tiny grow-transformer: OUT must be a .safetensors file, got {args.dst}")
    try:
        model = grow_transformer_file(args.src, args.dst, depth=args.depth, width=args.width, seed=args.seed)
    except (OSError, ValueError) as e:
        raise SystemExit(f"hunyuan-video tiny grow-transformer: {e}") from None
    c = model.config
    print(f"wrote {args.dst} ({c.mm_double_blocks_depth} double + {c.mm_single_blocks_depth} single blocks, "
          f"hidden size {c.hidden_size} in {c.heads_num} heads)")
    return 0


def _run_tiny_grow_vae(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.grow import grow_vae_folder

    try:
        vae = grow_vae_folder(args.src, args.dst, args.widths, part=args.part, seed=args.seed)
    except (OSError, ValueError) as e:
        raise SystemExit(f"hunyuan-video tiny grow-vae: {e}") from None
    print(f"wrote {args.dst} (encoder {list(vae.config.block_out_channels)}, "
          f"decoder {list(vae.config.decoder_widths)})")
    return 0


def _run_tiny_narrow_vae_encoder(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.grow import narrow_vae_encoder_folder

    try:
        vae = narrow_vae_encoder_folder(args.src, args.dst, args.widths)
    except (OSError, ValueError) as e:
        raise SystemExit(f"hunyuan-video tiny narrow-vae-encoder: {e}") from None
    print(f"wrote {args.dst} (encoder {list(vae.config.block_out_channels)}, "
          f"decoder {list(vae.config.decoder_widths)})")
    return 0


def _version() -> str:
    from hunyuan_video import __version__

    return f"hunyuan-video {__version__}"


def _run_tiny_add_words(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.text_encoders import add_words

    words = {}
    for item in args.words:
        word, _, like = item.partition("=")
        if not word or not like:
            raise SystemExit(f"hunyuan-video tiny add-words: {item!r} is not WORD=LIKE[,LIKE...]")
        words[word] = like.split(",")
    try:
        ids = add_words(args.src, args.dst, words)
    except (OSError, ValueError) as e:
        raise SystemExit(f"hunyuan-video tiny add-words: {e}") from None
    print(f"wrote {args.dst} (new ids: {', '.join(f'{w}={i}' for w, i in ids.items())})")
    return 0


def _add_tiny_i2v(tiny_sub: argparse._SubParsersAction) -> None:
    """`tiny make-llava` and `tiny to-i2v`: the tiny image-to-video model's text encoder and transformer."""
    m = tiny_sub.add_parser("make-llava", help="a LLaVA text encoder (text_encoder_i2v/) around the tiny Llama")
    m.add_argument("src", metavar="LLAMA_DIR", help="the tiny Llama's folder (text_encoder/)")
    m.add_argument("dst", metavar="OUT_DIR", help="the folder to write (model, tokenizer, image processor)")
    m.add_argument("--image-size", type=int, default=64, help="pixels of the vision tower's square input")
    m.add_argument("--patch-size", type=int, default=8, help="pixels of its patches ((size / patch)^2 image states)")
    m.add_argument("--seed", type=int, default=0, help="initialisation of the vision tower and projector")
    m.set_defaults(func=_run_tiny_make_llava)
    i = tiny_sub.add_parser("to-i2v", help="a text-to-video transformer as a token-replace image-to-video one")
    i.add_argument("src", metavar="SRC", help="text-to-video transformer weights (.safetensors, official .pt...)")
    i.add_argument("dst", metavar="DST", help="the .safetensors file to write (a config.json is written beside it)")
    i.set_defaults(func=_run_tiny_to_i2v)


def _run_tiny_make_llava(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.i2v import make_tiny_llava

    try:
        llava = make_tiny_llava(args.src, args.dst, args.image_size, args.patch_size, args.seed)
    except (OSError, ValueError) as e:
        raise SystemExit(f"hunyuan-video tiny make-llava: {e}") from None
    images = (args.image_size // args.patch_size) ** 2
    print(f"wrote {args.dst} (vocabulary {llava.config.text_config.vocab_size}, {images} image states)")
    return 0


def _run_tiny_to_i2v(args: argparse.Namespace) -> int:
    from hunyuan_video.tiny.i2v import token_replace_transformer

    try:
        token_replace_transformer(args.src, args.dst)
    except (OSError, ValueError) as e:
        raise SystemExit(f"hunyuan-video tiny to-i2v: {e}") from None
    print(f"wrote {args.dst} (token_replace, guidance_embed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hunyuan-video` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)

