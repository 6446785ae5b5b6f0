"""How a model does on a labelled folder (`lesionseg evaluate`, the Segment dock's Evaluate button, benchmarks).

Images and masks are paired by file stem; every image goes through the very path `lesionseg predict` takes
(`core.inference.run.segment_file`), so the figures are what a user of `predict` gets. Per case: Dice, IoU, whether
the truth holds a lesion, predicted area, a *miss* (lesion in truth, Dice < 0.1) and a *false positive* (no lesion
in truth, something predicted). The summary gives mean/median/10th-percentile Dice over lesion cases with a
bootstrap 95% interval of the mean (fixed seed: the same folder gives the same interval), misses, false-positive
images, and the same per class when names carry a class prefix (BUSI's `benign_`, `malignant_`, `normal_`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import LesionSegError
from .metrics import dice, iou

MISS_DICE = 0.1
"""A lesion case whose Dice is below this counts as missed."""
CLASS_PREFIXES = ("benign", "malignant", "normal")
"""File-name prefixes (`benign_012.png`) read as the case's class."""
MASK_NAME_SUFFIXES = ("", "_mask")
"""A mask may share the image's stem, or add `_mask` as `lesionseg predict` and the dock's Accept name them."""


@dataclass
class CaseResult:
    """One image's figures. `dice`/`iou` are None for lesion-free truth (there Dice says nothing: see
    `false_positive`) and for cases that failed (`error`)."""

    name: str
    cls: str = ""
    has_lesion: bool | None = None
    dice: float | None = None
    iou: float | None = None
    truth_area_px: int = 0
    predicted_area_px: int = 0
    missed: bool = False
    hit: bool = False
    """The prediction touches the true lesion (detection, as for coarse mammography outlines)."""
    false_positive: bool = False
    image: str = ""
    mask: str = ""
    error: str = ""
    image_classes: str = ""
    """What the model's gate classifier said ('normal=0.93;benign=0.05;malignant=0.02'); '' without a gate."""
    suppressed: bool | None = None
    """The gate emptied this image's mask (None: the gate was off or the model has none)."""
    gate_would_empty: bool | None = None
    """The gate's classifier sees no lesion here, whether or not the gate was on (None: the model has no gate)."""

    def row(self) -> dict:
        return asdict(self)


CSV_COLUMNS = list(CaseResult.__dataclass_fields__)


def class_of(name: str) -> str:
    """'benign' for 'benign_012' (BUSI-style names); '' when the name carries no known class prefix."""
    head = name.split("_", 1)[0].lower()
    return head if head in CLASS_PREFIXES and "_" in name else ""


def case_metrics(predicted: np.ndarray, truth: np.ndarray, name: str = "", cls: str | None = None) -> CaseResult:
    """The per-case figures for a predicted mask against a truth mask (any label > 0 is lesion). The one function
    for the job: the CLI, the dock and the benchmarks all call it."""
    p = np.asarray(predicted) > 0
    t = np.asarray(truth) > 0
    if p.shape != t.shape:
        raise LesionSegError(f"{name or 'The mask'}: the truth mask is {t.shape} but the image is {p.shape}; "
                             "they must be the same size.")
    has_lesion = bool(t.any())
    r = CaseResult(name=name, cls=class_of(name) if cls is None else cls, has_lesion=has_lesion,
                   truth_area_px=int(t.sum()), predicted_area_px=int(p.sum()))
    if has_lesion:
        r.dice = dice(p, t)
        r.iou = iou(p, t)
        r.missed = r.dice < MISS_DICE
        r.hit = bool(np.logical_and(p, t).any())
    else:
        r.false_positive = bool(p.any())
    return r


# -- pairing files ----------------------------------------------------------------------------------------------

@dataclass
class Pairing:
    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    """(case name, image path, mask path), sorted by name."""
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)


def file_stem(path: Path) -> str:
    """'case' for 'case.nii.gz', 'case.png', or a DICOM folder 'case'."""
    from .io.atomic import full_suffix

    if path.is_dir():
        return path.name
    suffix = full_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def pair_files(images: str | Path, masks: str | Path) -> Pairing:
    """Match images to masks by file stem (a mask may also be named `<stem>_mask`; in one shared folder it must)."""
    from .io import can_read

    images, masks = Path(images), Path(masks)
    for folder, what in ((images, "Image"), (masks, "Mask")):
        if not folder.is_dir():
            raise LesionSegError(f"{what} folder not found: {folder}")
    image_files = sorted(p for p in images.iterdir() if not p.name.startswith(".") and can_read(p))
    mask_files = sorted(p for p in masks.iterdir() if not p.name.startswith(".") and can_read(p))
    if images.resolve() == masks.resolve():  # one folder holding `case.png` and `case_mask.png`
        image_files = [p for p in image_files if not file_stem(p).endswith("_mask")]
        mask_files = [p for p in mask_files if file_stem(p).endswith("_mask")]
    if not image_files:
        raise LesionSegError(f"No readable images in {images}.")
    if not mask_files:
        raise LesionSegError(f"No readable masks in {masks}.")
    mask_by_stem = {file_stem(p): p for p in mask_files}
    out = Pairing()
    used = set()
    for img in image_files:
        stem = file_stem(img)
        mask = next((mask_by_stem[stem + s] for s in MASK_NAME_SUFFIXES if stem + s in mask_by_stem), None)
        if mask is None:
            out.images_without_mask.append(img)
        else:
            out.pairs.append((stem, img, mask))
            used.add(mask)
    out.masks_without_image = [m for m in mask_files if m not in used]
    if not out.pairs:
        raise LesionSegError(f"No image in {images} has a mask of the same name in {masks} "
                             f"(e.g. {image_files[0].name} needs {file_stem(image_files[0])}.png or .nii.gz).")
    return out


