"""``derain demo``: serve the local web page (needs the optional extra ``derain[demo]``)."""

from __future__ import annotations

import argparse
import sys

from ..demo import DEFAULT_MAX_PIXELS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="serve a local web page that derains uploaded photos",
        description="Serve a web page: upload a rainy photo, compare before and after, download the PNG.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger uploads")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..demo.app import launch
    except ImportError as err:
        print(f"derain demo: error: {err}; install the extra: pip install 'derain[demo]'", file=sys.stderr)
        return 2
    launch(host=args.host, port=args.port, device=args.device, max_pixels=args.max_pixels)
    return 0
