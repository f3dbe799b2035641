"""``derain models``: the registered architectures, their cards and the shipped pretrained weights."""

from __future__ import annotations

import argparse
import dataclasses

from .. import pretrained
from ..factory import list_models, model_card


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list architectures and pretrained weights",
        description="List the registered architectures and pretrained weights, or show the full card of one.",
    )
    parser.add_argument("name", nargs="?", choices=list_models() + sorted(pretrained.catalogue().cards), help="show this card")
    parser.add_argument("--filter", default="", help="only names containing this text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    shipped = pretrained.catalogue().cards
    if args.name in shipped:
        card = shipped[args.name]
        for field in dataclasses.fields(card):
            print(f"{field.name}: {getattr(card, field.name)}")
        print(f"size: {card.size_bytes / 2**20:.1f} MB")
        return 0
    if args.name:
        card = model_card(args.name)
        for field in dataclasses.fields(card):
            print(f"{field.name}: {getattr(card, field.name)}")
        tags = [tag for tag, weights in shipped.items() if weights.architecture == args.name]
        print(f"pretrained weights: {', '.join(tags) or 'none shipped; run with --weights PATH'}")
        return 0
    print(f"{'model':<12} {'params':>9} {'multiple':>8} {'min':>4} {'fp16':>5}  official code")
    for name in list_models(args.filter):
        card = model_card(name)
        params = f"{card.num_params / 1e6:.2f}M"
        fp16 = "yes" if card.half_precision else "no"
        print(f"{name:<12} {params:>9} {card.size_multiple:>8} {card.min_size:>4} {fp16:>5}  {card.official_repo or '-'}")
    print()
    shipped = {tag: card for tag, card in shipped.items() if args.filter in tag or args.filter in card.architecture}
    if not shipped:
        print("pretrained weights: none shipped with this installation; run with --weights PATH")
    for tag, card in sorted(shipped.items()):
        print(f"pretrained {tag} ({card.size_bytes / 2**20:.1f} MB): {card.summary()}")
    return 0
