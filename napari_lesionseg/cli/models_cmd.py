"""`lesionseg models`: the models the dock's dropdown offers, shipped and fine-tuned, and the prompt networks
(kind `prompt`: line, box or click → mask) that the Annotations dock uses."""

from __future__ import annotations

import json

from ..core.models import default_registry


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list available models (shipped and fine-tuned)")
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    cards = default_registry().cards(kind=None)
    if args.json:
        print(json.dumps([c.to_dict() | {"path": str(c.path)} for c in cards], indent=2))
        return 0
    if not cards:
        print("No models found.")
        return 0
    print(f"{'name':28s} {'kind':12s} {'modality':12s} {'network':32s} {'measured (all figures: --json)'}")
    for c in cards:
        print(f"{c.name:28s} {c.kind:12s} {c.modality:12s} {c.network:32s} {c.headline_metric()}")
        print(f"{'':28s} {c.path}")
    return 0