def read_truth(path: Path) -> np.ndarray:
    """A truth mask as a boolean array in napari axis order (0/1, 0/255 and label images alike)."""
    from .inference.run import read_one_scan

    scan = read_one_scan(path)
    data = np.asarray(scan.data[0] if scan.multiscale else scan.data)
    if scan.rgb:  # a mask saved as RGB(A): any channel set
        data = data[..., :3].max(-1)
    return data > 0


# -- running a model on a folder --------------------------------------------------------------------------------

def evaluate_pair(predictor, name: str, image: Path, mask: Path, threshold: float | None = None,
                  series: str | None = None, gate: bool | None = None) -> CaseResult:
    """One case through `lesionseg predict`'s path (its image gate on or off as `gate` says; None: the card's default); a problem with
    this case becomes its `error`, not an exception (one bad file must not stop a cohort)."""
    from .inference.run import segment_file

    said = []
    try:
        _scan, _probs, predicted = segment_file(predictor, image, threshold, series=series, gate=gate,
                                                on_gate=said.append)
        r = case_metrics(predicted, read_truth(mask), name)
        if said:
            from .inference.gate import gate_on

            r.image_classes = ";".join(f"{k}={v:.4f}" for k, v in said[0].probabilities.items())
            r.gate_would_empty = bool(said[0].no_lesion)
            r.suppressed = said[0].suppressed if gate_on(predictor.card, gate) else None
    except LesionSegError as e:
        r = CaseResult(name=name, cls=class_of(name), error=str(e))
    except Exception as e:  # noqa: BLE001 - reported in the CSV, the run goes on
        r = CaseResult(name=name, cls=class_of(name), error=f"{type(e).__name__}: {e}")
    r.image, r.mask = str(image), str(mask)
    return r


@dataclass
class Evaluation:
    model: str
    cases: list[CaseResult]
    summary: dict
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)


