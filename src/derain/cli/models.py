"""``derain models``: the registered architectures, their cards and published weights."""

from __future__ import annotations

import argparse
import dataclasses

from ..registry import list_models, model_card

# Pretrained weights that derain can download; none are published yet.
PRETRAINED: dict[str, list[str]] = {}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list architectures and weights",
        description="List the registered architectures, or show the full card of one.",
    )
    parser.add_argument("name", nargs="?", choices=list_models(), help="show this model's card")
    parser.add_argument("--filter", default="", help="only names containing this text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.name:
        card = model_card(args.name)
        for field in dataclasses.fields(card):
            print(f"{field.name}: {getattr(card, field.name)}")
        print(f"pretrained weights: {', '.join(PRETRAINED.get(args.name, [])) or 'none published yet'}")
        return 0
    print(f"{'model':<12} {'params':>9} {'multiple':>8} {'min':>4} {'fp16':>5}  official code")
    for name in list_models(args.filter):
        card = model_card(name)
        params = f"{card.num_params / 1e6:.2f}M"
        fp16 = "yes" if card.half_precision else "no"
        print(f"{name:<12} {params:>9} {card.size_multiple:>8} {card.min_size:>4} {fp16:>5}  {card.official_repo or '-'}")
    published = sum(map(len, PRETRAINED.values()))
    print(f"pretrained weights: {published or 'none published yet'}; run with --weights PATH")
    return 0
