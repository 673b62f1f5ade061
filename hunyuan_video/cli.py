"""The `hunyuan-video` command: each subcommand lives in the module that does its job."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="hunyuan-video", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_info, _add_data):
        add(sub)
    return parser


# Each `_add_*` adds one subcommand's parser and sets `func`; heavy imports happen inside `func` only.


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print what a model folder holds")
    p.add_argument("model", help="a model folder (official ckpts/ or diffusers layout)")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    raise SystemExit("hunyuan-video info: not implemented yet")


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make and check datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write captioned synthetic clips (mp4 + metadata.jsonl)")
    s.add_argument("out", help="output folder")
    s.add_argument("--clips", type=int, default=1000, help="number of clips")
    s.add_argument("--seed", type=int, default=0, help="world seed: picks the clips and the held-out combinations")
    s.add_argument("--split", choices=("train", "test"), default="train",
                   help="test: only (colour, shape, motion) combinations that train never shows")
    s.add_argument("--size", type=int, nargs="+", default=[64], metavar="PX", help="frame size: S or H W")
    s.add_argument("--frames", type=int, default=17, help="frames per clip")
    s.add_argument("--fps", type=float, default=8.0, help="frames per second")
    s.set_defaults(func=_run_data_synth)


def _run_data_synth(args: argparse.Namespace) -> int:
    from hunyuan_video.data.synth import SynthConfig, generate

    if len(args.size) > 2:
        raise SystemExit(f"--size takes one or two numbers (S or H W), got {args.size}")
    height, width = args.size if len(args.size) == 2 else args.size * 2
    try:
        cfg = SynthConfig(height=height, width=width, frames=args.frames, fps=args.fps)
        out = generate(args.out, args.clips, seed=args.seed, split=args.split, config=cfg)
    except ValueError as e:
        raise SystemExit(f"hunyuan-video data synth: {e}") from e
    print(f"wrote {args.clips} {args.split} clips to {out} (manifest: {out / 'metadata.jsonl'})")
    return 0


def _version() -> str:
    from hunyuan_video import __version__

    return f"hunyuan-video {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hunyuan-video` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
