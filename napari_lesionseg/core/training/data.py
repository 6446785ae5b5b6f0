"""Training examples from image/mask pairs, the split by case/group, and class-balanced sampling.

Lesions are a tiny fraction of pixels: training on every slice or tile collapses to "all background", training on
lesion slices only to "all lesion". `BalancedSampler` draws lesion and lesion-free examples at a set ratio.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LesionSegError
from ..preprocess import slices_input, to_model_input

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".nii", ".nii.gz", ".dcm")


@dataclass
class Case:
    """One image (2D) or volume (3D) with its mask; `group` ties near-duplicates together (BUSI)."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    group: str
    label: str = ""
    spacing: tuple[float, ...] | None = None
    split: str = ""
    """"train" or "val" when cases.json fixes the split (e.g. a labelled case kept for validation)."""
    tags: tuple[str, ...] = ()
    """cases.json's "tags" (e.g. a mammogram's MIAS class and background tissue), for a recipe's `tag_weights`."""


@dataclass
class Example:
    """One 2D training input: channels-first float image and integer mask."""

    x: np.ndarray
    y: np.ndarray
    case: str
    positive: bool
    weight: float = field(default=1.0)


def _stem(p: Path) -> str:
    name = p.name
    for suf in (".nii.gz",) + IMAGE_SUFFIXES:
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return p.stem


def read_array(path: Path) -> np.ndarray:
    """Image or mask as an array in napari axis order (volumes z, y, x)."""
    try:
        from ..io import read_scan  # the project's readers, with all their checks

        scans = read_scan(path)
        return np.asarray(scans[0].data)
    except ImportError:
        pass
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(str(path)).dataobj).transpose()
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def load_folder(images: str | Path, masks: str | Path, cases_json: str | Path | None = None,
                report=None) -> list[Case]:
    """Image/mask pairs matched by file name (`report(message)` is told how many, and which images have no mask)."""
    images, masks = Path(images), Path(masks)
    if not images.is_dir():
        raise LesionSegError(f"Image folder not found: {images}")
    if not masks.is_dir():
        raise LesionSegError(f"Mask folder not found: {masks}")
    if images.resolve() == masks.resolve():
        raise LesionSegError(f"The images and the masks are the same folder ({images}): a model would learn to "
                             "copy the image. Give the folder of masks with --masks.")
    meta = {}
    if cases_json:
        meta = {c["name"]: c for c in json.loads(Path(cases_json).read_text())}
    mask_by_stem = {_stem(p): p for p in masks.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES)}
    image_paths = [p for p in sorted(images.iterdir()) if p.name.lower().endswith(IMAGE_SUFFIXES)]
    without_mask = [p.name for p in image_paths if _stem(p) not in mask_by_stem]
    paired = [(p, mask_by_stem[_stem(p)]) for p in image_paths if _stem(p) in mask_by_stem]
    if report is not None:
        report(pairing_summary(len(paired), without_mask, images, masks))
    cases = []
    for p, mp in paired:
        stem = _stem(p)
        img, msk = read_array(p), read_array(mp)
        if msk.ndim == 3 and msk.shape[-1] in (3, 4) and msk.shape[:2] == img.shape[:2]:
            msk = msk[..., 0]  # a mask saved as RGB
        if img.shape[: msk.ndim] != msk.shape:
            raise LesionSegError(f"{p.name}: image {img.shape} and mask {msk.shape} differ in size.")
        m = meta.get(stem, {})
        cases.append(Case(name=stem, image=img, mask=(msk > 0).astype(np.uint8) if msk.max() > 1 and len(np.unique(msk)) == 2 else msk.astype(np.uint8),
                          group=m.get("group", stem), label=m.get("cls", ""), split=m.get("split", ""),
                          tags=tuple(str(t) for t in m.get("tags", ()))))
    if not cases:
        raise LesionSegError(f"No image/mask pairs with matching names in {images} and {masks}"
                             + (f" ({len(image_paths)} images, {len(mask_by_stem)} masks; a mask must have its "
                                "image's file name)." if image_paths else "."))
    return cases


