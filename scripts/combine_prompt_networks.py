"""Combine prompt networks (e.g. two seeds of one recipe) into one prompt card whose probabilities are averaged.

    python scripts/combine_prompt_networks.py --members A/prompt_unet.json B/prompt_unet.json --out DIR [--force]
        [--tta invert]   # fewer test-time views: two members at the cost of one network's four views

Writes DIR/prompt_unet.safetensors then DIR/prompt_unet.json, each atomically; the members' files are only read
(DIR may hold the first member: it is read before anything is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_lesionseg.core.errors import LesionSegError  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", nargs="+", required=True, help="prompt cards (.json) to combine")
    ap.add_argument("--out", required=True, help="folder for the combined card")
    ap.add_argument("--name", default="prompt_unet")
    ap.add_argument("--force", action="store_true", help="replace a card of that name in --out")
    ap.add_argument("--tta", nargs="*", choices=["mirror", "invert"],
                    help="test-time views of the combined card (default: the members'; none = one pass each)")
    args = ap.parse_args(argv)

    from napari_lesionseg.core.models.ensemble import combine_prompt
    from napari_lesionseg.core.training.prompt_finetune import write_prompt_files

    out = Path(args.out)
    try:
        if (out / f"{args.name}.json").exists() and not args.force:
            raise LesionSegError(f"{out / (args.name + '.json')} exists; pass --force to replace it.")
        net, card = combine_prompt(args.members, args.name)
        if args.tta is not None:
            card["tta"] = list(args.tta)
    except LesionSegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    write_prompt_files(net, card, out)
    print(f"wrote {out / (args.name + '.json')} ({card['members']} members)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
