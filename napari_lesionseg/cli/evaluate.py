"""`lesionseg evaluate`: how a model does on your labelled images, before you trust it.

    lesionseg evaluate --model ultrasound-lesion --images cases/images --masks cases/masks --output per_case.csv

Images and masks are paired by file stem; each image is segmented exactly as `lesionseg predict` would. Prints a
summary (mean Dice with a bootstrap 95% interval, misses, false lesions on lesion-free images, per class when the
names start with benign_/malignant_/normal_) and writes one CSV row per case. A case that fails (unreadable,
mask of another size) is reported in its row and the run goes on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import LesionSegError
from ._inputs import add_flips_option, add_gate_option


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="measure a model on a folder of images with their true masks")
    p.add_argument("--model", required=True, help="model name (see `lesionseg models`) or a model card path")
    p.add_argument("--images", required=True, help="folder of images (files, or DICOM series folders)")
    p.add_argument("--masks", required=True,
                   help="folder of true masks named like the images (case.png or case_mask.png; empty = no lesion)")
    p.add_argument("--output", help="per-case CSV to write (default: print the summary only)")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--series", help="when an image folder holds several DICOM series: the one to use "
                                    "(its series number or part of its description)")
    add_gate_option(p)
    add_flips_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..core.evaluate import evaluate_folder, summary_line, write_csv

    if args.output and not args.output.lower().endswith(".csv"):
        raise LesionSegError(f"--output must be a .csv file (got {Path(args.output).name}).")
    from ..core.io.output_guard import check_outputs, folder_files, model_files

    check_outputs({"--images": folder_files(args.images), "--masks": folder_files(args.masks),
                   "--model": model_files(args.model)}, {"--output": args.output})
    bars = []  # made at the first case, so a folder refused before any case prints no empty bar

    def progress(done: int, total: int, name: str) -> None:
        if not bars:
            bars.append(tqdm(desc="evaluating", unit="case", file=sys.stderr, total=total))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    try:
        ev = evaluate_folder(args.model, args.images, args.masks, threshold=args.threshold, device=args.device,
                             series=args.series, progress=progress, gate=args.gate, flips=not args.no_flips)
    finally:
        for bar in bars:
            bar.close()
    for p in ev.images_without_mask:
        print(f"  no mask for image: {p.name}", file=sys.stderr)
    for p in ev.masks_without_image:
        print(f"  no image for mask: {p.name}", file=sys.stderr)
    for c in ev.cases:
        if c.error:
            print(f"  failed: {c.name}: {c.error}", file=sys.stderr)
    if args.output:
        out = write_csv(ev.cases, args.output)
        print(f"per-case table: {out}")
    print(f"{ev.model}: {summary_line(ev.summary)}")
    return 0 if ev.summary["n_cases"] else 2