def load_sources(cfg, report=None) -> list[Case]:
    """The cases of every image/mask folder pair a recipe names (`sources`, or `images`/`masks`), one set.

    Case names must differ across folders: a tile's name is its case and its group (the validation split), so two
    tiles of the same name in two folders would be mistaken for one case."""
    pairs = cfg.folder_pairs()
    if not pairs[0].get("images") or not pairs[0].get("masks"):
        raise LesionSegError("Give a folder of images and a folder of masks.")
    cases, seen = [], {}
    for src in pairs:
        folder_cases = load_folder(src["images"], src["masks"], src.get("cases_json"), report=report)
        for c in folder_cases:
            if c.name in seen:
                raise LesionSegError(f"The image {c.name} is in both {seen[c.name]} and {src['images']}: rename one "
                                     "(names must differ across sources, as they name the case).")
            seen[c.name] = src["images"]
        cases += folder_cases
    return cases


def pairing_summary(n_pairs: int, without_mask: list[str], images: Path, masks: Path, shown: int = 5) -> str:
    """`40 image/mask pairs found; 12 images in IMAGES have no mask in MASKS and are left out: a.png, b.png, … (+7)`."""
    text = f"{n_pairs} image/mask pair{'s' if n_pairs != 1 else ''} found"
    if without_mask:
        names = ", ".join(without_mask[:shown])
        more = f", … (+{len(without_mask) - shown} more)" if len(without_mask) > shown else ""
        text += (f"; {len(without_mask)} image{'s' if len(without_mask) != 1 else ''} in {images} "
                 f"{'have' if len(without_mask) != 1 else 'has'} no mask in {masks} and "
                 f"{'are' if len(without_mask) != 1 else 'is'} left out: {names}{more}")
    return text


