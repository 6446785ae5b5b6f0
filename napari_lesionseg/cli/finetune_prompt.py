"""`lesionseg finetune-prompt`: fine-tune the prompt network (line / box → mask) on your corrected masks.

    lesionseg finetune-prompt --base prompt_unet --images DIR --masks DIR --name my-scanner
    lesionseg finetune-prompt --base busi_line_unet ...   # the line-only ultrasound network: lines only

Every lesion of every mask (masks with the images' file names) trains the prompt network with the prompts a reader
would draw on it (its longest diameter, its box); a few hundred steps on the CPU take minutes. The new network is
published in your models folder (`lesionseg models`, kind prompt) and used with
`lesionseg lines-to-masks --model NAME` or chosen in the Annotations dock. `lesionseg train --base prompt_unet`
runs the same.
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("finetune-prompt", help="fine-tune the line/box prompt network on corrected masks",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--base", default="prompt_unet", help="prompt network to start from (default prompt_unet)")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--masks", required=True, help="folder of corrected masks with the images' file names")
    p.add_argument("--name", required=True, help="name of the new prompt network")
    add_tuning_options(p)
    p.set_defaults(func=run)


def add_tuning_options(p) -> None:
    from ..core.training.prompt_finetune import DEFAULT_STEPS

    p.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default {DEFAULT_STEPS})")


def run(args) -> int:
    from ..core.training.prompt_finetune import DEFAULT_LR, DEFAULT_STEPS

    return finetune(args.base, args.images, args.masks, args.name,
                    steps=getattr(args, "steps", None) or DEFAULT_STEPS,
                    lr=getattr(args, "learning_rate", None) or DEFAULT_LR, output_dir=getattr(args, "output_dir", None),
                    seed=getattr(args, "seed", None) or 0, quiet=getattr(args, "quiet", False))


def finetune(base, images, masks, name, *, steps, lr, output_dir=None, seed=0, quiet=False) -> int:
    """The one CLI path for both `finetune-prompt` and `train --base <a prompt network>`."""
    from pathlib import Path

    from ..core.io.output_guard import check_outputs
    from ..core.models.registry import user_prompt_dir
    from ..core.names import check_model_name
    from ..core.training.prompt_finetune import base_prompt_card, finetune_prompt_model

    check_model_name(name)
    base_prompt_card(base)  # refuse a segmentation base before reading any image
    out = Path(output_dir) if output_dir else user_prompt_dir()
    check_outputs({"--images": images, "--masks": masks}, {"--output-dir" if output_dir else "the model folder": out},
                  folders=("--output-dir", "the model folder"))
    last = [-1]

    def show(step: int, total: int) -> None:
        pct = 100 * step // total
        if not quiet and (pct // 10 != last[0] // 10 or step == total):
            last[0] = pct
            print(f"step {step}/{total}", flush=True)

    card = finetune_prompt_model(base, images, masks, name, steps=steps, progress=show, lr=lr, seed=seed,
                                 output_dir=output_dir)
    print(f"published {card.name} (prompt network) -> {card.path}")
    print(f"use it: lesionseg lines-to-masks --model {card.name} …, or choose it in the Annotations dock",
          file=sys.stdout)
    return 0


def is_prompt_base(base: str | None) -> bool:
    """True when `lesionseg train --base` names a prompt network: `train` then fine-tunes it here."""
    from ..core.annotations.line_model import prompt_card_path

    return bool(base) and prompt_card_path(str(base)) is not None


def run_from_train(args) -> int:
    """`lesionseg train --base prompt_unet --images DIR --masks DIR --name NAME`: the prompt fine-tuning."""
    from ..core.errors import LesionSegError

    missing = [o for o in ("images", "masks", "name") if not getattr(args, o, None)]
    if missing:
        raise LesionSegError("fine-tuning a prompt network needs " + ", ".join("--" + m for m in missing) + ".")
    return run(args)
