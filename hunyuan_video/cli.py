"""The `hunyuan-video` command: each subcommand lives in the module that does its job."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="hunyuan-video", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_info,):
        add(sub)
    return parser


# Each `_add_*` adds one subcommand's parser and sets `func`; heavy imports happen inside `func` only.


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print what a model folder holds")
    p.add_argument("model", help="a model folder (official ckpts/ or diffusers layout)")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    raise SystemExit("hunyuan-video info: not implemented yet")


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