def evaluate_folder(model, images: str | Path, masks: str | Path, threshold: float | None = None,
                    device: str = "auto", series: str | None = None,
                    progress: Callable[[int, int, str], None] | None = None, predictor=None,
                    only: Callable[[str], bool] | None = None, gate: bool | None = None,
                    flips: bool = True) -> Evaluation:
    """Run `model` (a name, a card path or a ModelCard) on every paired image and measure it against its mask;
    `only(case_name)` keeps a subset (e.g. one kind of image of a data set); `gate=False` measures the raw masks
    of a model whose card has an image gate, `gate=True` the gated ones (None: the card's default); `flips=False`
    one pass instead of the card's test-time flips (`lesionseg predict --no-flips`)."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise LesionSegError(f"The threshold must lie between 0 and 1 (got {threshold}).")
    pairing = pair_files(images, masks)
    if only is not None:
        pairing.pairs = [p for p in pairing.pairs if only(p[0])]
        if not pairing.pairs:
            raise LesionSegError(f"No case in {images} is of the kind asked for.")
    if predictor is None:
        from .inference.engine import Predictor
        from .models import default_registry
        from .models.card import ModelCard

        card = model if isinstance(model, ModelCard) else default_registry().get(str(model))
        predictor = Predictor(card, device=device, flips=flips)
    results = []
    for i, (name, img, msk) in enumerate(pairing.pairs):
        results.append(evaluate_pair(predictor, name, img, msk, threshold, series, gate))
        if progress is not None:
            progress(i + 1, len(pairing.pairs), name)
    return Evaluation(predictor.card.name, results, summarise(results), pairing.images_without_mask,
                      pairing.masks_without_image)


# -- summary ----------------------------------------------------------------------------------------------------

def bootstrap_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (fixed seed, so one folder always gives one interval)."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return (math.nan, math.nan)
    if len(v) == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def _group_summary(cases: list[CaseResult]) -> dict:
    ok = [c for c in cases if not c.error]
    lesion = [c for c in ok if c.has_lesion]
    normal = [c for c in ok if not c.has_lesion]
    d = np.array([c.dice for c in lesion], float)
    out = {"n_cases": len(ok), "n_lesion": len(lesion), "n_lesion_free": len(normal)}
    if len(d):
        lo, hi = bootstrap_ci(d)
        out.update(mean_dice=float(d.mean()), median_dice=float(np.median(d)),
                   p10_dice=float(np.percentile(d, 10)), ci95_mean_dice=[lo, hi],
                   mean_iou=float(np.mean([c.iou for c in lesion])),
                   misses=sum(c.missed for c in lesion), hits=sum(c.hit for c in lesion))
    if normal:
        out["fp_images"] = sum(c.false_positive for c in normal)
    gated = [c for c in ok if c.suppressed is not None]
    if gated:  # what the image gate did: lesion-free images it emptied, lesions it wrongly emptied
        out["gate"] = {"n_checked": len(gated),
                       "suppressed_lesion_free": sum(bool(c.suppressed) for c in gated if not c.has_lesion),
                       "suppressed_lesion": sum(bool(c.suppressed) for c in gated if c.has_lesion)}
    judged = [c for c in ok if c.gate_would_empty is not None and c.suppressed is None]
    if judged:  # the gate was off: what it would have emptied, so a user can decide whether to turn it on
        out["gate_off"] = {"n_checked": len(judged),
                           "would_empty_lesion_free": sum(c.gate_would_empty for c in judged if not c.has_lesion),
                           "would_empty_lesion": sum(c.gate_would_empty for c in judged if c.has_lesion)}
    return out


def summarise(cases: list[CaseResult]) -> dict:
    """Overall and per-class figures (see the module docstring); `n_errors` cases could not be measured."""
    s = _group_summary(cases)
    s["n_errors"] = sum(1 for c in cases if c.error)
    classes = sorted({c.cls for c in cases if c.cls})
    if classes:
        s["per_class"] = {k: _group_summary([c for c in cases if c.cls == k]) for k in classes}
    return s


def _describe(s: dict) -> str:
    parts = []
    if s.get("n_lesion"):
        lo, hi = s["ci95_mean_dice"]
        parts.append(f"Dice {s['mean_dice']:.3f} (95% CI {lo:.3f}–{hi:.3f}; median {s['median_dice']:.3f}, "
                     f"10th percentile {s['p10_dice']:.3f}) on {s['n_lesion']} lesion case(s), "
                     f"{s['misses']} missed (Dice < {MISS_DICE:g}), {s['hits']} touched")
    if s.get("n_lesion_free"):
        parts.append(f"{s['fp_images']} of {s['n_lesion_free']} lesion-free image(s) with a false lesion "
                     f"({s['fp_images'] / s['n_lesion_free']:.0%})")
    if s.get("gate"):
        g = s["gate"]
        said = [f"{g['suppressed_lesion_free']} of {s['n_lesion_free']} lesion-free"] if s.get("n_lesion_free") else []
        said += [f"{g['suppressed_lesion']} of {s['n_lesion']} lesion"] if s.get("n_lesion") else []
        parts.append(f"image gate emptied {' and '.join(said)} image(s)")
    if s.get("gate_off"):
        g = s["gate_off"]
        said = [f"{g['would_empty_lesion_free']} of {s['n_lesion_free']} lesion-free"] if s.get("n_lesion_free") else []
        said += [f"{g['would_empty_lesion']} of {s['n_lesion']} lesion"] if s.get("n_lesion") else []
        parts.append(f"the image gate (off; --gate turns it on) would empty {' and '.join(said)} image(s)")
    return "; ".join(parts) or "nothing measured"


def summary_line(summary: dict) -> str:
    """One line for a terminal or a status bar, then one short line per class."""
    text = _describe(summary)
    if summary.get("n_errors"):
        text += f"; {summary['n_errors']} case(s) failed (see the error column)"
    for k, s in summary.get("per_class", {}).items():
        text += f"\n  {k}: {_describe(s)}"
    return text


def write_csv(cases: list[CaseResult], path: str | Path) -> Path:
    """Per-case table, written atomically (a half-written CSV never appears)."""
    import csv

    from .io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            for c in cases:
                row = c.row()
                for k in ("dice", "iou"):
                    row[k] = "" if row[k] is None else f"{row[k]:.4f}"
                for k in ("has_lesion", "suppressed"):
                    if row[k] is None:
                        row[k] = ""
                w.writerow(row)
    return Path(path)


def external_block(evaluation: Evaluation, dataset: str, short: str, unit: str = "lesion images",
                   note: str = "") -> dict:
    """The card's `metrics["external"]` entry for one data set that chose nothing about the model
    (`ModelCard.headline_metric` shows the first one)."""
    s = evaluation.summary
    block = {"dataset": dataset, "short": short, "unit": unit, "measured_with": "lesionseg evaluate",
             "n_lesion": s.get("n_lesion", 0), "n_lesion_free": s.get("n_lesion_free", 0)}
    for k in ("mean_dice", "ci95_mean_dice", "median_dice", "p10_dice", "misses", "hits", "fp_images"):
        if k in s:
            block[k] = [round(x, 4) for x in s[k]] if isinstance(s[k], list) else (
                round(s[k], 4) if isinstance(s[k], float) else s[k])
    if note:
        block["note"] = note
    return block
