"""`lesionseg predict`: run a model on a file or a whole folder (a cohort); masks keep the input's geometry.

A folder gives one output per readable input; a file that fails is reported and the run goes on. Under
`torchrun` the files are shared out across processes (each rank takes every WORLD_SIZE-th file).

`--output-format seg` (or an output ending in .dcm) writes a DICOM SEG referring to the DICOM source. With
`--dicomweb URL --study UID [--series UID]` the series comes from a PACS and the SEG (with a measurement report)
is stored back to the same study; the password or token comes from an environment variable, never the command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core.errors import LesionSegError
from ._inputs import add_flips_option, add_gate_option, add_series_option, warn


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="segment a scan or a folder of scans with a model")
    p.add_argument("--model", required=True, help="model name (see `lesionseg models`) or a model card path")
    p.add_argument("--input", help="image/volume file, DICOM series folder, or a folder of files")
    p.add_argument("--output",
                   help="mask file (.nii.gz, .png, .tif, .dcm = DICOM SEG), or a folder when --input is a folder "
                        "(optional with --dicomweb: a local copy of the SEG)")
    p.add_argument("--pre", help="DCE-MRI: the pre-contrast scan; the model then sees --input minus it "
                                 "(post − pre subtraction, as `mri-lesion` was trained on)")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--probabilities", help="also write the probability map here (file, or folder for a cohort)")
    p.add_argument("--batch-size", type=int, default=8)
    add_flips_option(p)
    p.add_argument("--output-format", default=None,
                   help="for folders: mask file extension (default .nii.gz for NIfTI/DICOM inputs, else .png); "
                        "'seg' writes DICOM SEG files (.dcm) for DICOM inputs")
    p.add_argument("--force", action="store_true",
                   help="run even when the model is for another modality, or for colour (H&E) images and the input "
                        "is grayscale (refused otherwise: the result would mean nothing)")
    add_gate_option(p)
    add_series_option(p)  # with --dicomweb: the series' UID (needed when the study has several)
    from .pacs_args import add_pacs_arguments

    add_pacs_arguments(p, study_help="with --dicomweb: the study to segment (its SEG is stored back there)")
    p.add_argument("--no-store", action="store_true", help="with --dicomweb: do not store the SEG on the PACS")
    p.set_defaults(func=run)


def _output_name(src: Path, fmt: str | None) -> str:
    name = src.name
    low = name.lower()
    for suf in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".svs"):
        if low.endswith(suf):
            stem = name[: -len(suf)]
            default = ".nii.gz" if suf in (".nii.gz", ".nii", ".dcm") else (".tif" if suf in (".tif", ".tiff", ".svs") else ".png")
            return stem + "_mask" + (fmt or default)
    return name + "_mask" + (fmt or ".nii.gz")


def _extension(fmt: str | None) -> str | None:
    """--output-format as a file extension: 'seg' (DICOM SEG) is '.dcm'; 'png' or '.png' is '.png'."""
    if not fmt:
        return None
    fmt = fmt.strip().lower()
    if fmt in ("seg", "dicom-seg", "dcm"):
        return ".dcm"
    return fmt if fmt.startswith(".") else f".{fmt}"


def seg_options(card, edited: bool = False) -> dict:
    """What a DICOM SEG says about the model that made a mask (names, algorithm, automatic or corrected)."""
    from ..core.io.dicom_seg import SegAlgorithm

    return {"class_names": [c.name for c in card.classes], "algorithm": SegAlgorithm.from_card(card),
            "edited": edited}


def predict_file(predictor, src: Path, out: Path, prob_out: Path | None, threshold: float | None,
                 progress=None, pre: Path | None = None, series: str | None = None, force: bool = False,
                 gate: bool = True, on_gate=None) -> Path:
    from ..core.inference.run import ModelMismatch, segment_file
    from ..core.io import write_mask, write_probabilities

    try:
        scan, probs, mask = segment_file(predictor, src, threshold, pre=pre, progress=progress, series=series,
                                         force=force, notice=warn, gate=gate, on_gate=on_gate)
    except ModelMismatch as e:
        raise LesionSegError(f"{e} Pass --force to run it anyway.") from None
    write_mask(mask, scan.geometry, out, source_path=src, seg=seg_options(predictor.card))
    if prob_out is not None:
        fg = probs if not predictor.card.multiclass else 1.0 - probs[0]
        write_probabilities(fg, scan.geometry, prob_out, source_path=src)
    return out


def run(args) -> int:
    from ..core.io import MASK_SUFFIXES, can_read, read_scan  # noqa: F401  (imported early: clear error if missing)
    from ..core.models import default_registry

    args.output_format = _extension(args.output_format)
    if args.dicomweb:
        from .pacs_predict import run_dicomweb

        return run_dicomweb(args)
    if not args.input or not args.output:
        raise LesionSegError("Give --input and --output (or --dicomweb URL --study UID to segment a study on a PACS).")
    src = Path(args.input)
    if not src.exists():
        raise LesionSegError(f"Input not found: {src}")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise LesionSegError(f"--threshold must lie between 0 and 1 (got {args.threshold}).")
    is_cohort = src.is_dir() and not _is_dicom_series(src)
    out_name = Path(args.output).name.lower()
    if not is_cohort and args.output_format == ".dcm" and not out_name.endswith(".dcm"):
        raise LesionSegError("--output-format seg writes a DICOM SEG: name the output *.dcm, "
                             f"not {Path(args.output).name}.")
    if not is_cohort and not out_name.endswith(MASK_SUFFIXES):
        raise LesionSegError(f"Cannot write {Path(args.output).name}: use one of {', '.join(MASK_SUFFIXES)}.")
    if not is_cohort and args.probabilities and not Path(args.probabilities).name.lower().endswith(MASK_SUFFIXES):
        raise LesionSegError(f"Cannot write --probabilities {Path(args.probabilities).name}: use one of "
                             f"{', '.join(MASK_SUFFIXES)}.")
    pre = Path(args.pre) if args.pre else None
    if pre is not None and is_cohort:
        raise LesionSegError("--pre takes one pre-contrast scan for one --input scan, not a cohort folder.")
    if pre is not None and not pre.exists():
        raise LesionSegError(f"Pre-contrast scan not found: {pre}")
    files = _cohort_files(src) if is_cohort else []
    check_paths(args, src, pre, files)  # every output, before the model is even loaded
    card = default_registry().get(args.model)
    if pre is not None and card.modality != "mri" and not args.force:
        raise LesionSegError(f"--pre makes a DCE-MRI subtraction (post − pre); {card.name} was trained on "
                             f"{card.modality}. Leave out --pre, or choose an MRI model (--force runs it anyway).")
    predictor = _LazyPredictor(card, device=_rank_device(args.device), batch_size=args.batch_size,
                               flips=not args.no_flips, notice=lambda m: print(f"lesionseg: {m}", file=sys.stderr))
    if is_cohort:
        predictor.load()  # a model that cannot load is one error, not one per file
    if not is_cohort:
        out = predict_file(predictor, src, Path(args.output),
                           Path(args.probabilities) if args.probabilities else None, args.threshold, pre=pre,
                           series=args.series, force=args.force, gate=args.gate,
                           on_gate=lambda g: print(f"image classes ({g.classifier}): {g.summary()}"))
        print(f"wrote {out}")
        return 0
    return _run_cohort(predictor, src, files, Path(args.output), args)


def _cohort_files(src: Path) -> list[Path]:
    from ..core.io import can_read

    files = sorted(p for p in src.iterdir() if can_read(p))
    if not files:
        raise LesionSegError(f"No readable scans in {src}.")
    return files


def _prob_name(mask_name: str) -> str:
    """Probability map beside a mask: same name with _prob; a DICOM SEG's probabilities go to NIfTI."""
    name = mask_name.replace("_mask", "_prob")
    return name[:-4] + ".nii.gz" if name.lower().endswith(".dcm") else name