def split_by_group(cases: list[Case], val_fraction: float, seed: int = 0) -> tuple[list[Case], list[Case]]:
    """Validation by whole groups (never slices of one volume or near-duplicate frames on both sides), or as
    cases.json's "split" says when it names one (then `val_fraction` applies only to cases without a split)."""
    if any(c.split in ("train", "val") for c in cases):
        fixed_val = [c for c in cases if c.split == "val"]
        free = [c for c in cases if c.split not in ("train", "val")]
        train_free, val_free = split_by_group(free, val_fraction, seed) if len(free) >= 2 else (free, [])
        train = [c for c in cases if c.split == "train"] + train_free
        if not train:
            raise LesionSegError("cases.json puts every case in validation; mark some \"split\": \"train\".")
        return train, fixed_val + val_free
    if val_fraction <= 0 or len(cases) < 2:
        return cases, []

    def key(g: str) -> float:
        return int(hashlib.sha1(f"{seed}:{g}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    groups = sorted({c.group for c in cases}, key=key)
    n_val = max(1, int(round(len(groups) * val_fraction)))
    val_groups = set(groups[:n_val])
    train = [c for c in cases if c.group not in val_groups]
    val = [c for c in cases if c.group in val_groups]
    if not train:
        raise LesionSegError("Too few cases to keep some for validation; add cases or set the validation share to 0.")
    return train, val


def make_examples(cases: list[Case], card, context_slices: int = 0) -> list[Example]:
    """2D examples: whole images (resized later) or every slice of a volume (2.5D with neighbours as channels)."""
    out = []
    for c in cases:
        if c.mask.ndim == 3:  # a volume (an RGB image has a 2D mask)
            from ..preprocess import normalisation_stats, normalise

            vol = c.image.astype(np.float32)
            stats = normalisation_stats(vol[:: max(1, vol.shape[0] // 16)], card.normalisation)
            for z in range(vol.shape[0]):
                x = slices_input(vol, z, context_slices) if context_slices else vol[z][None]
                x = normalise(x, card.normalisation, stats)
                y = c.mask[z]
                out.append(Example(x=x, y=y, case=c.name, positive=bool(y.any())))
        elif card.fit == "breast":  # mammograms: the breast cropped and scaled (core/breast.py), mask alike
            from ..breast import breast_input, breast_target

            x, frame = breast_input(c.image, card)
            y = breast_target(c.mask, frame)
            out.append(Example(x=x, y=y, case=c.name, positive=bool(y.any())))
        else:
            x = to_model_input(c.image, card)
            out.append(Example(x=x, y=c.mask, case=c.name, positive=bool(c.mask.any())))
    return out


def resize_examples(examples: list[Example], size: tuple[int, int]) -> None:
    """Whole-image models: resize once up front so each epoch only augments."""
    import torch
    import torch.nn.functional as F

    for e in examples:
        x = torch.from_numpy(e.x)[None]
        e.x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)[0].numpy()
        y = torch.from_numpy(e.y.astype(np.float32))[None, None]
        e.y = (F.interpolate(y, size=size, mode="nearest")[0, 0].numpy()).astype(np.uint8)


def tag_weight(tags, tag_weights: dict) -> float:
    """An image's sampling weight: the largest of its tags' weights in the recipe, 1 when none is named there."""
    return float(max((tag_weights[t] for t in tags if t in tag_weights), default=1.0))


def weigh_examples(examples: list[Example], cases: list[Case], tag_weights: dict) -> None:
    """Give every example its case's `tag_weight` (examples of one volume share it)."""
    tags = {c.name: c.tags for c in cases}
    for e in examples:
        e.weight = tag_weight(tags.get(e.case, ()), tag_weights)


class BalancedSampler:
    """Draws example indices so that `positive_fraction` of them contain lesion, the lesion ones in proportion to
    their weights (`tag_weights`; all 1 by default); with hard-negative mining, lesion-free examples are drawn in
    proportion to how wrong the model was on them last time."""

    def __init__(self, examples: list[Example], positive_fraction: float, seed: int = 0, hard_negatives=False):
        self.pos = np.array([i for i, e in enumerate(examples) if e.positive])
        self.neg = np.array([i for i, e in enumerate(examples) if not e.positive])
        w = np.array([examples[i].weight for i in self.pos], np.float64)
        self.pos_p = None if len(w) == 0 or np.all(w == w[0]) else w / w.sum()  # None: uniform, as before
        self.frac = positive_fraction
        self.rng = np.random.default_rng(seed)
        self.hard = hard_negatives
        self.neg_loss = np.ones(len(examples), np.float64)

    def record_losses(self, indices, losses) -> None:
        for i, l in zip(indices, losses):
            self.neg_loss[i] = 0.5 * self.neg_loss[i] + 0.5 * float(l) + 1e-3

    def epoch(self, n: int) -> np.ndarray:
        if len(self.pos) == 0 and len(self.neg) == 0:
            raise LesionSegError("No training examples.")
        if len(self.pos) == 0 or len(self.neg) == 0:
            pool, p = (self.pos, self.pos_p) if len(self.pos) else (self.neg, None)
            return self._draw(pool, n, p)
        n_pos = int(round(n * self.frac))
        pos = self._draw(self.pos, n_pos, self.pos_p)
        if self.hard:
            p = self.neg_loss[self.neg]
            neg = self.rng.choice(self.neg, size=n - n_pos, replace=True, p=p / p.sum())
        else:
            neg = self._draw(self.neg, n - n_pos, None)
        idx = np.concatenate([pos, neg])
        self.rng.shuffle(idx)
        return idx

    def _draw(self, pool: np.ndarray, n: int, p) -> np.ndarray:
        """n indices of a pool: uniform (without replacement while it suffices), or weighted with replacement."""
        if p is None:
            return self.rng.choice(pool, size=n, replace=len(pool) < n)
        return self.rng.choice(pool, size=n, replace=True, p=p)


def crop_patch(e: Example, size: tuple[int, int], rng: np.random.Generator, want_lesion: bool):
    """A random patch of an example; centred near a lesion pixel when asked and there is one."""
    h, w = e.y.shape
    ph, pw = min(size[0], h), min(size[1], w)
    if want_lesion and e.positive:
        ys, xs = np.nonzero(e.y)
        k = rng.integers(len(ys))
        cy = ys[k] + rng.integers(-ph // 4, ph // 4 + 1)
        cx = xs[k] + rng.integers(-pw // 4, pw // 4 + 1)
        y0 = int(np.clip(cy - ph // 2, 0, h - ph))
        x0 = int(np.clip(cx - pw // 2, 0, w - pw))
    else:
        y0 = int(rng.integers(0, h - ph + 1))
        x0 = int(rng.integers(0, w - pw + 1))
    x = e.x[:, y0:y0 + ph, x0:x0 + pw]
    y = e.y[y0:y0 + ph, x0:x0 + pw]
    if (ph, pw) != tuple(size):  # image smaller than the patch: pad
        x = np.pad(x, ((0, 0), (0, size[0] - ph), (0, size[1] - pw)), mode="reflect")
        y = np.pad(y, ((0, size[0] - ph), (0, size[1] - pw)))
    return x, y