def check_paths(args, src: Path, pre: Path | None, files: list[Path]) -> None:
    """No output may replace an input (the scan, --pre, a model card given by path) or another output, and every
    output folder must be writable; for a cohort also no mask may land on a scan of the input folder."""
    from ..core.io.output_guard import check_no_overlap, check_outputs, model_files

    inputs = {"--input": src, "--pre": pre, "--model": model_files(args.model)}
    if not files:
        check_outputs(inputs, {"--output": args.output, "--probabilities": args.probabilities})
        return
    inputs["a scan in the --input folder"] = files
    check_outputs(inputs, {"--output": args.output, "--probabilities": args.probabilities},
                  folders=("--output", "--probabilities"), distinct_outputs=False)  # one folder may take both
    names = [_output_name(f, args.output_format) for f in files]
    outputs = [Path(args.output) / n for n in names] + [Path(args.output) / CLASSES_CSV]
    check_no_overlap(inputs, {"--output": outputs}, distinct_outputs=False)
    if args.probabilities:
        check_no_overlap(inputs, {"--probabilities": [Path(args.probabilities) / _prob_name(n) for n in names]},
                         distinct_outputs=False)


class _LazyPredictor:
    """A Predictor whose weights load on first use: an input refused by the checks costs no model load."""

    def __init__(self, card, **kwargs):
        self.card = card
        self._kwargs = kwargs
        self._predictor = None

    def load(self):
        if self._predictor is None:
            from ..core.inference.engine import Predictor

            self._predictor = Predictor(self.card, **self._kwargs)
        return self._predictor

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)


def _rank_device(name: str) -> str:
    """Under torchrun each process takes its own GPU (cuda:LOCAL_RANK) unless a device index was given."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or name not in ("auto", "cuda"):
        return name
    import torch

    if not torch.cuda.is_available():
        return name
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"


def _is_dicom_series(folder: Path) -> bool:
    from ..core.io.dicom import folder_dicom_files

    try:
        files = folder_dicom_files(folder)
    except LesionSegError:
        return False
    others = [p for p in folder.iterdir() if p.is_file() and p not in set(files)]
    return bool(files) and not any(p.name.lower().endswith((".nii", ".nii.gz", ".png", ".tif", ".tiff", ".jpg"))
                                   for p in others)


CLASSES_CSV = "classes.csv"
"""Per-image class probabilities of the gate's classifier, in a cohort's output folder."""


def write_classes_csv(classes: dict, path: Path) -> Path:
    """file, p_<class>…, suppressed: one row per image the gate's classifier saw (atomic write)."""
    import csv

    from ..core.io.atomic import atomic_path

    names = list(next(iter(classes.values())).probabilities)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file"] + [f"p_{c}" for c in names] + ["suppressed"])
            for file, g in classes.items():
                w.writerow([file] + [f"{g.probabilities[c]:.4f}" for c in names] + [int(g.suppressed)])
    return path


def _run_cohort(predictor, src: Path, files: list[Path], out_dir: Path, args) -> int:
    from tqdm import tqdm

    from ..core.io.atomic import write_text_atomic

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    mine = files[rank::world]
    out_dir.mkdir(parents=True, exist_ok=True)
    prob_dir = Path(args.probabilities) if args.probabilities else None
    if prob_dir:
        prob_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    classes = {}  # file name → GateResult, for classes.csv
    for f in tqdm(mine, desc=f"segmenting (rank {rank}/{world})" if world > 1 else "segmenting", unit="scan",
                  file=sys.stderr):
        name = _output_name(f, args.output_format)
        try:
            predict_file(predictor, f, out_dir / name,
                         prob_dir / _prob_name(name) if prob_dir else None, args.threshold,
                         series=args.series, force=args.force, gate=args.gate,
                         on_gate=lambda g, name=f.name: classes.__setitem__(name, g))
        except LesionSegError as e:
            failures.append((f.name, str(e)))
        except Exception as e:  # noqa: BLE001 - one bad file must not stop a cohort
            failures.append((f.name, f"{type(e).__name__}: {e}"))
    done = len(mine) - len(failures)
    print(f"{done} of {len(mine)} scans segmented into {out_dir}")
    if classes:
        table = write_classes_csv(classes, out_dir / (f"classes_rank{rank}.csv" if world > 1 else CLASSES_CSV))
        n = sum(g.suppressed for g in classes.values())
        print(f"image classes: {table} ({n} of {len(classes)} image(s) called "
              f"{next(iter(classes.values())).suppress_class}: mask suppressed)")
    if failures:
        report = out_dir / (f"errors_rank{rank}.txt" if world > 1 else "errors.txt")
        write_text_atomic(report, "".join(f"{n}\t{msg}\n" for n, msg in failures))
        for n, msg in failures:
            print(f"  failed: {n}: {msg}", file=sys.stderr)
        print(f"error report: {report}", file=sys.stderr)
    return 0 if done or not mine else 2

